"""Keeping the deny list in step with cards, and broadcasting it to validators.

The database is the source of truth: `refresh_denylist` runs in the same transaction as
whatever changed a card (a charge, a top-up, a block), so the list can never disagree
with the balances. Publishers (one per gateway) only read it and publish the same
deterministic messages, so several gateways may publish side by side.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping

from sqlalchemy import delete, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from fare_gateway.adapters.models import DenyChange, DenyEntry, SigningKey
from fare_gateway.fares.policy import FarePolicy
from ledger.adapters.sql import insert_ignore, one_of, parts
from ledger.services import card_states
from transit import denylist as wire
from transit.topics import Topics

log = logging.getLogger(__name__)
KEY_NAME = "denylist"


def deny_reason(policy: FarePolicy, category: str, status: str, balance: int) -> str | None:
    """Why a card must be refused at the reader now, or None."""
    if status == "blocked":
        return "blocked"
    if balance < policy.lowest_fare(category):
        return "balance"
    return None


def refresh_denylist(session: Session, policy: FarePolicy, cards: Iterable[str],
                     state: Mapping[str, tuple[str, str, int]] | None = None) -> int:
    """Bring these cards' deny-list state in line with their status and balance.

    Call it inside the transaction that changed them (their rows are locked there).
    `state` may give each card's (category, status, balance) as that transaction left
    them, sparing a read. Returns the number of changes recorded.
    """
    wanted = sorted(set(cards))
    if not wanted:
        return 0
    now = int(time.time() * 1000)
    changes = 0
    session.flush()  # the reads below go past the ORM: let them see its pending changes
    conn = session.connection()
    d = DenyEntry.__table__.c
    for part in parts(conn, wanted):
        if state is None:
            rows = [(s.card, s.category, s.status, s.balance)
                    for s in card_states(session, part).values()]
        else:
            rows = [(card, *state[card]) for card in part if card in state]
        listed = dict(conn.execute(select(d.card, d.reason)
                                   .where(one_of(conn, d.card, part))).all())
        for card, category, status, balance in rows:
            reason = deny_reason(policy, category, status, balance)
            if (reason is None) == (card not in listed) and (
                    reason is None or listed.get(card) == reason):
                continue
            op = "-" if reason is None else "+"
            if op == "+" and card in listed:
                # Still denied, for another reason: not a change validators need.
                session.execute(DenyEntry.__table__.update().where(DenyEntry.card == card)
                                .values(reason=reason))
                continue
            change = DenyChange(card=card, op=op, reason=reason or "cleared", changed_ms=now)
            session.add(change)
            session.flush()
            if op == "+":
                session.add(DenyEntry(card=card, reason=reason, version=change.version))
            else:
                session.execute(delete(DenyEntry).where(DenyEntry.card == card))
            changes += 1
    return changes


def network_key(sessions: sessionmaker[Session]) -> tuple[bytes, bytes]:
    """The network's Ed25519 (private, public) key pair, made on first use."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    with sessions.begin() as session:
        row = session.get(SigningKey, KEY_NAME)
        if row is None:
            key = Ed25519PrivateKey.generate()
            private = key.private_bytes(serialization.Encoding.Raw,
                                        serialization.PrivateFormat.Raw,
                                        serialization.NoEncryption())
            public = key.public_key().public_bytes(serialization.Encoding.Raw,
                                                   serialization.PublicFormat.Raw)
            session.execute(insert_ignore(session, SigningKey.__table__), [{
                "name": KEY_NAME, "private_hex": private.hex(), "public_hex": public.hex(),
                "created_ms": int(time.time() * 1000)}])
            row = session.get(SigningKey, KEY_NAME)
            assert row is not None
        return bytes.fromhex(row.private_hex), bytes.fromhex(row.public_hex)


def snapshot_at(session: Session, base: int) -> list[str]:
    """Every card whose latest change at or before `base` put it on the list."""
    latest = (select(DenyChange.card, func.max(DenyChange.version).label("v"))
              .where(DenyChange.version <= base).group_by(DenyChange.card).subquery())
    return list(session.scalars(
        select(DenyChange.card).join(latest, (latest.c.card == DenyChange.card)
                                     & (latest.c.v == DenyChange.version))
        .where(DenyChange.op == "+")).all())


class DenyListPublisher:
    """Publishes the retained snapshot and changes whenever the list moves (polls ~4x/s)."""

    def __init__(self, sessions: sessionmaker[Session], client: object, topics: Topics,
                 interval_s: float = 0.25, resnapshot_s: float = 60.0) -> None:
        self.sessions = sessions
        self.client = client
        self.topics = topics
        self.interval_s = interval_s
        self.resnapshot_s = resnapshot_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="denylist", daemon=True)
        self._published: tuple[int, str] | None = None  # (version, changes payload digest)
        self._snapshot: tuple[int, str, float] | None = None  # (base, sha256, when)
        self.key: bytes | None = None

    def start(self) -> None:
        self.key, _public = network_key(self.sessions)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        failing = False
        while not self._stop.wait(self.interval_s if not failing else 1.0):
            try:
                self.publish_once()
            except OperationalError as exc:  # the database is away: say so once, retry
                if not failing:
                    why = (str(exc.orig).splitlines() or [type(exc.orig).__name__])[0]
                    log.warning("deny list not published: database unreachable (%s); "
                                "retrying every second", why)
                failing = True
                continue
            except Exception:
                if not self.client.is_connected():  # type: ignore[attr-defined]
                    # The broker is away (the gateway's consumer says so and reconnects):
                    # say so once per outage, and publish when it is back.
                    if not failing:
                        log.warning("deny list not published: no connection to the broker; "
                                    "retrying every second")
                    failing = True
                    continue
                log.exception("deny list not published this time")  # a fault: its traceback
                failing = True
                continue
            if failing:
                log.info("deny list publishing again")
            failing = False

    def publish_once(self) -> None:
        """Publish what changed since last time (both messages are retained).

        The snapshot on the contract's topic is always the whole current list; the
        changes message lets validators that hold a snapshot follow along cheaply.
        """
        assert self.key is not None
        with self.sessions() as session:
            version = int(session.scalar(select(func.coalesce(func.max(DenyChange.version),
                                                              0))) or 0)
            now = time.monotonic()
            if self._snapshot is None or self._snapshot[0] != version or \
                    now - self._snapshot[2] > self.resnapshot_s:
                cards = snapshot_at(session, version)
                digest = wire.cards_digest(cards)
                if self._snapshot is None or self._snapshot[:2] != (version, digest):
                    self._send(self.topics.denylist, wire.snapshot_message(
                        version, cards, int(time.time() * 1000), self.key))
                self._snapshot = (version, digest, now)
            base = wire.snapshot_base(version)
            changes = session.execute(select(DenyChange.version, DenyChange.card, DenyChange.op)
                                      .where(DenyChange.version > base)
                                      .order_by(DenyChange.version)).all()
        body = ";".join(f"{v},{c},{o}" for v, c, o in changes)
        if self._published == (version, body):
            return
        self._send(f"{self.topics.denylist}/changes", wire.changes_message(
            base, version, [tuple(r) for r in changes], int(time.time() * 1000), self.key))
        self._published = (version, body)

    def _send(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=True)  # type: ignore[attr-defined]
        info.wait_for_publish(timeout=10)
