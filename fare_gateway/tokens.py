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

    def may(self, *roles: str) -> bool:
        """Admin may do everything; other roles only what names them."""
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
    token_id = secrets.token_hex(8)
    token = f"{PREFIX}_{token_id}_{secrets.token_urlsafe(32)}"
    now = int(time.time() * 1000)
    session.add(ApiToken(id=token_id, role=role, token_hash=_hash(token), label=label,
                         created_ms=now,
                         expires_ms=now + ttl_days * 86_400_000 if ttl_days else None,
                         revoked_ms=None))
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
    return Principal(row.id, row.role)


def principal_for(sessions: Sessions, token: str) -> Principal | None:
    """`authenticate` in a short session of its own, for a caller that holds none."""
    with sessions() as session:
        return authenticate(session, token)
