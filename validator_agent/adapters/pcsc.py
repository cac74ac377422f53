"""Cards through PC/SC (pyscard): any reader, any number, survivors of every mishap.

A card arriving at a reader is read with the PC/SC pseudo-APDU `FF CA 00 00 00` (GET
DATA: UID). The loop watches readers with SCardGetStatusChange and the PnP notification
reader, so readers may come and go; a card pulled away mid-read, an unplugged reader and
a restarted pcscd are logged and survived, never fatal.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from smartcard import scard

log = logging.getLogger(__name__)
GET_UID = [0xFF, 0xCA, 0x00, 0x00, 0x00]
PNP = "\\\\?PnP?\\Notification"
LOST_SERVICE = {scard.SCARD_E_NO_SERVICE, scard.SCARD_E_SERVICE_STOPPED,
                scard.SCARD_E_INVALID_HANDLE, scard.SCARD_F_COMM_ERROR,
                getattr(scard, "SCARD_E_NO_READERS_AVAILABLE", 0x8010002E)}

# (uid hex or None when unreadable, monotonic time the card was seen, reader name)
CardHandler = Callable[[str | None, float, str], None]
# Run on the open connection after the UID is read (validator_agent.secure_card):
# (card handle, protocol, uid) -> True authentic, False not authentic, None unchecked.
# When set, `on_card` gets the verdict as a fourth argument.
CardCheck = Callable[[int, int, str], "bool | None"]


class CardReadError(Exception):
    """The card could not be read (pulled away, not a contactless card, ...)."""


def read_uid(context: int, reader: str) -> str:
    """Connect to the card on `reader` and read its UID; raises CardReadError."""
    return read_card(context, reader)[0]


def read_card(context: int, reader: str,
              check: CardCheck | None = None) -> tuple[str, bool | None]:
    """The UID, and the verdict of `check` run on the same connection (None without)."""
    hresult, card, protocol = scard.SCardConnect(
        context, reader, scard.SCARD_SHARE_SHARED,
        scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1)
    if hresult != scard.SCARD_S_SUCCESS:
        raise CardReadError(scard.SCardGetErrorMessage(hresult))
    try:
        hresult, response = scard.SCardTransmit(card, protocol, GET_UID)
        if hresult != scard.SCARD_S_SUCCESS:
            raise CardReadError(scard.SCardGetErrorMessage(hresult))
        if len(response) < 2 or response[-2:] != [0x90, 0x00]:
            raise CardReadError(f"GET UID answered {bytes(response[-2:]).hex()}")
        uid = bytes(response[:-2])
        if not 4 <= len(uid) <= 16:
            raise CardReadError(f"UID of {len(uid)} bytes")
        uid_hex = uid.hex().upper()
        return uid_hex, (check(card, protocol, uid_hex) if check is not None else None)
    finally:
        scard.SCardDisconnect(card, scard.SCARD_LEAVE_CARD)


class PcscCardSource:
    """Watches every PC/SC reader and calls `on_card` once per card arrival."""

    def __init__(self, on_card: CardHandler, poll_ms: int = 250,
                 check: CardCheck | None = None) -> None:
        self.on_card = on_card
        self.check = check
        self.poll_ms = poll_ms
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pcsc", daemon=True)
        self.readers: list[str] = []

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
            if hresult != scard.SCARD_S_SUCCESS:
                log.warning("PC/SC unavailable (%s); retrying", scard.SCardGetErrorMessage(hresult))
                self._stop.wait(1.0)
                continue
            try:
                self._watch(context)
            except Exception:  # never let the reader loop die
                log.exception("PC/SC loop failed; starting again")
                self._stop.wait(0.5)
            finally:
                scard.SCardReleaseContext(context)

    def _watch(self, context: int) -> None:
        """Watch until the service goes away (then the caller re-establishes)."""
        while not self._stop.is_set():
            hresult, readers = scard.SCardListReaders(context, [])
            if hresult in LOST_SERVICE and hresult != getattr(
                    scard, "SCARD_E_NO_READERS_AVAILABLE", 0x8010002E):
                return
            readers = list(readers) if hresult == scard.SCARD_S_SUCCESS else []
            if readers != self.readers:
                log.info("readers: %s", ", ".join(readers) or "none")
                self.readers = readers
            states = [(r, scard.SCARD_STATE_UNAWARE) for r in readers]
            states.append((PNP, scard.SCARD_STATE_UNAWARE))
            present: dict[str, bool] = {r: False for r in readers}
            first = True
            while not self._stop.is_set():
                hresult, new = scard.SCardGetStatusChange(context, self.poll_ms, states)
                if hresult == scard.SCARD_E_TIMEOUT:
                    continue
                if hresult != scard.SCARD_S_SUCCESS:
                    if hresult in LOST_SERVICE:
                        log.warning("pcscd went away (%s)", scard.SCardGetErrorMessage(hresult))
                        return
                    break  # a reader vanished or appeared: list them again
                relist = False
                states = []
                for name, event, _atr in new:
                    if name == PNP:
                        # pcscd reports the reader count in the high word of the state.
                        if not first and event & scard.SCARD_STATE_CHANGED:
                            relist = True
                        states.append((name, event & ~scard.SCARD_STATE_CHANGED))
                        continue
                    if event & (scard.SCARD_STATE_UNKNOWN | scard.SCARD_STATE_IGNORE
                                | scard.SCARD_STATE_UNAVAILABLE):
                        relist = True
                    is_present = bool(event & scard.SCARD_STATE_PRESENT) and not bool(
                        event & scard.SCARD_STATE_MUTE)
                    if is_present and not present.get(name, False):
                        self._arrived(context, name)
                    present[name] = is_present
                    states.append((name, event & ~scard.SCARD_STATE_CHANGED))
                first = False
                if relist:
                    break

    def _arrived(self, context: int, reader: str) -> None:
        seen = time.monotonic()
        try:
            uid, verdict = read_card(context, reader, self.check)
        except CardReadError as exc:
            log.info("card on %s could not be read: %s", reader, exc)
            self.on_card(None, seen, reader)
            return
        if self.check is None:
            self.on_card(uid, seen, reader)
        else:
            self.on_card(uid, seen, reader, verdict)  # type: ignore[call-arg]
