"""Wrong passwords and wrong check codes, limited where every gateway counts them.

The counting is the staff sign-ins' (`fare_gateway.http.auth.AuthFailures`): a moving
window in Redis shared by every gateway of the system, each key expiring with its
window, and this gateway's memory while Redis is away. Here it counts what a rider can
get wrong, under `TRANSIT_RIDER_FAILURES` (5 in 900 s): a login per e-mail and per
address, a check code per card, per account and per address. Once one of them reaches
the limit, requests naming it are refused (429) for a window before any hash is
verified, so a guesser gets five guesses a quarter hour at one account or card from
anywhere, and five from one address at all of them.

E-mails are counted by a digest, so that Redis holds no rider's address.
"""

from __future__ import annotations

import hashlib

from limits.storage import RedisStorage

from fare_gateway.http.auth import REDIS_TIMEOUT_S, AuthFailures
from transit.settings import FailureLimit, Settings


class RiderLimits:
    """The failures riders' endpoints count, by what each names."""

    def __init__(self, limit: FailureLimit, storage: RedisStorage | None = None) -> None:
        # Refused from the limit-th failure for one window: as long as it takes the
        # oldest of them to leave the window.
        self._failures = AuthFailures(limit.limit, limit.window_s, limit.window_s, storage)

    @classmethod
    def shared(cls, settings: Settings) -> RiderLimits:
        """Counted in `TRANSIT_REDIS_URL` under the topic prefix, like the staff sign-ins."""
        storage = RedisStorage(settings.redis_url, wrap_exceptions=True,
                               key_prefix=f"transit:{settings.topic_prefix}:riders",
                               socket_timeout=REDIS_TIMEOUT_S,
                               socket_connect_timeout=REDIS_TIMEOUT_S)
        return cls(settings.rider_failures, storage)

    def login_refused(self, email: str, address: str) -> bool:
        """Whether logins for this e-mail, or from this address, are refused now."""
        return self._refused(_login_subjects(email, address))

    def login_failed(self, email: str, address: str) -> None:
        """Count a wrong password (or an unknown e-mail) for both."""
        self._failed(_login_subjects(email, address))

    def code_refused(self, card: str, account_id: int, address: str) -> bool:
        """Whether check codes for this card, this account or from this address are
        refused now."""
        return self._refused(_code_subjects(card, account_id, address))

    def code_failed(self, card: str, account_id: int, address: str) -> None:
        """Count a wrong check code (or an unknown card) for all three."""
        self._failed(_code_subjects(card, account_id, address))

    def _refused(self, subjects: tuple[str, ...]) -> bool:
        return any(self._failures.blocked(subject) for subject in subjects)

    def _failed(self, subjects: tuple[str, ...]) -> None:
        for subject in subjects:
            self._failures.failed(subject)


def email_digest(email: str) -> str:
    """What stands for an e-mail in the counts: 16 bytes of its SHA-256, in hex."""
    return hashlib.sha256(email.encode()).hexdigest()[:32]


def _login_subjects(email: str, address: str) -> tuple[str, ...]:
    return f"login:email:{email_digest(email)}", f"login:address:{address}"


def _code_subjects(card: str, account_id: int, address: str) -> tuple[str, ...]:
    return f"code:card:{card}", f"code:account:{account_id}", f"code:address:{address}"
