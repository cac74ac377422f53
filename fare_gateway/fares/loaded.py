"""The fare policy a gateway starts with, in the audit trail (`fares.loaded`).

What a rider pays follows the policy, so a change of it is a change like any other: when
`transit gateway` starts with a policy other than the one the trail last recorded, it
writes a `fares.loaded` record. A restart with the same policy records nothing, so a
fleet of gateways restarting does not flood the trail. The policy is known by the
SHA-256 of its bytes (the built-in one's too): the same rules saved under another name
are the same policy.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from fare_gateway.fares.policy import MAX_POLICY_BYTES, FarePolicy
from ledger import audit
from ledger.adapters.models import AuditRecord, ChainHead
from ledger.fingerprint import Fingerprints

ACTION = "fares.loaded"
BUILT_IN = "built-in"


def policy_sha256(setting: str) -> str:
    """The SHA-256 of the policy file `TRANSIT_FARES` names (empty: the built-in one)."""
    if not setting:
        data = resources.files("fare_gateway.fares").joinpath("surabaya.toml").read_bytes()
    else:
        with Path(setting).open("rb") as f:
            data = f.read(MAX_POLICY_BYTES + 1)  # as much as load_policy would read
    return hashlib.sha256(data).hexdigest()


def loaded_detail(setting: str, policy: FarePolicy) -> dict[str, object]:
    """What a `fares.loaded` record says of the policy."""
    return {"sha256": policy_sha256(setting), "source": setting or BUILT_IN,
            "rules": len(policy.rules), "categories": list(policy.categories),
            "currency": policy.currency}


def loaded_sha256(session: Session) -> str | None:
    """The SHA-256 of the policy the newest `fares.loaded` record names (None: none)."""
    last = session.scalar(select(AuditRecord.detail).where(AuditRecord.action == ACTION)
                          .order_by(AuditRecord.seq.desc()).limit(1))
    found = None if last is None else _sha256_of(last)
    return found if isinstance(found, str) else None


def record_loaded(sessions: sessionmaker[Session], fingerprints: Fingerprints,
                  actor: audit.Actor, setting: str, policy: FarePolicy) -> bool:
    """Record that `policy` (read from `setting`) is in force, unless the trail's last
    `fares.loaded` record names the same bytes; whether a record was written.

    A new policy may move lowest fares, and with them which cards the deny list must
    hold: the list is brought in line with it for every card (`refresh_all`) before the
    gateway takes taps."""
    detail = loaded_detail(setting, policy)
    with sessions.begin() as session:
        # The chain's head, locked first: two gateways starting at once with a new
        # policy take turns here, and the second finds the first's record. (Before the
        # trail's first record there is no head to lock; two records are then possible.)
        session.execute(select(ChainHead.seq).where(ChainHead.name == audit.CHAIN)
                        .with_for_update())
        if loaded_sha256(session) == detail["sha256"]:
            return False
        audit.record(session, fingerprints, actor, ACTION, str(detail["source"])[:160],
                     detail)
    refresh_all(sessions, fingerprints, policy)
    return True


REFRESH_BATCH = 2000


def refresh_all(sessions: sessionmaker[Session], fingerprints: Fingerprints,
                policy: FarePolicy) -> int:
    """The deny list brought in line with `policy` for every card, a batch of cards per
    transaction (each batch locked, in card order, as the tap path locks them, so that a
    tap charged meanwhile is judged after or before, never half-way); how many changes."""
    from fare_gateway.denylist import refresh_denylist
    from ledger.adapters.models import Card
    from ledger.services import card_states

    changes, after = 0, ""
    while True:
        with sessions.begin() as session:
            batch = list(session.scalars(select(Card.card).where(Card.card > after)
                                         .order_by(Card.card).limit(REFRESH_BATCH)))
            if not batch:
                return changes
            states = card_states(session, batch, lock=True)
            changes += refresh_denylist(
                session, policy, batch,
                {c: (s.category, s.status, s.balance) for c, s in states.items()},
                fingerprints=fingerprints)
        after = batch[-1]


def _sha256_of(detail: str) -> object:
    try:
        return json.loads(detail).get("sha256")
    except (ValueError, AttributeError):  # a record not written by this module
        return None
