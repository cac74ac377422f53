"""Settlement asked for by many at once (issue 14, point 6; contract section 6).

A closed, never-settled business day holding real taps is asked for by 16 finance clients
at the same moment, through a running gateway and through `transit settle` run side by
side, on PostgreSQL and on SQLite. Every one of them must get the one settlement: 200 (or
exit 0), the same manifest and file bytes, and a single record in the chain.

The days are built in-process through the project's own services (signed taps on the tap
path, top-ups) with a ledger clock that is the posting time, so that entries land on
chosen days in the recent past; what is shown is then driven from outside. The days are
a few days back from today, inside the age a tap may have (contract section 10).
"""

from __future__ import annotations

import hashlib
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import text

from ledger.settlement import EMPTY_SHA256
from testbed.gateway import transit
from tests.conftest import System
from tests.integration.ledger.test_settlement import BUS1, BUS2, A, S, at, new_world, tap
from tests.support.days import business_days_back
from tests.support.settlements import totals

# Money is written here: the embedded SQLite (the demo's database) is held to the
# same results as PostgreSQL.
pytestmark = pytest.mark.sqlite_too

PARALLEL = 16
T = TypeVar("T")


# Built-in policy: regular 5000, student 2500 (after 07:00). Day one: A's top-up only.
# Day two: S's top-up; A at 08:00 on R1 (5000) and 11:00 on R2 (more than
# 120 minutes later: a new journey, 5000); S at 09:00 on R1 (2500).
EXPECTED_TOTALS = totals(fare=12500, topup=20000)
EXPECTED_ENTRIES = 4
EXPECTED_LINES = 4


def build_closed_days(url: str, n: int = 2) -> list[str]:
    """`n` closed business days with entries, none settled, oldest first: a top-up on
    each day but the last, which holds the day described above EXPECTED_TOTALS."""
    days = [business_days_back(k) for k in range(n + 1, 1, -1)]
    world = new_world(url)
    try:
        for i, day in enumerate(days[:-1]):
            world.topup(A, 10000, f"counter-{day}", at(day, 9 + i % 3))
        last = days[-1]
        world.topup(S, 20000, "counter-last", at(last, 4))
        assert world.taps(at(last, 8), tap(BUS1, A, "R1", at(last, 8) - 2000)) == ["charged"]
        assert world.taps(at(last, 9), tap(BUS1, S, "R1", at(last, 9) - 2000)) == ["charged"]
        assert world.taps(at(last, 11), tap(BUS2, A, "R2", at(last, 11) - 2000)) == [
            "charged"]
    finally:
        world.engine.dispose()
    return days


def all_at_once(work: Callable[[], T], n: int = PARALLEL) -> list[T]:
    """`work` run by `n` threads released together."""
    start = threading.Barrier(n)

    def one() -> T:
        start.wait(timeout=60)
        return work()

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: one(), range(n)))


def get(base: str, path: str, token: str) -> tuple[int, bytes]:
    req = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def settlement_chain(system: System) -> list[tuple[str, str, str | None, str]]:
    """The settlement records, by business day: (day, sha256, previous_sha256, manifest)."""
    engine = system.engine()
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT business_date, sha256, previous_sha256, manifest FROM settlements "
                "ORDER BY business_date")).all()
            return [(day, sha, previous, manifest) for day, sha, previous, manifest in rows]
    finally:
        engine.dispose()


def check_settled(system: System, manifest: bytes, days: list[str]) -> None:
    """The last day's manifest as built, and a record for it and each day before it,
    in one chain."""
    parsed = json.loads(manifest)
    assert parsed["settlement_date"] == days[-1] and parsed["status"] == "final"
    assert parsed["totals"] == EXPECTED_TOTALS, parsed
    assert parsed["entries"] == EXPECTED_ENTRIES and parsed["lines"] == EXPECTED_LINES
    # the days before it (never asked for) are settled too, each chained to the day
    # before: the first to the empty day before anything was posted, the last is this one
    chain = settlement_chain(system)
    assert [day for day, *_ in chain] == days
    assert chain[0][2] == EMPTY_SHA256
    for (_, before, _, _), (day, _, previous, _) in pairwise(chain):
        assert previous == before, day
    assert (chain[-1][1], json.loads(chain[-1][3])) == (parsed["sha256"], parsed)
    reconciled = system.transit("reconcile", check=False)
    assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr


