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


def record_loaded(sessions: sessionmaker[Session], fingerprints: Fingerprints,
                  actor: audit.Actor, setting: str, policy: FarePolicy) -> bool:
    """Record that `policy` (read from `setting`) is in force, unless the trail's last
    `fares.loaded` record names the same bytes; whether a record was written."""
    detail = loaded_detail(setting, policy)
    with sessions.begin() as session:
        # The chain's head, locked first: two gateways starting at once with a new
        # policy take turns here, and the second finds the first's record. (Before the
        # trail's first record there is no head to lock; two records are then possible.)
        session.execute(select(ChainHead.seq).where(ChainHead.name == audit.CHAIN)
                        .with_for_update())
        last = session.scalar(select(AuditRecord.detail).where(AuditRecord.action == ACTION)
                              .order_by(AuditRecord.seq.desc()).limit(1))
        if last is not None and _sha256_of(last) == detail["sha256"]:
            return False
        audit.record(session, fingerprints, actor, ACTION, str(detail["source"])[:160],
                     detail)
        return True


def _sha256_of(detail: str) -> object:
    try:
        return json.loads(detail).get("sha256")
    except (ValueError, AttributeError):  # a record not written by this module
        return None
