"""A virtual DESFire-EV1-style secure card for the vpcd reader.

The card side of validator_agent.secure_card (which documents the protocol): one
application (AID F0 10 01 by default) with one AES-128 key (key 0, the key diversified
for this card's UID from the network master key) and a standard data file (file 1)
holding the card's token. Native commands arrive wrapped in ISO 7816-4 APDUs (CLA 0x90)
and are answered with data + 91 status:

- SelectApplication (5A): 91 00, or 91 A0 for an unknown AID; resets authentication.
- AuthenticateAES (AA, key no 0): E(K, RndB) under IV zero, 91 AF; then the reader's
  additional frame (AF) E(K, RndA || rotl(RndB)) under IV = E(K, RndB) is checked and
  answered E(K, rotl(RndA)) under IV = last block of the reader's cryptogram, 91 00;
  a wrong cryptogram is 91 AE.
- ReadData (BD) of file 1: plain communication, only after authentication (else 91 AE).

A clone (`clone_card`) copies the UID and the application's layout but not the key: it
runs the same protocol with a key of its own, so its cryptograms are wrong.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from hardware_sim.vpcd import VirtualCard
from validator_agent.secure_card import (
    AID,
    CMD_ADDITIONAL_FRAME,
    CMD_AUTHENTICATE_AES,
    CMD_READ_DATA,
    CMD_SELECT_APPLICATION,
    KEY_NO,
    ST_ADDITIONAL_FRAME,
    ST_APPLICATION_NOT_FOUND,
    ST_AUTHENTICATION_ERROR,
    ST_OK,
    TOKEN_FILE,
    cbc_decrypt,
    cbc_encrypt,
    diversify_key,
    rotl,
)

ST_NO_SUCH_KEY = 0x40
ST_LENGTH_ERROR = 0x7E
ST_ILLEGAL_COMMAND = 0x1C
ST_FILE_NOT_FOUND = 0xF0
ST_BOUNDARY_ERROR = 0xBE
SW_CLA_NOT_SUPPORTED = b"\x6e\x00"
MAX_FRAME = 59  # data bytes in one answer frame


def _answer(status: int, data: bytes = b"") -> bytes:
    return data + bytes([0x91, status])


class DesfireApplication:
    """The card's application: an APDU handler for VirtualCard(extra=...)."""

    def __init__(self, key: bytes, token: bytes, aid: bytes = AID,
                 rnd: Callable[[int], bytes] = os.urandom) -> None:
        if len(token) > MAX_FRAME:
            raise ValueError(f"token longer than {MAX_FRAME} bytes")
        self.key = key
        self.token = token
        self.aid = aid
        self.rnd = rnd
        self.selected = False
        self.authenticated = False
        self._pending: tuple[bytes, bytes] | None = None  # (RndB, E(K, RndB))
        self.failed_authentications = 0

    def __call__(self, apdu: bytes) -> bytes:
        if len(apdu) < 5 or apdu[0] != 0x90:
            return SW_CLA_NOT_SUPPORTED
        command, lc = apdu[1], apdu[4]
        data = apdu[5:5 + lc] if len(apdu) > 5 else b""
        if len(data) != lc and len(apdu) > 5:
            return _answer(ST_LENGTH_ERROR)
        pending, self._pending = self._pending, None
        if command == CMD_SELECT_APPLICATION:
            return self._select(data)
        if command == CMD_AUTHENTICATE_AES:
            return self._authenticate(data)
        if command == CMD_ADDITIONAL_FRAME and pending is not None:
            return self._authenticate_answer(data, *pending)
        if command == CMD_READ_DATA:
            return self._read(data)
        return _answer(ST_ILLEGAL_COMMAND)

    def _select(self, aid: bytes) -> bytes:
        self.authenticated = False
        if len(aid) != 3:
            return _answer(ST_LENGTH_ERROR)
        self.selected = aid == self.aid
        return _answer(ST_OK if self.selected else ST_APPLICATION_NOT_FOUND)

    def _authenticate(self, data: bytes) -> bytes:
        self.authenticated = False
        if len(data) != 1:
            return _answer(ST_LENGTH_ERROR)
        if not self.selected or data[0] != KEY_NO:
            return _answer(ST_NO_SUCH_KEY)
        rnd_b = self.rnd(16)
        ek_rnd_b = cbc_encrypt(self.key, bytes(16), rnd_b)
        self._pending = (rnd_b, ek_rnd_b)
        return _answer(ST_ADDITIONAL_FRAME, ek_rnd_b)

    def _authenticate_answer(self, data: bytes, rnd_b: bytes, ek_rnd_b: bytes) -> bytes:
        if len(data) != 32:
            return _answer(ST_LENGTH_ERROR)
        plain = cbc_decrypt(self.key, ek_rnd_b, data)
        rnd_a, rnd_b_rotated = plain[:16], plain[16:]
        if rnd_b_rotated != rotl(rnd_b):
            self.failed_authentications += 1
            return _answer(ST_AUTHENTICATION_ERROR)
        self.authenticated = True
        return _answer(ST_OK, cbc_encrypt(self.key, data[-16:], rotl(rnd_a)))

    def _read(self, data: bytes) -> bytes:
        if len(data) != 7:
            return _answer(ST_LENGTH_ERROR)
        if not self.authenticated:
            return _answer(ST_AUTHENTICATION_ERROR)
        if data[0] != TOKEN_FILE:
            return _answer(ST_FILE_NOT_FOUND)
        offset = int.from_bytes(data[1:4], "little")
        length = int.from_bytes(data[4:7], "little")
        if offset > len(self.token) or (length and offset + length > len(self.token)):
            return _answer(ST_BOUNDARY_ERROR)
        end = offset + length if length else len(self.token)
        return _answer(ST_OK, self.token[offset:end])


def secure_card(uid: str, master_key: bytes, token: bytes | None = None,
                aid: bytes = AID) -> VirtualCard:
    """A genuine secure card as issued: key 0 diversified from the master key for its
    UID; the token defaults to the UID in hex."""
    key = diversify_key(master_key, bytes.fromhex(uid), aid)
    app = DesfireApplication(key, token if token is not None else uid.upper().encode(), aid)
    return VirtualCard(uid, extra=app)


def clone_card(uid: str, token: bytes | None = None, aid: bytes = AID) -> VirtualCard:
    """The same UID and application layout, but not the key (a random one instead)."""
    app = DesfireApplication(os.urandom(16), token if token is not None
                             else uid.upper().encode(), aid)
    return VirtualCard(uid, extra=app)
