"""Fixtures for the validator-agent tests: a pcscd with the vpcd reader, and agents
started against the `system` fixture's broker and registered device."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from testbed.pcsc import (
    AgentProcess,
    PrivatePcscd,
    SystemPcscd,
    pcscd_for_tests,
    start_agent,
)
from tests.conftest import System


@pytest.fixture(scope="session")
def pcscd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivatePcscd | SystemPcscd]:
    """A running pcscd with a "Virtual PCD" reader (the run's own where possible)."""
    daemon = pcscd_for_tests(tmp_path_factory.mktemp("pcscd"))
    yield daemon
    if isinstance(daemon, PrivatePcscd):
        daemon.stop()


AgentFactory = Callable[..., AgentProcess]


@pytest.fixture
def agent_factory(system: System, pcscd: PrivatePcscd | SystemPcscd,
                  tmp_path: Path) -> Iterator[AgentFactory]:
    """Starts `transit agent` for the system's device on its broker and pcscd; every
    agent started is stopped (and its log shown on failure) at the end of the test."""
    started: list[AgentProcess] = []

    def make(reader: str = "pcsc", extra_args: Sequence[str] = (), name: str = "agent",
             env: dict[str, str] | None = None, vehicle: str = "SBY-0042",
             route: str = "R1") -> AgentProcess:
        agent_env = dict(env if env is not None else system.env, **pcscd.env())
        proc = start_agent(agent_env, tmp_path, system.device_id, vehicle, route,
                           system.secret, reader=reader, extra_args=extra_args, name=name)
        started.append(proc)
        return proc

    yield make
    for proc in started:
        proc.stop()
        print(f"--- {proc.log_path.name} ---\n{proc.log_tail(6000)}")
        print(f"--- events ---\n{proc.events[-40:]}")
