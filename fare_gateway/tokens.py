"""API bearer tokens: random secrets shown once, stored only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from fare_gateway.adapters.models import ApiToken
from ledger.adapters.db import Sessions

ROLES = ("admin", "ops", "finance")
RIDER = "rider"  # made only by a rider's login (fare_gateway.riders), never by a command
PREFIX = "tt"
# What `create_token` makes: the prefix, the token's id (8 random bytes in hex) and its
# secret (32 random bytes, base64url without padding: 43 characters).
TOKEN_SHAPE = re.compile(rf"{PREFIX}_[0-9a-f]{{16}}_[A-Za-z0-9_-]{{43}}")


class TokenError(ValueError):
    """A token request that cannot be honoured."""


@dataclass(frozen=True)
class Principal:
    token_id: str
    role: str
    account_id: int | None = None  # the rider account of a rider token

    def may(self, *roles: str) -> bool:
        """Admin may do everything staff may; other roles only what names them. The rider
        endpoints answer to rider tokens alone (they act on the caller's own account,
        which a staff token has not), and a rider token opens nothing else."""
        if self.role == RIDER or RIDER in roles:
            return self.role in roles
        return self.role == "admin" or self.role in roles


def well_formed(token: str) -> bool:
    """Whether `token` has the shape of one `create_token` makes: anything else cannot
    be a token, and is refused without a lookup."""
    return TOKEN_SHAPE.fullmatch(token) is not None


def _hash(token: str) -> str:
    # The token carries 256 random bits, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, role: str, label: str = "",
                 ttl_days: int | None = None) -> str:
    """Make a token for a role; the clear text is returned once and never stored."""
    if role not in ROLES:
        raise TokenError(f"role must be one of {', '.join(ROLES)}")
    now = int(time.time() * 1000)
    return _new_token(session, role, label, now,
                      now + ttl_days * 86_400_000 if ttl_days else None, None)


def create_rider_token(session: Session, account_id: int, ttl_ms: int) -> tuple[str, int]:
    """A rider's login token for its account, and when it expires (epoch ms)."""
    now = int(time.time() * 1000)
    expires = now + ttl_ms
    return _new_token(session, RIDER, "login", now, expires, account_id), expires


def _new_token(session: Session, role: str, label: str, now: int, expires_ms: int | None,
               account_id: int | None) -> str:
    token_id = secrets.token_hex(8)
    token = f"{PREFIX}_{token_id}_{secrets.token_urlsafe(32)}"
    session.add(ApiToken(id=token_id, role=role, token_hash=_hash(token), label=label,
                         created_ms=now, expires_ms=expires_ms, revoked_ms=None,
                         account_id=account_id))
    session.flush()
    return token


def revoke_token(session: Session, token_id: str) -> bool:
    """Revoke a token by its id (the part after `tt_`); False if there is no such token."""
    row = session.get(ApiToken, token_id)
    if row is None:
        return False
    if row.revoked_ms is None:
        row.revoked_ms = int(time.time() * 1000)
    return True


def authenticate(session: Session, token: str) -> Principal | None:
    """The principal a presented token stands for, or None if unknown, expired or revoked."""
    if not well_formed(token):
        return None
    row = session.execute(select(ApiToken).where(ApiToken.token_hash == _hash(token))).scalar()
    if row is None or row.revoked_ms is not None:
        return None
    if row.expires_ms is not None and row.expires_ms <= int(time.time() * 1000):
        return None
    return Principal(row.id, row.role, row.account_id)


def principal_for(sessions: Sessions, token: str) -> Principal | None:
    """`authenticate` in a short session of its own, for a caller that holds none."""
    with sessions() as session:
        return authenticate(session, token)
