"""Tampering with the tables that decide money, behind the application's back, on real
PostgreSQL: `transit reconcile` names each change (contract section 9, `docs/audit.md`).

An honest ledger is built once, keyed under a test TRANSIT_SECRET_KEY, through the
project's own services (cards issued, top-ups, signed taps through the tap path, a card
blocked): two closed business days settled with `transit settle`, and the open day.
Each tamper is then made with plain SQL on a copy of that database (`CREATE DATABASE
... TEMPLATE`), the way an attacker with database access would make it: balanced, every
balance in step, so that only the fingerprints and the chains can tell. The commands
run in-process through click's CliRunner, with the run's environment.

The second test starts from a database at the revision before fingerprints, with rows
written then in plain SQL: `transit db upgrade` seals them, once, and an unkeyed
`transit reconcile` passes with its warning.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from sqlalchemy import text

from fare_gateway.cards import issue_card, set_card_status
from ledger.adapters.db import make_engine, session_factory
from ledger.audit import Actor
from ledger.fingerprint import UNKEYED_WARNING, Fingerprints
from ledger.settlement import EMPTY_SHA256, BusinessCalendar, chain_hash, compute
from testbed.environment import PG_ADMIN_URL
from testbed.postgres import drop_pg_database
from tests.integration.ledger.test_settlement import (
    BUS1,
    BUS2,
    A,
    C,
    S,
    World,
    at,
    new_world,
    tap,
)
from tests.support.days import business_days_back
from transit.cli import cli

KEY = bytes(range(100, 132))  # the test's TRANSIT_SECRET_KEY
B = "04E0000000000004"  # a regular rider's card, blocked at the end of day D
D, D1, TODAY = business_days_back(2), business_days_back(1), business_days_back(0)


def transit(url: str, key: bytes | None, *args: str) -> tuple[int, str]:
    """`transit ARGS` in-process, on this database, with or without the key."""
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("TRANSIT_")}
    env.update(TRANSIT_DATABASE_URL=url, TRANSIT_SECRET_KEY=key.hex() if key else None)
    result = CliRunner().invoke(cli, list(args), env=env)
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


def reconciled(url: str, key: bytes | None = KEY, *args: str) -> str:
    code, out = transit(url, key, "reconcile", *args)
    assert code == 0 and "MISMATCH" not in out, out
    return out


def caught(url: str, *lines: str) -> str:
    """Reconcile exits 1, and each of `lines` is part of one MISMATCH line."""
    code, out = transit(url, KEY, "reconcile")
    assert code == 1, f"not caught:\n{out}"
    mismatches = [line for line in out.splitlines() if line.startswith("MISMATCH")]
    for wanted in lines:
        assert any(wanted in line for line in mismatches), f"no line says {wanted!r}:\n{out}"
    return out


def sql(url: str, statement: str, **params: object) -> list[tuple[object, ...]]:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            result = conn.execute(text(statement), params)
            return [tuple(r) for r in result.all()] if result.returns_rows else []
    finally:
        engine.dispose()


def one(url: str, statement: str, **params: object) -> object:
    rows = sql(url, statement, **params)
    assert len(rows) == 1 and len(rows[0]) == 1, (statement, rows)
    return rows[0][0]


@dataclass
class Copies:
    """Copies of one database, made from it as a template (a file copy: fast)."""

    template: str
    made: list[str]

    def __call__(self) -> str:
        base, template = self.template.rsplit("/", 1)
        name = f"{template}_{uuid.uuid4().hex[:6]}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        url = f"{base}/{name}"
        self.made.append(url)
        return url


@pytest.fixture
def copies(pg_url: str) -> Iterator[Copies]:
    made: list[str] = []
    yield Copies(pg_url, made)
    # Dropped together: each drop waits for a checkpoint, which drops at once share.
    with ThreadPoolExecutor(max(len(made), 1)) as pool:
        list(pool.map(drop_pg_database, made))


def honest_ledger(world: World) -> None:
    """Two closed days, settled, and the open day, through the project's services."""
    with world.sessions.begin() as s:
        issue_card(s, world.ledger, world.policy, B, "regular", actor=Actor.command())
    world.topup(A, 50000, "pos-A-1", at(D, 4))
    world.topup(S, 20000, "pos-S-1", at(D, 4, 1))
    world.topup(C, 30000, "pos-C-1", at(D, 4, 2))
    world.topup(B, 10000, "pos-B-1", at(D, 4, 3))
    assert world.taps(at(D, 8, 0, 2), tap(BUS1, A, "R1", at(D, 8))) == ["charged"]
    # a transfer within the journey: a fare of 0, whose entry moves no balance but still
    # moves the card's chain
    assert world.taps(at(D, 8, 30, 2), tap(BUS2, A, "R3", at(D, 8, 30))) == ["charged"]
    assert world.taps(at(D, 10, 30, 2), tap(BUS1, C, "R1", at(D, 10, 30))) == ["charged"]
    # C's earlier tap arrives late: its fare, and a correction of the 10:30 one
    assert world.taps(at(D, 11), tap(BUS2, C, "R2", at(D, 9, 45))) == ["charged"]
    assert world.taps(at(D, 12, 0, 2), tap(BUS1, B, "R1", at(D, 12))) == ["charged"]
    with world.sessions.begin() as s:
        set_card_status(s, world.ledger, world.policy, B, "blocked", actor=Actor.command())
    assert world.taps(at(D1, 9, 0, 2), tap(BUS1, S, "R1", at(D1, 9))) == ["charged"]
    world.topup(C, 5000, "pos-C-2", at(D1, 10))
    now = int(time.time() * 1000)
    world.topup(A, 5000, "pos-A-2", now - 4000)
    assert world.taps(now, tap(BUS1, S, "R1", now - 2000)) == ["charged"]
    world.engine.dispose()


