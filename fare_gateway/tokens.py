"""API bearer tokens: random secrets shown once, stored only as SHA-256 hashes.

Each row carries a keyed fingerprint (`api_tokens.mac`, `ledger.fingerprint`) over every
column, set when the token is made and when it is revoked. Whoever can write the
database but does not hold TRANSIT_SECRET_KEY can insert a row with the hash of a token
of their own, or lift a row's role or expiry, but cannot give it a fingerprint that
matches: `authenticate` refuses such a row and `transit reconcile` names it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from fare_gateway.adapters.models import ApiToken
from ledger.adapters.db import Sessions
from ledger.fingerprint import Fingerprints

ROLES = ("admin", "ops", "finance")
RIDER = "rider"  # made only by a rider's login (fare_gateway.riders), never by a command
PREFIX = "tt"
# What `create_token` makes: the prefix, the token's id (8 random bytes in hex) and its
# secret (32 random bytes, base64url without padding: 43 characters).
TOKEN_SHAPE = re.compile(rf"{PREFIX}_[0-9a-f]{{16}}_[A-Za-z0-9_-]{{43}}")
NAME_CHARS = 100  # api_tokens.name
TOKEN_FIELDS = ("id", "role", "token_hash", "name", "label", "created_ms", "expires_ms",
                "revoked_ms", "account_id")


class TokenError(ValueError):
    """A token request that cannot be honoured."""


@dataclass(frozen=True)
class Principal:
    token_id: str
    role: str
    account_id: int | None = None  # the rider account of a rider token
    name: str = ""  # the holder a staff token names (`transit tokens create --name`)

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


def token_fields(row: ApiToken) -> tuple[object, ...]:
    """What a token row's fingerprint covers: every column, in `TOKEN_FIELDS` order."""
    return tuple(getattr(row, name) for name in TOKEN_FIELDS)


def token_mac(fingerprints: Fingerprints, fields: Sequence[object]) -> str:
    """The fingerprint of a token row holding `fields` (`token_fields`)."""
    return fingerprints.of("api_tokens", *fields)


def create_token(session: Session, role: str, label: str = "",
                 ttl_days: int | None = None, *, name: str = "",
                 fingerprints: Fingerprints) -> str:
    """Make a token for a role, naming its holder; the clear text is returned once and
    never stored. `fingerprints` are the keyed ones (`Ledger.fingerprints`)."""
    if role not in ROLES:
        raise TokenError(f"role must be one of {', '.join(ROLES)}")
    name = name.strip()
    if len(name) > NAME_CHARS or any(not c.isprintable() for c in name):
        raise TokenError(f"the holder's name must be at most {NAME_CHARS} printable "
                         "characters")
    now = int(time.time() * 1000)
    return _new_token(session, role, label, now,
                      now + ttl_days * 86_400_000 if ttl_days else None, None, name,
                      fingerprints).token


def create_rider_token(session: Session, account_id: int, ttl_ms: int, *,
                       fingerprints: Fingerprints) -> tuple[str, int]:
    """A rider's login token for its account, and when it expires (epoch ms)."""
    now = int(time.time() * 1000)
    expires = now + ttl_ms
    made = _new_token(session, RIDER, "login", now, expires, account_id, "",
                      fingerprints)
    return made.token, expires


@dataclass(frozen=True)
class NewToken:
    """A token just made: its clear text (shown once) and its row."""

    token: str
    row: ApiToken


def _new_token(session: Session, role: str, label: str, now: int, expires_ms: int | None,
               account_id: int | None, name: str, fingerprints: Fingerprints) -> NewToken:
    token_id = secrets.token_hex(8)
    token = f"{PREFIX}_{token_id}_{secrets.token_urlsafe(32)}"
    row = ApiToken(id=token_id, role=role, token_hash=_hash(token), name=name,
                   label=label[:100], created_ms=now, expires_ms=expires_ms,
                   revoked_ms=None, account_id=account_id)
    row.mac = token_mac(fingerprints, token_fields(row))
    session.add(row)
    session.flush()
    return NewToken(token, row)


def token_id_of(token: str) -> str:
    """The id of a token `create_token` made (the hex after `tt_`)."""
    return token.split("_", 2)[1]


def revoke_token(session: Session, token_id: str, *,
                 fingerprints: Fingerprints) -> ApiToken | None:
    """Revoke a token by its id (the part after `tt_`); its row, or None if there is no
    such token. Revoking a revoked token changes nothing."""
    row = session.get(ApiToken, token_id, with_for_update=True)
    if row is None:
        return None
    if row.revoked_ms is None:
        row.revoked_ms = int(time.time() * 1000)
        row.mac = token_mac(fingerprints, token_fields(row))
        session.flush()
    return row


def revoke_account_tokens(session: Session, account_id: int, now_ms: int, *,
                          fingerprints: Fingerprints) -> int:
    """Revoke every token of a rider account still open; how many were revoked."""
    rows = list(session.scalars(select(ApiToken).where(
        ApiToken.account_id == account_id, ApiToken.revoked_ms.is_(None))
        .order_by(ApiToken.id).with_for_update()))
    for row in rows:
        row.revoked_ms = now_ms
        row.mac = token_mac(fingerprints, token_fields(row))
    session.flush()
    return len(rows)


def authenticate(session: Session, token: str, fingerprints: Fingerprints
                 ) -> Principal | None:
    """The principal a presented token stands for, or None if unknown, expired, revoked
    or not as it was written (its fingerprint does not match under `fingerprints`)."""
    if not well_formed(token):
        return None
    row = session.execute(select(ApiToken).where(ApiToken.token_hash == _hash(token))).scalar()
    if row is None or row.revoked_ms is not None:
        return None
    if row.expires_ms is not None and row.expires_ms <= int(time.time() * 1000):
        return None
    # A row inserted or lifted (role, expiry) behind the application's back opens nothing.
    if row.mac is None or not hmac.compare_digest(
            row.mac, token_mac(fingerprints, token_fields(row))):
        return None
    return Principal(row.id, row.role, row.account_id, row.name)


def principal_for(sessions: Sessions, token: str, fingerprints: Fingerprints
                  ) -> Principal | None:
    """`authenticate` in a short session of its own, for a caller that holds none."""
    with sessions() as session:
        return authenticate(session, token, fingerprints)
