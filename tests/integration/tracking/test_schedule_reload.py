"""The schedule a running gateway serves, from outside: a second `transit gtfs import` of
a changed feed is served within seconds (its new route's headways answer), and while the
feed stays as it is the gateway only asks the import's stamp, never reading the
schedule again (`transit_schedule_reads_total` against `transit_schedule_checks_total`
in `/metrics`)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.broker import Broker
from tests.conftest import System
from tests.support.commands import transit_here
from tests.support.faults import wait_until
from tests.support.feeds import SMALL, changed, write_feed
from tests.support.tj_gateway import tj_gateway

# The small feed with a third route, run on R1's shape.
WITH_R3 = changed("trips.txt", SMALL["trips.txt"] + "R3,daily,T3,Rajawali,0,R1-0\n",
                  changed("routes.txt", SMALL["routes.txt"]
                          + "R3,SBY,R3,Purabaya - Rajawali express,E4002B\n",
                          changed("stop_times.txt", SMALL["stop_times.txt"]
                                  + "T3,,,Terminal Purabaya,1\nT3,,,SBY-RAJAWALI,2\n")))


@pytest.fixture(scope="module")
def small(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    folder = tmp_path_factory.mktemp("reload")
    with tj_gateway(broker, folder, write_feed(folder / "small.zip", SMALL)) as system:
        yield system


def counter(system: System, name: str) -> float:
    status, body = system.http.get("/metrics")
    assert status == 200
    text = body.decode() if isinstance(body, bytes) else str(body)
    found = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    assert found is not None, f"{name} not in /metrics"
    return float(found.group(1))


def test_an_unchanged_feed_is_not_read_again_and_a_new_import_is_served_in_seconds(
        small: System, tmp_path: Path) -> None:
    ops = small.token("ops")
    assert small.http.get("/api/v1/routes/R1/headways", token=ops)[0] == 200
    assert small.http.get("/api/v1/routes/R3/headways", token=ops)[0] == 404
    reads = counter(small, "transit_schedule_reads_total")
    checks = counter(small, "transit_schedule_checks_total")
    # Several checks of the stamp (one every 2 s), and not one read more.
    wait_until(lambda: counter(small, "transit_schedule_checks_total") >= checks + 3, 30,
               "three checks of the imported feed")
    assert counter(small, "transit_schedule_reads_total") == reads

    transit_here("gtfs", "import", str(write_feed(tmp_path / "r3.zip", WITH_R3)),
                 env=small.env)
    imported = time.monotonic()
    wait_until(lambda: small.http.get("/api/v1/routes/R3/headways", token=ops)[0] == 200,
               15, "the new route served")
    assert time.monotonic() - imported < 15
    assert counter(small, "transit_schedule_reads_total") == reads + 1
    # ... and that one read is the last while the feed stays.
    checks = counter(small, "transit_schedule_checks_total")
    wait_until(lambda: counter(small, "transit_schedule_checks_total") >= checks + 2, 30,
               "two more checks")
    assert counter(small, "transit_schedule_reads_total") == reads + 1