def on_copy(world: World, url: str) -> World:
    """The project's services on a copy of `world`'s database, under its key, its
    devices' sequence numbers carried on."""
    copy = World(make_engine(url), fingerprints=world.fingerprints)
    copy.seqs.update(world.seqs)
    return copy


def entries(url: str, card: str) -> list[tuple[int, str, int]]:
    """A card's entries, oldest first: (id, kind, amount)."""
    return [(int(i), str(k), int(a)) for i, k, a in sql(  # type: ignore[call-overload]
        url, "SELECT id, kind, amount FROM entries WHERE card = :c ORDER BY id", c=card)]


def test_reconcile_names_every_change_made_behind_the_applications_back(
        pg_url: str, copies: Copies, tmp_path: Path) -> None:
    world = new_world(pg_url, Fingerprints(KEY))
    honest_ledger(world)
    for day in (D, D1, D):  # settled again: the same file, no second record
        code, out = transit(pg_url, KEY, "settle", day, "--out", str(tmp_path), "--quiet")
        assert code == 0 and "(final)" in out, out
    honest = reconciled(pg_url)
    assert "warning" not in honest, honest
    for line in ("every one of 14 entries matches its fingerprint",
                 "every one of 4 cards matches its fingerprint",
                 "every card's chain of entries is complete (4 cards)",
                 "every one of 2 recorded day(s) in the audit trail still has its settlement",
                 "adjustment clearing equals the adjustments"):
        assert line in honest, honest
    recorded = sql(pg_url, "SELECT subject, actor_kind FROM audit_log WHERE action = "
                   "'settlement.recorded' ORDER BY seq")
    assert recorded == [(D, "command"), (D1, "command")]
    # Under another key nothing matches: the fingerprints are keyed.
    code, out = transit(pg_url, bytes(range(32)), "reconcile")
    assert code == 1 and f"card {A}: its category, status or chain head was changed" in out

    clearing = one(pg_url, "SELECT id FROM accounts WHERE kind = 'clearing' AND ref = "
                           "'topups'")
    account = dict(sql(pg_url, "SELECT ref, id FROM accounts WHERE kind IN ('card', "
                               "'revenue')"))
    now = int(time.time() * 1000)

    # (a) a balanced top-up of 9,000,000 in the open day: entry, postings, balance and
    # clearing all in step; the old checks see nothing wrong.
    url = copies()
    forged = one(url, "INSERT INTO entries (idem_key, kind, digest, amount, posted_ms, "
                      "currency, card, reference) VALUES ('topup:forged', 'topup', 'x', "
                      "9000000, :p, 'IDR', :c, 'forged') RETURNING id", p=now, c=A)
    sql(url, "INSERT INTO postings (entry_id, account_id, amount) VALUES (:e, :k, -9000000),"
             " (:e, :a, 9000000)", e=forged, k=clearing, a=account[A])
    sql(url, "UPDATE cards SET balance = balance + 9000000 WHERE card = :c", c=A)
    out = caught(url, f"entry {forged} (card {A}) has no fingerprint",
                 f"card {A}: entry {forged} is not on the card's chain")
    assert "ok       top-up clearing equals the top-ups" in out, out

    # (a') the same with a fingerprint made up and the entry linked after the card's head
    url = copies()
    head = one(url, "SELECT head FROM cards WHERE card = :c", c=A)
    forged = one(url, "INSERT INTO entries (idem_key, kind, digest, amount, posted_ms, "
                      "currency, card, reference, prev_mac, mac) VALUES ('topup:forged', "
                      "'topup', 'x', 9000000, :p, 'IDR', :c, 'forged', :h, :m) RETURNING id",
                 p=now, c=A, h=head, m="ab" * 32)
    sql(url, "INSERT INTO postings (entry_id, account_id, amount) VALUES (:e, :k, -9000000),"
             " (:e, :a, 9000000)", e=forged, k=clearing, a=account[A])
    sql(url, "UPDATE cards SET balance = balance + 9000000, head = :m WHERE card = :c",
        c=A, m="ab" * 32)
    caught(url, f"entry {forged} (card {A}) was changed after it was posted",
           f"card {A}: its category, status or chain head was changed")

    # (b) revenue moved from one operator to another by two corrections on a card, each
    # balanced, every operator's revenue still equal to its fares and corrections
    url = copies()
    moved = []
    for operator, amount, postings in (("SBY", -5000, ((account["SBY"], -5000),
                                                       (account[C], 5000))),
                                       ("TMN", 5000, ((account[C], -5000),
                                                      (account["TMN"], 5000)))):
        entry = one(url, "INSERT INTO entries (idem_key, kind, digest, amount, posted_ms, "
                         "currency, card, tap_id, service_date, operator_id, route_id, "
                         "category) VALUES (:k, 'correction', 'x', :a, :p, 'IDR', :c, "
                         "'DEV-1:1', :d, :o, 'R1', 'regular') RETURNING id",
                    k=f"corr:forged:{operator}", a=amount, p=now, c=C, d=TODAY, o=operator)
        for account_id, posted in postings:
            sql(url, "INSERT INTO postings (entry_id, account_id, amount) VALUES (:e, :a, :n)",
                e=entry, a=account_id, n=posted)
        moved.append(entry)
    out = caught(url, f"entry {moved[0]} (card {C}) has no fingerprint",
                 f"entry {moved[1]} (card {C}) has no fingerprint",
                 f"card {C}: entries {moved[0]}, {moved[1]} are not on the card's chain")
    assert "ok       revenue of" in out, out

    # (c) every settlement record deleted
    url = copies()
    sql(url, "DELETE FROM settlements")
    caught(url, f"business day {D} was recorded (audit record",
           f"business day {D1} was recorded (audit record", "it was deleted")

    # (d) a settled day's fare cut by 1000 in step, its record's hashes recomputed with
    # the published (unkeyed) formulas, and the next day's record re-linked to it: the
    # settlement chain holds, only the fingerprints and the audit trail tell.
    url = copies()
    fare = next(i for i, kind, amount in entries(url, A) if kind == "fare" and amount == 5000)
    sql(url, "UPDATE entries SET amount = 4000 WHERE id = :e", e=fare)
    sql(url, "UPDATE postings SET amount = CASE WHEN amount < 0 THEN -4000 ELSE 4000 END "
             "WHERE entry_id = :e", e=fare)
    sql(url, "UPDATE cards SET balance = balance + 1000 WHERE card = :c", c=A)
    engine = make_engine(url)
    with session_factory(engine)() as s:
        calendar = BusinessCalendar()
        day = compute(s, calendar, date.fromisoformat(D), "IDR", EMPTY_SHA256, True)
        next_day = compute(s, calendar, date.fromisoformat(D1), "IDR", day.sha256, True,
                           previous_chain=str(day.manifest["chain_sha256"]))
    engine.dispose()
    assert next_day.manifest["chain_sha256"] == chain_hash(
        str(day.manifest["chain_sha256"]), D1, next_day.sha256,
        str(next_day.manifest["entries_sha256"]), int(str(next_day.manifest["entries"])))
    for redone in (day, next_day):
        m = redone.manifest
        sql(url, "UPDATE settlements SET sha256 = :s, previous_sha256 = :p, "
                 "entries_sha256 = :e, chain_sha256 = :c, entries = :n, manifest = :m "
                 "WHERE business_date = :d", s=redone.sha256, p=m["previous_sha256"],
            e=m["entries_sha256"], c=m["chain_sha256"], n=m["entries"],
            m=redone.manifest_bytes.decode(), d=redone.day.isoformat())
    out = caught(url, f"entry {fare} (card {A}) was changed after it was posted",
                 f"settlement record of {D} was changed behind the application's back",
                 f"settlement record of {D1} was changed behind the application's back",
                 f"business day {D}: its settlement record's hashes differ from those "
                 "recorded in audit record")
    assert "ok       settlement chain of 2 day(s) unbroken" in out, out
    assert f"ok       business day {D}: 10 entries match their settlement" in out, out

    # (e) free rides: a card's category set to senior; and the card's next ride, free,
    # does not sign the change (the card keeps its failing fingerprint while its chain
    # moves on)
    url = copies()
    sql(url, "UPDATE cards SET category = 'senior' WHERE card = :c", c=A)
    senior = (f"card {A}: its category, status or chain head was changed behind the "
              "application's back (its fingerprint does not match; category senior")
    caught(url, senior)
    later = on_copy(world, url)
    ride = int(time.time() * 1000)
    assert later.taps(ride, tap(BUS2, A, "R1", ride - 1000)) == ["charged"]
    later.engine.dispose()
    assert entries(url, A)[-1][1:] == ("fare", 0)  # money still flows: the ride was taken
    caught(url, senior)

    # (f) a blocked card set active again, then topped up
    url = copies()
    sql(url, "UPDATE cards SET status = 'active' WHERE card = :c", c=B)
    active = (f"card {B}: its category, status or chain head was changed behind the "
              "application's back (its fingerprint does not match; category regular, "
              "status active)")
    caught(url, active)
    assert transit(url, KEY, "cards", "topup", B, "1000", "--reference", "kiosk-1")[0] == 0
    assert entries(url, B)[-1][1:] == ("topup", 1000)
    caught(url, active)

    # (g) an entry removed from the middle of a card's chain (its fare; the balance and
    # the revenue left as they were: the invariants catch the money, the chain the gap)
    url = copies()
    (first, _, _), (middle, _, _), (after, _, _), *_ = entries(url, A)
    sql(url, "DELETE FROM postings WHERE entry_id = :e", e=middle)
    sql(url, "DELETE FROM entries WHERE id = :e", e=middle)
    caught(url, f"card {A}: entry {after} follows an entry that is not there (an entry "
                "was removed from the card's chain)")

    # (h) a card's newest entry (the open day's fare) removed, its balance given back:
    # entries, postings, balances and revenue all agree again
    url = copies()
    last, kind, amount = entries(url, S)[-1]
    assert kind == "fare" and amount > 0
    sql(url, "DELETE FROM postings WHERE entry_id = :e", e=last)
    sql(url, "DELETE FROM entries WHERE id = :e", e=last)
    sql(url, "UPDATE cards SET balance = balance + :a WHERE card = :c", a=amount, c=S)
    out = caught(url, f"card {S}: its chain's head is the fingerprint of no entry")
    assert "ok       every entry balances; every card balance equals its postings" in out
    # ... and with the head moved back to the entry before it, the card's own
    # fingerprint tells
    prev = one(url, "SELECT mac FROM entries WHERE id = :e", e=entries(url, S)[-1][0])
    sql(url, "UPDATE cards SET head = :h WHERE card = :c", h=prev, c=S)
    caught(url, f"card {S}: its category, status or chain head was changed")
    # ... and the card's next top-up, chained after the forged head, does not sign it
    assert transit(url, KEY, "cards", "topup", S, "1000", "--reference", "kiosk-2")[0] == 0
    assert entries(url, S)[-1][1:] == ("topup", 1000)
    caught(url, f"card {S}: its category, status or chain head was changed")

    # (i) an audit record edited
    url = copies()
    sql(url, "UPDATE audit_log SET actor_name = 'someone else' WHERE seq = 1")
    caught(url, "audit record 1 was changed after it was written")

    # (j) the audit trail's newest record cut off and its head moved back to the one
    # before; the next honest change is recorded after it, and does not sign the head
    url = copies()
    last = int(str(one(url, "SELECT max(seq) FROM audit_log")))
    sql(url, "DELETE FROM audit_log WHERE seq = :n", n=last)
    sql(url, "UPDATE chain_heads SET seq = :n, last_mac = (SELECT mac FROM audit_log "
             "WHERE seq = :n) WHERE name = 'audit'", n=last - 1)
    caught(url, "the head of the audit records' chain was changed")
    assert transit(url, KEY, "cards", "topup", A, "1000", "--reference", "kiosk-3")[0] == 0
    assert sql(url, "SELECT seq, action FROM audit_log ORDER BY seq DESC LIMIT 1") == [
        (last, "card.topped_up")]
    caught(url, "the head of the audit records' chain was changed")


