"""Positions: what a fix is, where fixes come from, and when to publish one.

Sources: gpsd (its JSON protocol on TCP 2947), an NMEA 0183 serial device (RMC
sentences), the simulator (validator_agent.adapters.sim_gps), or none. A position is
published every `moving_s` seconds while the bus moves and every `standing_s` while it
stands, and never without a fix.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fix:
    """One position fix; speed and bearing when the receiver knows them."""

    ts_ms: int
    lat_e6: int
    lon_e6: int
    speed_cms: int | None = None
    bearing_deg: int | None = None


@dataclass(frozen=True)
class Cadence:
    moving_s: float = 5.0
    standing_s: float = 30.0
    moving_cms: int = 100  # faster than 1 m/s is moving


def due(last_sent_ms: int | None, fix: Fix, cadence: Cadence) -> bool:
    """Whether this fix should be published, given when the last one went out."""
    if last_sent_ms is None:
        return True
    moving = fix.speed_cms is None or fix.speed_cms >= cadence.moving_cms
    interval = cadence.moving_s if moving else cadence.standing_s
    return fix.ts_ms - last_sent_ms >= interval * 1000


def _nmea_coord(value: str, hemisphere: str) -> int:
    degrees_len = 2 if hemisphere in "NS" else 3
    degrees = int(value[:degrees_len])
    minutes = float(value[degrees_len:])
    coord = degrees + minutes / 60
    return int(round((-coord if hemisphere in "SW" else coord) * 1e6))


def _nmea_checksum_ok(sentence: str) -> bool:
    body, star, check = sentence.strip().lstrip("$").partition("*")
    if not star:
        return False
    total = 0
    for ch in body:
        total ^= ord(ch)
    try:
        return total == int(check[:2], 16)
    except ValueError:
        return False


def parse_rmc(sentence: str, now_ms: int) -> Fix | None:
    """A fix from an RMC sentence with status A (valid); None otherwise."""
    if not sentence.startswith("$") or not _nmea_checksum_ok(sentence):
        return None
    fields = sentence.strip().lstrip("$").split("*")[0].split(",")
    if len(fields) < 9 or not fields[0].endswith("RMC") or fields[2] != "A":
        return None
    try:
        lat = _nmea_coord(fields[3], fields[4])
        lon = _nmea_coord(fields[5], fields[6])
        speed = int(round(float(fields[7]) * 51.4444)) if fields[7] else None  # knots
        bearing = int(round(float(fields[8]))) % 360 if fields[8] else None
    except (ValueError, IndexError):
        return None
    return Fix(now_ms, lat, lon, speed, bearing)


def nmea_fixes(device: str) -> Iterator[Fix]:
    """Fixes from an NMEA device (a serial port or any file that streams sentences)."""
    with open(device, encoding="ascii", errors="replace") as stream:
        for line in stream:
            fix = parse_rmc(line, int(time.time() * 1000))
            if fix is not None:
                yield fix


def gpsd_fixes(host: str = "127.0.0.1", port: int = 2947) -> Iterator[Fix]:
    """Fixes from gpsd's JSON stream (TPV reports with mode 2 or 3)."""
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(b'?WATCH={"enable":true,"json":true};\n')
        buffer = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                try:
                    report = json.loads(line)
                except ValueError:
                    continue
                if report.get("class") != "TPV" or report.get("mode", 0) < 2:
                    continue
                if "lat" not in report or "lon" not in report:
                    continue
                speed = report.get("speed")
                track = report.get("track")
                yield Fix(int(time.time() * 1000), int(round(report["lat"] * 1e6)),
                          int(round(report["lon"] * 1e6)),
                          None if speed is None else int(round(speed * 100)),
                          None if track is None else int(round(track)) % 360)


class FixFeed:
    """Runs a fix source in a thread (restarting it when it fails) and keeps the latest."""

    def __init__(self, source: Callable[[], Iterator[Fix]], max_age_s: float = 10.0) -> None:
        self.source = source
        self.max_age_s = max_age_s
        self._latest: Fix | None = None
        self._when = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gps", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def latest(self) -> Fix | None:
        """The last fix, if it is recent enough to be true."""
        if self._latest is None or time.monotonic() - self._when > self.max_age_s:
            return None
        return self._latest

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for fix in self.source():
                    self._latest, self._when = fix, time.monotonic()
                    if self._stop.is_set():
                        return
            except Exception as exc:  # receiver unplugged, gpsd restarted...
                log.warning("GPS source failed (%s); retrying", exc)
            self._stop.wait(2.0)