def test_parallel_first_requests_for_a_closed_day_all_get_the_one_settlement(
        system: System) -> None:
    days = build_closed_days(system.env["TRANSIT_DATABASE_URL"])
    second = days[-1]
    token = system.token("finance")
    base = system.gateway.base_url

    answers = all_at_once(lambda: get(base, f"/api/v1/settlements/{second}", token))

    statuses = sorted(status for status, _ in answers)
    assert statuses == [200] * PARALLEL, [(s, b[:300]) for s, b in answers if s != 200]
    manifests = {body for _, body in answers}
    assert len(manifests) == 1, "the requests were given different settlements"
    manifest = manifests.pop()
    check_settled(system, manifest, days)
    # asked again, once settled: the same bytes, and the CSV is the one the manifest hashes
    assert get(base, f"/api/v1/settlements/{second}", token) == (200, manifest)
    status, csv = get(base, f"/api/v1/settlements/{second}/lines.csv", token)
    assert status == 200
    assert json.loads(manifest)["sha256"] == hashlib.sha256(csv).hexdigest()


def test_parallel_settle_commands_for_a_closed_day_write_the_one_settlement(
        system: System, tmp_path: Path) -> None:
    days = build_closed_days(system.env["TRANSIT_DATABASE_URL"])
    second = days[-1]
    outs = [tmp_path / f"clerk-{i}" for i in range(PARALLEL)]
    folders = iter(outs)
    lock = threading.Lock()

    def settle() -> tuple[int, str]:
        with lock:
            out = next(folders)
        result = transit("settle", second, "--out", str(out), "--quiet", env=system.env,
                         check=False)
        return result.returncode, result.stdout + result.stderr

    results = all_at_once(settle)

    failed = [out for code, out in results if code != 0]
    assert failed == [], failed[:3]
    assert not any("Traceback" in out for _, out in results)
    csvs = {(out / f"settlement-{second}.csv").read_bytes() for out in outs}
    manifests = {(out / f"settlement-{second}.json").read_bytes() for out in outs}
    assert len(csvs) == 1 and len(manifests) == 1, "the commands wrote different files"
    check_settled(system, manifests.pop(), days)
    reconciled = system.transit("reconcile", "--dir", str(outs[0]), check=False)
    assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr


def test_parallel_first_requests_for_several_closed_days_all_get_their_settlements(
        system: System) -> None:
    """Clerks fetching a week at once: each request settles the days before its own, so
    one may commit the first days of the chain while others are still recording the
    rest. Every request still gets its day's one settlement, chained to the day before."""
    days = build_closed_days(system.env["TRANSIT_DATABASE_URL"], n=7)
    token = system.token("finance")
    base = system.gateway.base_url
    asked = iter(range(PARALLEL))
    lock = threading.Lock()

    def fetch() -> tuple[str, int, bytes]:
        with lock:
            day = days[next(asked) % len(days)]
        return (day, *get(base, f"/api/v1/settlements/{day}", token))

    answers = all_at_once(fetch)

    failed = [(day, status, body[:300]) for day, status, body in answers if status != 200]
    assert failed == [], failed
    by_day: dict[str, set[bytes]] = {}
    for day, _status, body in answers:
        by_day.setdefault(day, set()).add(body)
    assert sorted(by_day) == days
    assert all(len(bodies) == 1 for bodies in by_day.values()), "a day had two settlements"
    manifests = [json.loads(by_day[day].pop()) for day in days]
    for before, after in zip(manifests, manifests[1:], strict=False):
        assert after["previous_sha256"] == before["sha256"], (before, after)
    check_settled(system, json.dumps(manifests[-1]).encode(), days)