def test_rows_written_before_fingerprints_are_sealed_once_by_db_upgrade(
        pg_url: str) -> None:
    """Without TRANSIT_SECRET_KEY: sealed under the unkeyed fingerprints, and an honest
    reconcile passes with its warning line."""
    assert transit(pg_url, None, "db", "upgrade", "--revision", "0010")[0] == 0
    now = int(time.time() * 1000)
    for i, (kind, ref) in enumerate((("card", A), ("card", S), ("clearing", "topups"),
                                     ("revenue", "SBY"), ("revenue", "TMN")), start=1):
        sql(pg_url, "INSERT INTO accounts (id, kind, ref, currency, created_ms) VALUES "
                    "(:i, :k, :r, 'IDR', :n)", i=i, k=kind, r=ref, n=now)
    sql(pg_url, "INSERT INTO cards (card, category, status, account_id, balance, created_ms)"
                " VALUES (:a, 'regular', 'active', 1, 15000, :n), (:s, 'student', "
                "'active', 2, 0, :n)", a=A, s=S, n=now)
    # A's top-up and fare on day D, and a correction that names no card
    posted = at(D, 9)
    rows = [(1, "topup:t1", "topup", 20000, A, None, None, ((3, -20000), (1, 20000))),
            (2, "tap:DEV-1:1", "fare", 5000, A, "SBY", "DEV-1:1", ((1, -5000), (4, 5000))),
            (3, "corr:x", "correction", 0, None, "TMN", "DEV-1:1", ((5, 0), (4, 0)))]
    for entry_id, key, kind, amount, card, operator, tap_id, postings in rows:
        sql(pg_url, "INSERT INTO entries (id, idem_key, kind, digest, amount, posted_ms, "
                    "currency, card, tap_id, service_date, operator_id, route_id, category)"
                    " VALUES (:i, :k, :t, 'x', :a, :p, 'IDR', :c, :tap, :d, :o, :r, :cat)",
            i=entry_id, k=key, t=kind, a=amount, p=posted, c=card, tap=tap_id,
            d=D if operator else None, o=operator, r="R1" if operator else None,
            cat="regular" if operator else None)
        for account_id, n in postings:
            sql(pg_url, "INSERT INTO postings (entry_id, account_id, amount) VALUES "
                        "(:e, :a, :n)", e=entry_id, a=account_id, n=n)
    engine = make_engine(pg_url)
    with session_factory(engine)() as s:
        settled = compute(s, BusinessCalendar(), date.fromisoformat(D), "IDR", EMPTY_SHA256,
                          True)
    engine.dispose()
    m = settled.manifest
    sql(pg_url, "INSERT INTO settlements (business_date, sha256, previous_sha256, "
                "entries_sha256, chain_sha256, entries, manifest, created_ms) VALUES "
                "(:d, :s, :p, :e, :c, :n, :m, :t)", d=D, s=settled.sha256,
        p=m["previous_sha256"], e=m["entries_sha256"], c=m["chain_sha256"], n=m["entries"],
        m=settled.manifest_bytes.decode(), t=now)
    sql(pg_url, "SELECT setval('entries_id_seq', 3), setval('accounts_id_seq', 5)")
    # S, with nothing on it, on the deny list as the gateway of then had put it.
    sql(pg_url, "INSERT INTO denylist_changes (version, card, op, reason, changed_ms) "
                "VALUES (1, :s, '+', 'balance', :n)", s=S, n=now)
    sql(pg_url, "INSERT INTO denylist (card, reason, version) VALUES (:s, 'balance', 1)", s=S)
    sql(pg_url, "SELECT setval('denylist_changes_version_seq', 1)")

    code, out = transit(pg_url, None, "db", "upgrade")
    assert code == 0, out
    assert "fingerprinted the rows written before fingerprints: entries 3, cards 2, " \
           "settlements 1" in out, out
    assert sql(pg_url, "SELECT action, detail FROM audit_log") == [
        ("fingerprints.sealed",
         '{"cards":2,"denylist":1,"denylist_changes":1,"entries":3,"settlements":1}')]
    assert one(pg_url, "SELECT count(*) FROM entries WHERE card = :a AND prev_mac IS NULL",
               a=A) == 1  # A's first entry starts its chain; its fare follows it
    out = reconciled(pg_url, None)
    assert out.splitlines()[0] == f"warning  {UNKEYED_WARNING}", out
    assert "every card's chain of entries is complete (2 cards)" in out, out
    # Again: nothing left to seal, and nothing said about it.
    code, out = transit(pg_url, None, "db", "upgrade")
    assert code == 0 and "fingerprint" not in out, out

    # A row slipped in without a fingerprint after the upgrade is not sealed by the next
    # one: it stays a mismatch.
    sql(pg_url, "INSERT INTO entries (idem_key, kind, digest, amount, posted_ms, currency, "
                "card, reference) VALUES ('topup:late', 'topup', 'x', 0, :p, 'IDR', :a, 'l')",
        p=now, a=A)
    late = one(pg_url, "SELECT id FROM entries WHERE idem_key = 'topup:late'")
    sql(pg_url, "INSERT INTO postings (entry_id, account_id, amount) VALUES (:e, 3, 0), "
                "(:e, 1, 0)", e=late)
    assert transit(pg_url, None, "db", "upgrade")[0] == 0
    code, out = transit(pg_url, None, "reconcile")
    assert code == 1 and f"entry {late} (card {A}) has no fingerprint" in out, out
    # A sealed row changed afterwards is caught like any other.
    sql(pg_url, "DELETE FROM postings WHERE entry_id = :e", e=late)
    sql(pg_url, "DELETE FROM entries WHERE id = :e", e=late)
    sql(pg_url, "UPDATE entries SET operator_id = 'SBY' WHERE id = 3")
    code, out = transit(pg_url, None, "reconcile")
    assert code == 1 and "entry 3 (no card) was changed after it was posted" in out, out
