"""Keeping the deny list in step with cards, and broadcasting it to validators.

The database is the source of truth: `refresh_denylist` runs in the same transaction as
whatever changed a card (a charge, a top-up, a block), so the list can never disagree
with the balances. Publishers (one per gateway) only read it and publish the same
deterministic messages, so several gateways may publish side by side.

The network's Ed25519 signing key lives in `signing_keys`, its private half sealed under
``TRANSIT_SECRET_KEY`` exactly like a device secret (`fare_gateway.devices.seal`), bound
to the key's id: a database dump alone cannot sign a list validators accept. A row
stored plain (before the key was sealed, or without the setting) is sealed the first
time it is used with the setting. `rotate_network_key` replaces the key pair (the old
private key is overwritten, not kept); every publisher notices within a poll and
publishes both retained messages again, signed with the new key, so that validators
given the new public key drop a list built under the old one (`transit.denylist`).

Every row of `denylist` and `denylist_changes` carries a keyed fingerprint (`mac`, see
`ledger.fingerprint`) over all its columns, set by `refresh_denylist`, the one writer: a
change added with plain SQL (a `-` that drops a blocked card from the list validators
are sent) has none that matches, and `transit reconcile` names it
(`fare_gateway.integrity`), as it names a list that does not agree with the replay of
its changes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping

from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from fare_gateway.adapters.models import DenyChange, DenyEntry, SigningKey
from fare_gateway.devices import is_sealed, seal, unseal, warn_if_unsealed
from fare_gateway.fares.policy import FarePolicy
from ledger.adapters.bulk import bulk_insert, bulk_set
from ledger.adapters.sql import dialect_of, insert_ignore, one_of, parts
from ledger.fingerprint import Fingerprints
from ledger.services import card_states
from transit import denylist as wire
from transit.mqtt_stream import NotPublished
from transit.topics import Topics

log = logging.getLogger(__name__)
KEY_NAME = "denylist"


def entry_mac(fingerprints: Fingerprints, card: str, reason: str, version: int) -> str:
    """The fingerprint of a `denylist` row."""
    return fingerprints.of("denylist", card, reason, version)


def change_mac(fingerprints: Fingerprints, version: int, card: str, op: str, reason: str,
               changed_ms: int) -> str:
    """The fingerprint of a `denylist_changes` row (its number included: a change cannot
    be moved, nor copied under another number)."""
    return fingerprints.of("denylist_changes", version, card, op, reason, changed_ms)


def deny_reason(policy: FarePolicy, category: str, status: str, balance: int) -> str | None:
    """Why a card must be refused at the reader now, or None."""
    if status == "blocked":
        return "blocked"
    if balance < policy.lowest_fare(category):
        return "balance"
    return None


def refresh_denylist(session: Session, policy: FarePolicy, cards: Iterable[str],
                     state: Mapping[str, tuple[str, str, int]] | None = None, *,
                     fingerprints: Fingerprints) -> int:
    """Bring these cards' deny-list state in line with their status and balance.

    Call it inside the transaction that changed them (their rows are locked there).
    `state` may give each card's (category, status, balance) as that transaction left
    them, sparing a read. `fingerprints` are the keyed ones (`Ledger.fingerprints`).
    Returns the number of changes recorded.
    """
    wanted = sorted(set(cards))
    if not wanted:
        return 0
    fp = fingerprints
    now = int(time.time() * 1000)
    session.flush()  # the reads below go past the ORM: let them see its pending changes
    conn = session.connection()
    d = DenyEntry.__table__.c
    changes: list[tuple[str, str, str]] = []  # (card, op, reason), in card order
    reasons: list[tuple[str, str, str]] = []  # (card, reason, mac): still listed, why moved
    for part in parts(conn, wanted):
        if state is None:
            rows = [(s.card, s.category, s.status, s.balance)
                    for s in card_states(session, part).values()]
        else:
            rows = [(card, *state[card]) for card in part if card in state]
        listed = {card: (reason, version) for card, reason, version in conn.execute(
            select(d.card, d.reason, d.version).where(one_of(conn, d.card, part))).all()}
        for card, category, status, balance in rows:
            reason = deny_reason(policy, category, status, balance)
            if reason is None:
                if card in listed:
                    changes.append((card, "-", "cleared"))
            elif card not in listed:
                changes.append((card, "+", reason))
            elif listed[card][0] != reason:
                # Still denied, for another reason: not a change validators need.
                version = listed[card][1]
                reasons.append((card, reason, entry_mac(fp, card, reason, version)))
    bulk_set(session, DenyEntry.__table__, "card", ("reason", "mac"), reasons)
    _record_changes(session, fp, changes, now)
    return len(changes)


def _record_changes(session: Session, fp: Fingerprints, changes: list[tuple[str, str, str]],
                    now: int) -> None:
    """Write these changes, each with its fingerprint, and the list's rows they make.

    A change's fingerprint covers its number, so the numbers come first: on PostgreSQL
    one read takes them all from the column's sequence and each table then takes one
    statement, whatever the number of changes (the tap path puts a batch's cards on the
    list together). SQLite, in-process, numbers them as it inserts them.
    """
    if not changes:
        return
    table = DenyChange.__table__
    if dialect_of(session) == "postgresql":
        versions = sorted(session.scalars(text(
            "SELECT nextval(pg_get_serial_sequence('denylist_changes', 'version')) "
            "FROM generate_series(1, :n)"), {"n": len(changes)}))
        bulk_insert(session, table, [
            {"version": version, "card": card, "op": op, "reason": reason,
             "changed_ms": now, "mac": change_mac(fp, version, card, op, reason, now)}
            for version, (card, op, reason) in zip(versions, changes, strict=True)])
    else:
        versions = [session.scalars(insert(table).returning(table.c.version), {
            "card": card, "op": op, "reason": reason, "changed_ms": now}).one()
            for card, op, reason in changes]
        bulk_set(session, table, "version", ("mac",), [
            (version, change_mac(fp, version, card, op, reason, now))
            for version, (card, op, reason) in zip(versions, changes, strict=True)])
    bulk_insert(session, DenyEntry.__table__, [
        {"card": card, "reason": reason, "version": version,
         "mac": entry_mac(fp, card, reason, version)}
        for version, (card, op, reason) in zip(versions, changes, strict=True) if op == "+"])
    cleared = [card for card, op, _reason in changes if op == "-"]
    conn = session.connection()
    for part in parts(conn, cleared) if cleared else []:
        session.execute(delete(DenyEntry).where(one_of(conn, DenyEntry.card, part)))


KEY_WHAT = "the deny-list signing key"


def _bound_to(public: bytes) -> str:
    """The associated data a private key is sealed with: its key's id (the prefix keeps it
    apart from every device id, which cannot hold a colon)."""
    return f"denylist-key:{wire.key_id(public)}"


def _open(row: SigningKey, secret_key: bytes | None) -> bytes:
    """The private key of `row`; `SecretKeyError` (one line) when it cannot be opened."""
    return unseal(row.private_hex, secret_key, _bound_to(bytes.fromhex(row.public_hex)),
                  KEY_WHAT)


def network_key(sessions: sessionmaker[Session], secret_key: bytes | None
                ) -> tuple[bytes, bytes]:
    """The network's Ed25519 (private, public) key pair, made on first use.

    `secret_key` is the at-rest key (`Settings.secret_key`): the private key is stored
    sealed under it, and a plain row is sealed now. A sealed row with no key, or with
    the wrong one, raises `SecretKeyError`.
    """
    warn_if_unsealed(secret_key)
    with sessions.begin() as session:
        row = session.get(SigningKey, KEY_NAME)
        if row is None:
            private, public = wire.new_key_pair()
            session.execute(insert_ignore(session, SigningKey.__table__), [{
                "name": KEY_NAME, "private_hex": seal(private, secret_key, _bound_to(public)),
                "public_hex": public.hex(), "created_ms": int(time.time() * 1000)}])
            row = session.get(SigningKey, KEY_NAME)  # another gateway's, if it came first
            assert row is not None
        private = _open(row, secret_key)
        if secret_key is not None and not is_sealed(row.private_hex):
            row.private_hex = seal(private, secret_key, _bound_to(bytes.fromhex(row.public_hex)))
            log.info("%s is now sealed under TRANSIT_SECRET_KEY", KEY_WHAT)
        return private, bytes.fromhex(row.public_hex)


def rotate_network_key(sessions: sessionmaker[Session], secret_key: bytes | None) -> bytes:
    """Make a new key pair the network's signing key; returns its public key.

    The old private key is overwritten (destroyed): a list signed with it, forged or not,
    is refused by validators given the new public key. The current key must open with
    `secret_key` first, so that a wrong TRANSIT_SECRET_KEY cannot seal the new key under
    a key the gateways do not hold.
    """
    warn_if_unsealed(secret_key)
    private, public = wire.new_key_pair()
    sealed = seal(private, secret_key, _bound_to(public))
    now = int(time.time() * 1000)
    with sessions.begin() as session:
        # No key yet: make ours the first. A gateway making its first key at the same
        # moment (`network_key`) makes this insert wait for its commit and do nothing,
        # where a plain insert would fail on the duplicate name; the row is then theirs,
        # and is rotated below like any other.
        session.execute(insert_ignore(session, SigningKey.__table__), [{
            "name": KEY_NAME, "private_hex": sealed, "public_hex": public.hex(),
            "created_ms": now}])
        row = session.get(SigningKey, KEY_NAME, with_for_update=True)
        assert row is not None
        if row.public_hex == public.hex():
            return public
        _open(row, secret_key)
        row.private_hex, row.public_hex, row.created_ms = sealed, public.hex(), now
        return public


def snapshot_at(session: Session, base: int) -> list[str]:
    """Every card whose latest change at or before `base` put it on the list."""
    latest = (select(DenyChange.card, func.max(DenyChange.version).label("v"))
              .where(DenyChange.version <= base).group_by(DenyChange.card).subquery())
    return list(session.scalars(
        select(DenyChange.card).join(latest, (latest.c.card == DenyChange.card)
                                     & (latest.c.v == DenyChange.version))
        .where(DenyChange.op == "+")).all())


class DenyListPublisher:
    """Publishes the retained snapshot and changes whenever the list moves (polls ~4x/s).

    Each poll also looks at the signing key: after `transit denylist rotate-key` both
    messages are published again, signed with the new key, within a poll.
    `secret_key` is the at-rest key the private key is sealed with.
    """

    def __init__(self, sessions: sessionmaker[Session], client: object, topics: Topics,
                 interval_s: float = 0.25, resnapshot_s: float = 60.0, *,
                 secret_key: bytes | None) -> None:
        self.sessions = sessions
        self.secret_key = secret_key
        self.client = client
        self.topics = topics
        self.interval_s = interval_s
        self.resnapshot_s = resnapshot_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="denylist", daemon=True)
        self._published: tuple[int, str] | None = None  # (version, changes payload digest)
        self._snapshot: tuple[int, str, float] | None = None  # (base, sha256, when)
        self.key: bytes | None = None
        self.public_hex = ""

    def start(self) -> None:
        self._load_key()
        self._thread.start()

    def _load_key(self) -> None:
        self.key, public = network_key(self.sessions, self.secret_key)
        self.public_hex = public.hex()

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
            except NotPublished as exc:  # the broker away or too slow: once, retry
                if not failing:
                    log.warning("deny list not published: %s; retrying every second", exc)
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
        self._follow_key()
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

    def _follow_key(self) -> None:
        """Take up the signing key if it was rotated since the last poll."""
        with self.sessions() as session:
            current = session.scalar(select(SigningKey.public_hex)
                                     .where(SigningKey.name == KEY_NAME))
        if current == self.public_hex:
            return
        self._load_key()
        self._snapshot = self._published = None  # both messages again, with the new key
        log.info("deny-list signing key is now %s: publishing the list signed with it",
                 wire.key_id(bytes.fromhex(self.public_hex)))

    def _send(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=True)  # type: ignore[attr-defined]
        info.wait_for_publish(timeout=10)
