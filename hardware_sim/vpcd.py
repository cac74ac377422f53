"""Virtual contactless cards for the vsmartcard `vpcd` reader driver of pcscd.

vpcd (Debian `vsmartcard-vpcd`) is a reader driver that listens on TCP (port 35963 for
its first slot, from /etc/reader.conf.d/vpcd). A program that connects to it is a card
in that reader; closing the connection takes the card away. Every message is a 2-byte
big-endian length and its bytes. A 1-byte message is a control code: 0 power off,
1 power on, 2 reset (no answer), 4 "send your ATR" (answer: the ATR). Anything longer
is a command APDU, answered with a response APDU.

`VirtualCard` answers like a contactless card behind a PC/SC reader: the pseudo-APDU
`FF CA 00 00 00` (GET DATA, UID) returns its UID.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable

VPCD_HOST = "127.0.0.1"
VPCD_PORT = 35963
# ATR of a PC/SC contactless storage card (PC/SC part 3 supplement), MIFARE Classic 1K.
CONTACTLESS_ATR = bytes.fromhex("3B8F8001804F0CA000000306030001000000006A")
SW_OK = b"\x90\x00"
SW_INS_NOT_SUPPORTED = b"\x6d\x00"
SW_WRONG_LENGTH = b"\x67\x00"

ApduHandler = Callable[[bytes], bytes]


class VirtualCard:
    """A card with a UID (and optionally more commands) that can be tapped on vpcd."""

    def __init__(self, uid: str, atr: bytes = CONTACTLESS_ATR,
                 extra: ApduHandler | None = None) -> None:
        self.uid = bytes.fromhex(uid)
        self.atr = atr
        self.extra = extra
        self.apdus_seen = 0

    def respond(self, apdu: bytes) -> bytes:
        """The card's answer to one command APDU."""
        self.apdus_seen += 1
        if apdu[:2] == b"\xff\xca" and len(apdu) >= 4:
            if apdu[2:4] == b"\x00\x00":
                return self.uid + SW_OK
            return SW_WRONG_LENGTH
        if self.extra is not None:
            return self.extra(apdu)
        return SW_INS_NOT_SUPPORTED

    def tap(self, hold_s: float = 0.3, host: str = VPCD_HOST, port: int = VPCD_PORT,
            connect_timeout: float = 5.0) -> None:
        """Present the card for `hold_s` seconds, answering the reader, then take it away."""
        sock = socket.create_connection((host, port), timeout=connect_timeout)
        # Answer at once: without these, delayed ACKs hold each response ~40 ms.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if hasattr(socket, "TCP_QUICKACK"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        try:
            serve(sock, self, until=time.monotonic() + hold_s)
        finally:
            sock.close()

    def tap_async(self, hold_s: float = 0.3, host: str = VPCD_HOST,
                  port: int = VPCD_PORT) -> threading.Thread:
        thread = threading.Thread(target=self.tap, args=(hold_s, host, port), daemon=True)
        thread.start()
        return thread


def recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("vpcd closed the connection")
        if hasattr(socket, "TCP_QUICKACK"):
            # vpcd writes a length and then its message; acknowledge at once so that
            # Nagle on its side does not hold the message for our delayed ACK (~40 ms).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        data += chunk
    return data


def serve(sock: socket.socket, card: VirtualCard, until: float) -> None:
    """Answer vpcd's messages until the deadline (the card leaves the field then)."""
    while True:
        remaining = until - time.monotonic()
        if remaining <= 0:
            return
        sock.settimeout(remaining)
        try:
            header = recv_exact(sock, 2)
        except TimeoutError:
            return
        sock.settimeout(5.0)
        (length,) = struct.unpack(">H", header)
        message = recv_exact(sock, length)
        if length == 1:
            if message[0] == 4:
                sock.sendall(struct.pack(">H", len(card.atr)) + card.atr)
            continue  # power on / off / reset: no answer
        answer = card.respond(message)
        sock.sendall(struct.pack(">H", len(answer)) + answer)
