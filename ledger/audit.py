"""The audit trail (contract section 9): every change made by staff or riders, through
the API or the commands, recorded in the same transaction as the change and chained
(`ledger.chain`), so that a record removed, changed or added behind the application's
back is caught by `transit reconcile` and shown by `GET /api/v1/audit`.

A record names who (the token, its holder's name and role; the operating-system user
and host of a command; a rider's account number, never an e-mail, which deleting the
account must erase), when, what (an action and its subject) and from where.
"""

from __future__ import annotations

import json
import os
import pwd
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger import chain
from ledger.adapters.models import AuditRecord
from ledger.fingerprint import Fingerprints

CHAIN = "audit"
WHAT = "audit record"


@dataclass(frozen=True)
class Actor:
    """Who made a change, and from where."""

    kind: str  # token | command | rider | system
    id: str
    name: str = ""
    role: str = ""
    source: str = ""

    @classmethod
    def command(cls) -> Actor:
        """Whoever runs a `transit` command here: the operating-system user and host."""
        user = command_user(os.geteuid())
        return cls("command", user.id[:64], user.name[:100], "",
                   f"cli@{socket.gethostname()}"[:100])

    @classmethod
    def system(cls, name: str) -> Actor:
        """A change a program makes on its own (a gateway loading its fare policy)."""
        return cls("system", name[:64], name[:100], "", socket.gethostname()[:100])


@dataclass(frozen=True)
class CommandUser:
    """The operating-system user a command runs as (`id`), and how the trail names it."""

    id: str
    name: str


def command_user(euid: int) -> CommandUser:
    """The user of the effective uid `euid`, never USER, LOGNAME or SUDO_USER (which
    whoever runs the command sets as they like: `USER=sari transit cards topup ...` must
    not be recorded as sari); `uid N` when the uid has no name (a bare container)."""
    try:
        user = pwd.getpwuid(euid).pw_name
    except KeyError:
        user = f"uid {euid}"
    return CommandUser(user, user)


def _payload(at_ms: int, actor: Actor, action: str, subject: str, detail: str
             ) -> list[object]:
    return [at_ms, actor.kind, actor.id, actor.name, actor.role, actor.source, action,
            subject, detail]


def record(session: Session, fingerprints: Fingerprints, actor: Actor, action: str,
           subject: str = "", detail: Mapping[str, object] | None = None,
           at_ms: int | None = None) -> AuditRecord:
    """Record a change in the caller's transaction (commit it with the change).

    Call it after the change's own writes: it locks the chain's head until the
    transaction ends, so audited changes take turns only for their commit.
    """
    at = int(time.time() * 1000) if at_ms is None else at_ms
    text = json.dumps(dict(detail or {}), sort_keys=True, separators=(",", ":"),
                      default=str)
    subject = subject[:160]
    link, = chain.append(session, fingerprints, CHAIN,
                         [_payload(at, actor, action, subject, text)])
    row = AuditRecord(seq=link.seq, at_ms=at, actor_kind=actor.kind, actor_id=actor.id,
                      actor_name=actor.name, actor_role=actor.role, source=actor.source,
                      action=action, subject=subject, detail=text, prev_mac=link.prev_mac,
                      mac=link.mac)
    session.add(row)
    session.flush()
    return row


def payload_of(row: AuditRecord) -> list[object]:
    """What a stored record's fingerprint covers."""
    return [row.at_ms, row.actor_kind, row.actor_id, row.actor_name, row.actor_role,
            row.source, row.action, row.subject, row.detail]


def records(session: Session, from_ms: int | None = None, to_ms: int | None = None,
            after_seq: int = 0, limit: int | None = None) -> list[AuditRecord]:
    """Records in order, optionally within [from_ms, to_ms) and after `after_seq`."""
    stmt = select(AuditRecord).where(AuditRecord.seq > after_seq)
    if from_ms is not None:
        stmt = stmt.where(AuditRecord.at_ms >= from_ms)
    if to_ms is not None:
        stmt = stmt.where(AuditRecord.at_ms < to_ms)
    stmt = stmt.order_by(AuditRecord.seq)
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))


def _all(session: Session) -> Iterator[tuple[int, str, str, list[object]]]:
    rows = session.scalars(select(AuditRecord).order_by(AuditRecord.seq)
                           .execution_options(yield_per=2000))
    for row in rows:
        yield row.seq, row.prev_mac, row.mac, payload_of(row)


def verify(session: Session, fingerprints: Fingerprints) -> list[str]:
    """Problems with the whole audit trail's chain (none: every record is as written)."""
    return chain.verify(session, fingerprints, CHAIN, _all(session), WHAT)


def as_json(row: AuditRecord) -> dict[str, object]:
    """A record as `GET /api/v1/audit` shows it."""
    return {
        "seq": row.seq,
        "at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(row.at_ms / 1000))
        + f".{row.at_ms % 1000:03d}Z",
        "actor": {"kind": row.actor_kind, "id": row.actor_id, "name": row.actor_name,
                  "role": row.actor_role},
        "source": row.source,
        "action": row.action,
        "subject": row.subject,
        "detail": json.loads(row.detail),
        "prev_hash": row.prev_mac,
        "hash": row.mac,
    }
