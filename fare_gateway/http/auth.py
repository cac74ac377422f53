"""Who may call what: the one authentication decorator, `require(*roles)`.

A view marked `@require("finance")` answers only to a bearer token of that role (or of
`admin`, who may do everything). No token or a bad one is a 401, the wrong role a 403,
and an address that keeps presenting bad tokens is refused with a 429 for a while.
The decorator finds the token store through the application it runs in, so feature
blueprints (tracking's too, which receives it from the wiring) need nothing else.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

from flask import Flask, current_app, g, request

from fare_gateway.http.errors import ApiError
from fare_gateway.tokens import Principal

EXTENSION = "transit.auth"
ROLES_ATTRIBUTE = "required_roles"  # where a protected view keeps its roles (for the spec)

View = TypeVar("View", bound=Callable[..., Any])


class AuthFailures:
    """Too many failed authentications from one address: refuse it for a while (429)."""

    def __init__(self, limit: int = 20, window_s: float = 60.0, block_s: float = 300.0
                 ) -> None:
        self.limit, self.window_s, self.block_s = limit, window_s, block_s
        self._failures: dict[str, list[float]] = {}
        self._blocked: dict[str, float] = {}
        self._lock = threading.Lock()

    def blocked(self, who: str) -> bool:
        """Whether this address is refused right now."""
        with self._lock:
            until = self._blocked.get(who)
            if until is not None and until > time.monotonic():
                return True
            self._blocked.pop(who, None)
            return False

    def failed(self, who: str) -> None:
        """Count one failed authentication; the limit-th within the window blocks."""
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._failures.get(who, []) if now - t < self.window_s]
            recent.append(now)
            self._failures[who] = recent
            if len(recent) >= self.limit:
                self._blocked[who] = now + self.block_s
                self._failures.pop(who, None)
            if len(self._failures) > 10_000:  # bounded memory under a spray of addresses
                self._failures.clear()


@dataclass(frozen=True)
class Authenticator:
    """Checks the bearer token of the current request against the token store."""

    principal_for: Callable[[str], Principal | None]  # `fare_gateway.tokens.principal_for`
    failures: AuthFailures

    def principal(self, roles: tuple[str, ...]) -> Principal:
        """The caller, if its token is valid and its role is one of `roles` (or admin)."""
        who = request.remote_addr or "?"
        if self.failures.blocked(who):
            raise ApiError(429, "too_many_failures",
                           "too many failed sign-ins from this address; wait")
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthorized", "a bearer token is required")
        principal = self.principal_for(token.strip())
        if principal is None:
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


def required_roles(view: Callable[..., Any]) -> tuple[str, ...] | None:
    """The roles a view was marked with by `require`, or None for a public view."""
    return getattr(view, ROLES_ATTRIBUTE, None)
