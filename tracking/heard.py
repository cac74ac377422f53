"""When each validator was last heard, collected off the tap path and written to Redis by
a thread of its own: a charge never waits on Redis, however slowly it answers."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Protocol

log = logging.getLogger(__name__)


class HeardStore(Protocol):
    """Where the times go (`tracking.store.TrackingStore.heard`)."""

    def heard(self, when: Mapping[str, int]) -> None: ...


class HeardLog:
    """Collects `note`s in memory (one entry per device: bounded by the fleet) and writes
    them once per `interval_s`; what could not be written is kept for the next try."""

    def __init__(self, store: HeardStore, interval_s: float = 1.0) -> None:
        self.store = store
        self.interval_s = interval_s
        self._pending: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="heard", daemon=True)

    def note(self, device_ids: Iterable[str], at_ms: int) -> None:
        """These devices were heard at `at_ms`; never blocks on I/O."""
        with self._lock:
            for device_id in device_ids:
                if self._pending.get(device_id, 0) < at_ms:
                    self._pending[device_id] = at_ms

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Write what is held, then stop."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self.flush()

    def flush(self) -> None:
        """Write what was noted since the last flush."""
        with self._lock:
            batch, self._pending = self._pending, {}
        if not batch:
            return
        try:
            self.store.heard(batch)
        except Exception as exc:
            with self._lock:
                for device_id, ms in batch.items():
                    if self._pending.get(device_id, 0) < ms:
                        self._pending[device_id] = ms
            if not self._failing:
                log.warning("cannot record which validators were heard (%s): the "
                            "validators' state may lag until it works again", exc)
            self._failing = True
            return
        if self._failing:
            log.info("recording which validators were heard again")
        self._failing = False

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.flush()
