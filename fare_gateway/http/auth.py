"""Who may call what: the one authentication decorator, `require(*roles)`.

A view marked `@require("finance")` answers only to a bearer token of that role (or of
`admin`, who may do everything). No token or a bad one is a 401, the wrong role a 403,
and an address that keeps presenting bad tokens is refused with a 429 for a while (a
valid token still passes). The decorator finds the token store through the application
it runs in, so feature blueprints (tracking's too, which receives it from the wiring)
need nothing else.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

from flask import Flask, Request, current_app, g, request
from limits import RateLimitItemPerSecond
from limits.errors import StorageError
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.strategies import MovingWindowRateLimiter

from fare_gateway.http.errors import ApiError
from fare_gateway.riders.actors import rider_actor
from fare_gateway.tokens import RIDER, Principal, well_formed
from ledger.audit import Actor
from transit.settings import Settings

EXTENSION = "transit.auth"
ROLES_ATTRIBUTE = "required_roles"  # where a protected view keeps its roles (for the spec)
# After Redis failed, how long failures are counted in this gateway's memory alone before
# Redis is tried again: one slow call per spell, not one per request, while it is away.
REDIS_RETRY_S = 5.0
REDIS_TIMEOUT_S = 1.0

View = TypeVar("View", bound=Callable[..., Any])
T = TypeVar("T")
log = logging.getLogger(__name__)


class AuthFailures:
    """Too many failed authentications from one address: refuse it for a while (429).

    Failures are counted in a moving window (`limit` in any `window_s`), and the block
    that follows lasts `block_s`; both live in `storage` (Redis, shared by every gateway,
    each key expiring with its window, so the count is bounded without ever being
    reset). While the storage cannot be reached the gateway counts in its own memory,
    under the same limits, and goes back to the storage REDIS_RETRY_S later.
    """

    def __init__(self, limit: int = 20, window_s: int = 60, block_s: int = 300,
                 storage: Storage | None = None) -> None:
        self.failures = RateLimitItemPerSecond(limit, window_s, namespace="failures")
        self.block = RateLimitItemPerSecond(1, block_s, namespace="blocked")
        self._shared = None if storage is None else MovingWindowRateLimiter(storage)
        self._local = MovingWindowRateLimiter(MemoryStorage())
        self._shared_away_until = 0.0

    @classmethod
    def shared(cls, settings: Settings) -> AuthFailures:
        """Counted in `TRANSIT_REDIS_URL`, under the topic prefix (one system's gateways
        share it, another system's do not)."""
        storage = RedisStorage(settings.redis_url, wrap_exceptions=True,
                               key_prefix=f"transit:{settings.topic_prefix}:auth",
                               socket_timeout=REDIS_TIMEOUT_S,
                               socket_connect_timeout=REDIS_TIMEOUT_S)
        limit = settings.auth_failures
        return cls(limit.limit, limit.window_s, storage=storage)

    def blocked(self, who: str) -> bool:
        """Whether this address is refused right now."""
        return self._counted(lambda limiter: not limiter.test(self.block, who))

    def failed(self, who: str) -> None:
        """Count one failed authentication; the limit-th within the window blocks."""
        def count(limiter: MovingWindowRateLimiter) -> None:
            limiter.hit(self.failures, who)
            if not limiter.test(self.failures, who):
                limiter.hit(self.block, who)

        self._counted(count)

    def _counted(self, action: Callable[[MovingWindowRateLimiter], T]) -> T:
        """`action` on the shared counts, or on this gateway's while they are away."""
        if self._shared is not None and time.monotonic() >= self._shared_away_until:
            try:
                return action(self._shared)
            except StorageError as exc:
                self._shared_away_until = time.monotonic() + REDIS_RETRY_S
                log.warning("failed sign-ins are counted in this gateway alone for %g s: "
                            "Redis did not answer (%s)", REDIS_RETRY_S, exc.storage_error)
        return action(self._local)


@dataclass(frozen=True)
class Authenticator:
    """Checks the bearer token of the current request against the token store."""

    principal_for: Callable[[str], Principal | None]  # `fare_gateway.tokens.principal_for`
    failures: AuthFailures

    def principal(self, roles: tuple[str, ...]) -> Principal:
        """The caller, if its token is valid and its role is one of `roles` (or admin).

        A valid token passes from any address, so that staff who share an address with
        a guesser (one office, one NAT) keep working; from an address blocked for its
        failures, only requests without a valid token are refused. A token that has not
        the shape of one is not looked up: it fails, and its address is checked for a
        block, before the database is asked anything.
        """
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        principal = self.principal_for(token) if well_formed(token) else None
        if principal is None:
            who = request.remote_addr or "?"
            if self.failures.blocked(who):
                raise ApiError(429, "too_many_failures",
                               "too many failed sign-ins from this address; wait")
            if not token:
                raise ApiError(401, "unauthorized", "a bearer token is required")
            self.failures.failed(who)
            raise ApiError(401, "unauthorized", "the token is unknown, expired or revoked")
        if not principal.may(*roles):
            raise ApiError(403, "forbidden", f"the {principal.role} role may not do this")
        return principal


def install(app: Flask, authenticator: Authenticator) -> None:
    """Make `require` check tokens against this authenticator in this application."""
    app.extensions[EXTENSION] = authenticator


def require(*roles: str) -> Callable[[View], View]:
    """Let a view answer only to a valid token of one of `roles` (admin may do anything)."""

    def wrap(view: View) -> View:
        @wraps(view)
        def inner(*args: Any, **kwargs: Any) -> Any:
            authenticator: Authenticator = current_app.extensions[EXTENSION]
            g.principal = authenticator.principal(roles)
            return view(*args, **kwargs)

        setattr(inner, ROLES_ATTRIBUTE, roles)
        return inner  # type: ignore[return-value]

    return wrap


def actor_of(principal: Principal, request: Request) -> Actor:
    """Who makes a change through the API, for the audit trail: a staff token (its id,
    its holder's name and role) or a rider's account (its number, never its e-mail,
    which deleting the account erases), and the address the request came from."""
    source = (request.remote_addr or "")[:100]
    if principal.role == RIDER:
        return rider_actor(int(principal.account_id or 0), source)
    return Actor("token", principal.token_id[:64], principal.name[:100], principal.role[:16],
                 source)


def current_actor() -> Actor:
    """The caller of the request being served (a view marked with `require`)."""
    return actor_of(g.principal, request)


def required_roles(view: Callable[..., Any]) -> tuple[str, ...] | None:
    """The roles a view was marked with by `require`, or None for a public view."""
    return getattr(view, ROLES_ATTRIBUTE, None)
