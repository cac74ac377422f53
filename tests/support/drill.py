"""A validator agent in the test's own process, for drills of a few seconds.

`transit agent` takes SIGUSR1 as the tunnel drill and stays off the broker for a
minute; here the same `Agent.go_offline` is called with the seconds a test can afford.
The agent is the real one (its spool on disk, paho against a real broker); only what it
shows the passenger is kept in memory (`Shown`), where the test reads its receipts.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from transit.settings import Settings
from transit.topics import Topics
from transit.wire import Receipt
from validator_agent.agent import Agent, AgentConfig
from validator_agent.domain import Decision
from validator_agent.gps import Cadence, FixFeed
from validator_agent.spool import Spool


@dataclass
class Shown:
    """What the agent showed the passenger: each tap's decision, each receipt."""

    decisions: list[tuple[str | None, int | None, Decision]] = field(default_factory=list)
    receipts: dict[int, Receipt] = field(default_factory=dict)
    _cv: threading.Condition = field(default_factory=threading.Condition)

    def decided(self, card: str | None, seq: int | None, decision: Decision,
                latency_ms: float) -> None:
        with self._cv:
            self.decisions.append((card, seq, decision))
            self._cv.notify_all()

    def receipted(self, receipt: Receipt) -> None:
        with self._cv:
            self.receipts[receipt.seq] = receipt
            self._cv.notify_all()

    def alarm(self, name: str, active: bool) -> None:
        pass

    def wait_receipts(self, seqs: set[int], timeout: float = 20.0) -> dict[int, Receipt]:
        """The receipts of `seqs`, once every one has come."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while not seqs <= set(self.receipts):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"receipts for {sorted(seqs - set(self.receipts))} "
                                       f"not shown within {timeout}s")
                self._cv.wait(min(remaining, 0.5))
            return {seq: self.receipts[seq] for seq in seqs}


def standing_gps(lat: float = -7.2575, lon: float = 112.7521) -> FixFeed:
    """A receiver that reports a bus standing still, one fix a second."""
    from validator_agent.adapters.sim_gps import standing

    return FixFeed(lambda: standing(lat, lon))


def agent_in_process(env: dict[str, str], device_id: str, secret: bytes, spool: Path, *,
                     vehicle_id: str = "SBY-0042", route_id: str = "R1",
                     gps: FixFeed | None = None, every_s: float = 1.0
                     ) -> tuple[Agent, Shown]:
    """An agent for `device_id` on the broker and topics of `env` (not started). With
    `gps`, it publishes a position every `every_s` seconds, moving or standing."""
    settings = Settings.from_env(env)
    config = AgentConfig(device_id=device_id, vehicle_id=vehicle_id, route_id=route_id,
                         secret=secret, mqtt=settings.mqtt,
                         topics=Topics(settings.topic_prefix),
                         cadence=Cadence(moving_s=every_s, standing_s=every_s))
    shown = Shown()
    # Retries 2 s after a publish that got no receipt: a drill of a few seconds sees one.
    return Agent(config, Spool(spool, first_retry_ms=2_000), shown, gps), shown
