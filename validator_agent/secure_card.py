"""Card authenticity: the validator's side of the secure card profile.

A secure card holds a DESFire-EV1-style application (AID `F0 10 01`) with one AES-128
key (key 0) and a standard data file (file 1) with the card's token. The key is
diversified per card from the network's master key, in the style of NXP AN10922:

    M      = 0x01 || UID || AID || SYSTEM_ID
    K_card = AES-CMAC(master key, M)

with UID the card's UID bytes as read by `FF CA 00 00 00` (4, 7 or 10 bytes), AID the
3 application bytes in the order they are sent in SelectApplication (F0 10 01) and
SYSTEM_ID the ASCII bytes `SBY-TRANSIT`. AN10922 pads M to 32 bytes (0x80 00 ...) and
uses CMAC subkey K2 when padding was needed, K1 otherwise; for 17 <= len(M) <= 32
that is exactly standard CMAC (RFC 4493), which is what is computed here, and
`diversify_key` refuses inputs outside that range rather than diverge from AN10922.
With a 7-byte UID, M is 22 bytes.

The validator authenticates the card before it trusts it, with the EV1 AES three-pass
mutual challenge-response (native commands wrapped in ISO 7816-4 APDUs: CLA 0x90,
INS = native command, P1 P2 = 00 00, Lc + data, Le 00; answers end 0x91 + status):

    1. 90 5A 00 00 03 <AID> 00          SelectApplication       -> 91 00
    2. 90 AA 00 00 01 00 00             AuthenticateAES key 0   -> E(K, RndB) 91 AF
    3. 90 AF 00 00 20 <32 bytes> 00     E(K, RndA || rotl(RndB)) -> E(K, rotl(RndA)) 91 00
    4. 90 BD 00 00 07 01 000000 000000 00  ReadData file 1, all  -> token 91 00

Encryption is AES-128-CBC with the EV1 IV chaining: step 2 under IV zero, step 3's
reader cryptogram under IV = the card's last ciphertext block (E(K, RndB)), the card's
answer under IV = the last block of the reader's cryptogram. The reader proves it knows
K by returning RndB rotated; the card proves it by returning RndA rotated, which is
checked here. ReadData is refused by the card (91 AE) before authentication. The file
is read in plain communication mode (no session-key MAC or encryption): the token is
an identifier, not a secret, and the authenticity comes from the challenge-response.
Only cryptograms cross the wire; the master key stays in the agent's key store
(`--master-key-file`, 32 hex digits, kept apart from the agent configuration).

Policies (`--card-profile`): `uid` reads UIDs only (no check), `secure` accepts only
cards that authenticate (a plain UID card is `not_authentic`), `any` authenticates the
cards that present the application and accepts plain UID cards as before. Under `any`
a copied UID without the application still passes: only `secure` stops UID cloning.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

log = logging.getLogger(__name__)

AID = bytes.fromhex("F01001")
SYSTEM_ID = b"SBY-TRANSIT"
KEY_NO = 0
TOKEN_FILE = 1
PROFILES = ("uid", "secure", "any")

# Native DESFire commands and status codes (second status byte after 0x91).
CMD_SELECT_APPLICATION = 0x5A
CMD_AUTHENTICATE_AES = 0xAA
CMD_ADDITIONAL_FRAME = 0xAF
CMD_READ_DATA = 0xBD
ST_OK = 0x00
ST_ADDITIONAL_FRAME = 0xAF
ST_AUTHENTICATION_ERROR = 0xAE
ST_APPLICATION_NOT_FOUND = 0xA0

Transmit = Callable[[bytes], bytes]


class NotAuthentic(Exception):
    """The card failed authentication (or is not a secure card where one is required)."""

    reason = "not_authentic"


class NoApplication(Exception):
    """The card does not present the secure application (a plain UID card)."""


def diversify_key(master_key: bytes, uid: bytes, aid: bytes = AID,
                  system_id: bytes = SYSTEM_ID) -> bytes:
    """K_card = AES-CMAC(master, 0x01 || UID || AID || system id) (AN10922, AES-128)."""
    if len(master_key) != 16:
        raise ValueError("the master key is AES-128: 16 bytes")
    if len(aid) != 3:
        raise ValueError("an application id is 3 bytes")
    message = b"\x01" + uid + aid + system_id
    if not 17 <= len(message) <= 32:
        raise ValueError(f"diversification input of {len(message)} bytes (17-32 needed)")
    mac = CMAC(algorithms.AES(master_key))
    mac.update(message)
    return mac.finalize()


def load_master_key(path: str | Path) -> bytes:
    """The master key from its key-store file: 32 hex digits (whitespace ignored)."""
    path = Path(path)
    try:
        text = path.read_text()
        mode = path.stat().st_mode
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    try:
        key = bytes.fromhex("".join(text.split()))
    except ValueError:
        raise ValueError(f"{path} does not hold hexadecimal") from None
    if len(key) != 16:
        raise ValueError(f"{path} holds {len(key)} bytes, an AES-128 key is 16")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("master key file %s is readable by others than its owner", path)
    return key


def rotl(data: bytes) -> bytes:
    return data[1:] + data[:1]


def cbc_encrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return enc.update(data) + enc.finalize()


def cbc_decrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    dec = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    return dec.update(data) + dec.finalize()


def wrap(command: int, data: bytes = b"") -> bytes:
    """A native command as an ISO 7816-4 APDU: 90 CMD 00 00 [Lc data] 00."""
    if data:
        return bytes([0x90, command, 0, 0, len(data)]) + data + b"\x00"
    return bytes([0x90, command, 0, 0, 0])


def _native(transmit: Transmit, command: int, data: bytes = b"") -> tuple[int, bytes]:
    response = transmit(wrap(command, data))
    if len(response) < 2:
        raise NoApplication("empty answer")
    if response[-2] != 0x91:
        # Not a DESFire-style answer at all (e.g. 6D 00 of a plain UID card).
        raise NoApplication(f"answered {response[-2:].hex()}")
    return response[-1], response[:-2]


def authenticate(transmit: Transmit, uid: bytes, master_key: bytes, aid: bytes = AID,
                 rnd: Callable[[int], bytes] = os.urandom) -> bytes:
    """Select the application, run the EV1 AES three-pass authentication with the key
    diversified for `uid`, read the token file and return the token.

    Raises NoApplication when the card does not know the application (a plain card),
    NotAuthentic on any failure after that."""
    status, _ = _native(transmit, CMD_SELECT_APPLICATION, aid)
    if status == ST_APPLICATION_NOT_FOUND:
        raise NoApplication("application not found")
    if status != ST_OK:
        raise NoApplication(f"SelectApplication status {status:02X}")
    key = diversify_key(master_key, uid, aid)
    try:
        status, ek_rnd_b = _native(transmit, CMD_AUTHENTICATE_AES, bytes([KEY_NO]))
        if status != ST_ADDITIONAL_FRAME or len(ek_rnd_b) != 16:
            raise NotAuthentic(f"AuthenticateAES answered status {status:02X}, "
                               f"{len(ek_rnd_b)} bytes")
        rnd_b = cbc_decrypt(key, bytes(16), ek_rnd_b)
        rnd_a = rnd(16)
        token = cbc_encrypt(key, ek_rnd_b, rnd_a + rotl(rnd_b))
        status, ek_rnd_a = _native(transmit, CMD_ADDITIONAL_FRAME, token)
        if status != ST_OK or len(ek_rnd_a) != 16:
            raise NotAuthentic(f"the card refused our cryptogram (status {status:02X})")
        if cbc_decrypt(key, token[-16:], ek_rnd_a) != rotl(rnd_a):
            raise NotAuthentic("the card's cryptogram does not prove the key")
        status, data = _native(transmit, CMD_READ_DATA,
                               bytes([TOKEN_FILE]) + bytes(3) + bytes(3))
        if status != ST_OK or not data:
            raise NotAuthentic(f"ReadData answered status {status:02X}")
        return data
    except NoApplication as exc:  # a non-DESFire answer mid-protocol is not authentic
        raise NotAuthentic(str(exc)) from None


class SecureCardCheck:
    """The check the PC/SC source runs on each card after reading its UID.

    Returns True (authenticated), None (a plain UID card accepted under `any`) or
    False (not authentic). Transport failures raise the reader's CardReadError."""

    def __init__(self, master_key: bytes, profile: str, aid: bytes = AID) -> None:
        if profile not in ("secure", "any"):
            raise ValueError(f"no check for card profile {profile!r}")
        self.master_key = master_key
        self.profile = profile
        self.aid = aid

    def __call__(self, card: int, protocol: int, uid: str) -> bool | None:
        return self.check(pcsc_transmit(card, protocol), uid)

    def check(self, transmit: Transmit, uid: str) -> bool | None:
        try:
            token = authenticate(transmit, bytes.fromhex(uid), self.master_key, self.aid)
        except NoApplication as exc:
            if self.profile == "any":
                return None
            log.info("card %s is not a secure card (%s): not_authentic", uid, exc)
            return False
        except NotAuthentic as exc:
            log.warning("card %s failed authentication: %s", uid, exc)
            return False
        log.info("card %s authenticated; token %s", uid,
                 token.decode("ascii", "replace"))
        return True


def pcsc_transmit(card: int, protocol: int) -> Transmit:
    """SCardTransmit on an open connection, as bytes in and out."""
    from smartcard import scard

    from validator_agent.adapters.pcsc import CardReadError

    def transmit(apdu: bytes) -> bytes:
        hresult, response = scard.SCardTransmit(card, protocol, list(apdu))
        if hresult != scard.SCARD_S_SUCCESS:
            raise CardReadError(scard.SCardGetErrorMessage(hresult))
        return bytes(response)

    return transmit
