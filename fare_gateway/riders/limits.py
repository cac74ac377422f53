"""Wrong passwords and wrong check codes, limited where every gateway counts them.

The counting is the staff sign-ins' (`fare_gateway.http.auth.AuthFailures`): a moving
window in Redis shared by every gateway of the system, each key expiring with its
window, and this gateway's memory while Redis is away. Here it counts what a rider can
get wrong, under `TRANSIT_RIDER_FAILURES` (5 in 900 s): a login per e-mail and per
address, a check code per card, per account and per address.

The count is the gate, and it is taken before any hash is verified: a request first
enters every subject it names, each entry one atomic increment of that subject's
attempts under way, and it is refused (429) when the failures of the window plus the
attempts under way, its own included, pass the limit. When its hash has been verified
it leaves them: a wrong secret is counted a failure first, then its attempt ends, so
that it is counted in one of the two at every moment. A burst of parallel guesses thus
gets no more than the limit between them, like the same guesses one after another, and
a right secret costs nothing: logging in often from one address (one office, one NAT)
is not a failure. Once a subject reaches the limit, requests naming it are refused for
a window, so a guesser gets five guesses a quarter hour at one account or card from
anywhere, and five from one address at all of them.

Sign-ups are counted per address as they arrive, `SIGN_UPS` in the same window: each
costs a slow hash, and a 409 tells whether an e-mail has an account.

E-mails are counted by a keyed digest (HMAC-SHA-256 with `TRANSIT_SECRET_KEY` when it
is set), so that Redis holds no rider's address and a list of e-mails does not reverse
the digests without the key.
"""

from __future__ import annotations

import hashlib
import hmac

from limits import RateLimitItemPerSecond
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from fare_gateway.http.auth import REDIS_TIMEOUT_S, AuthFailures
from fare_gateway.riders.accounts import SIGN_UPS
from transit.settings import FailureLimit, Settings

__all__ = ["SIGN_UPS", "AttemptGate", "RiderLimits", "email_digest"]
# How long a count of attempts under way outlives its last change: an attempt lasts a
# hash's time (queued, seconds at worst); one a crashed gateway never ended is forgotten
# after this.
PENDING_S = 60


class AttemptGate(AuthFailures):
    """Failures, and the attempts under way, counted together before a secret is checked."""

    def enter(self, who: str) -> bool:
        """Begin an attempt for `who`; False (and nothing counted) when it is refused."""
        def attempt(limiter: MovingWindowRateLimiter) -> bool:
            if not limiter.test(self.block, who):
                return False
            key = _pending(who)
            under_way = limiter.storage.incr(key, PENDING_S, amount=1)
            failed = self.failures.amount - limiter.get_window_stats(
                self.failures, who).remaining
            if under_way + failed <= self.failures.amount:
                return True
            _decrement(limiter, key)
            return False

        return self._counted(attempt)

    def leave(self, who: str, failed: bool) -> None:
        """End an attempt that `enter` let through; counted a failure first if `failed`."""
        if failed:
            self.failed(who)
        self._counted(lambda limiter: _decrement(limiter, _pending(who)))

    def spend(self, item: RateLimitItemPerSecond, who: str) -> bool:
        """Count one of `item` for `who`, atomically; False when over its limit."""
        return self._counted(lambda limiter: limiter.hit(item, who))


class RiderLimits:
    """The failures riders' endpoints count, by what each names."""

    def __init__(self, limit: FailureLimit, storage: RedisStorage | None = None,
                 key: bytes | None = None) -> None:
        # Refused from the limit-th failure for one window: as long as it takes the
        # oldest of them to leave the window.
        self._gate = AttemptGate(limit.limit, limit.window_s, limit.window_s, storage)
        self._sign_ups = RateLimitItemPerSecond(SIGN_UPS, limit.window_s,
                                                namespace="signups")
        self._key = key

    @classmethod
    def shared(cls, settings: Settings) -> RiderLimits:
        """Counted in `TRANSIT_REDIS_URL` under the topic prefix, like the staff sign-ins."""
        storage = RedisStorage(settings.redis_url, wrap_exceptions=True,
                               key_prefix=f"transit:{settings.topic_prefix}:riders",
                               socket_timeout=REDIS_TIMEOUT_S,
                               socket_connect_timeout=REDIS_TIMEOUT_S)
        return cls(settings.rider_failures, storage, settings.secret_key)

    def sign_up_allowed(self, address: str) -> bool:
        """Count a sign-up from this address; False once past `SIGN_UPS` in the window."""
        return self._gate.spend(self._sign_ups, f"signup:address:{address}")

    def login_refused(self, email: str, address: str) -> bool:
        """Whether logins for this e-mail, or from this address, are refused now."""
        return self._refused(self._login_subjects(email, address))

    def login_begin(self, email: str, address: str) -> bool:
        """Begin a login's attempt; False when this e-mail or this address is refused."""
        return self._enter(self._login_subjects(email, address))

    def login_end(self, email: str, address: str, failed: bool) -> None:
        """End a login's attempt, counting a wrong password (or unknown e-mail) if `failed`."""
        self._leave(self._login_subjects(email, address), failed)

    def login_failed(self, email: str, address: str) -> None:
        """Count a wrong password (or an unknown e-mail) for both."""
        self._failed(self._login_subjects(email, address))

    def code_refused(self, card: str, account_id: int, address: str) -> bool:
        """Whether check codes for this card, this account or from this address are
        refused now."""
        return self._refused(_code_subjects(card, account_id, address))

    def code_begin(self, card: str, account_id: int, address: str) -> bool:
        """Begin a check code's attempt; False when one of the three is refused."""
        return self._enter(_code_subjects(card, account_id, address))

    def code_end(self, card: str, account_id: int, address: str, failed: bool) -> None:
        """End a check code's attempt, counting a wrong code (or unknown card) if `failed`."""
        self._leave(_code_subjects(card, account_id, address), failed)

    def code_failed(self, card: str, account_id: int, address: str) -> None:
        """Count a wrong check code (or an unknown card) for all three."""
        self._failed(_code_subjects(card, account_id, address))

    def email_digest(self, email: str) -> str:
        """What stands for an e-mail in the counts (`email_digest`, keyed by this key)."""
        return email_digest(email, self._key)

    def _login_subjects(self, email: str, address: str) -> tuple[str, ...]:
        return f"login:email:{self.email_digest(email)}", f"login:address:{address}"

    def _enter(self, subjects: tuple[str, ...]) -> bool:
        entered: list[str] = []
        for subject in subjects:
            if not self._gate.enter(subject):
                for done in entered:  # refused: the others count nothing either
                    self._gate.leave(done, failed=False)
                return False
            entered.append(subject)
        return True

    def _leave(self, subjects: tuple[str, ...], failed: bool) -> None:
        for subject in subjects:
            self._gate.leave(subject, failed)

    def _refused(self, subjects: tuple[str, ...]) -> bool:
        return any(self._gate.blocked(subject) for subject in subjects)

    def _failed(self, subjects: tuple[str, ...]) -> None:
        for subject in subjects:
            self._gate.failed(subject)


def email_digest(email: str, key: bytes | None = None) -> str:
    """What stands for an e-mail in the counts: 16 bytes of its HMAC-SHA-256 under `key`
    (its SHA-256 without one), in hex."""
    if key is None:
        return hashlib.sha256(email.encode()).hexdigest()[:32]
    return hmac.new(key, b"rider-email:" + email.encode(), hashlib.sha256).hexdigest()[:32]


def _pending(who: str) -> str:
    return f"pending/{who}"


def _decrement(limiter: MovingWindowRateLimiter, key: str) -> None:
    # Below zero only when the count expired (or moved between Redis and memory) while
    # attempts were under way: back to zero, never a credit of attempts.
    if limiter.storage.incr(key, PENDING_S, amount=-1) < 0:
        limiter.storage.clear(key)


def _code_subjects(card: str, account_id: int, address: str) -> tuple[str, ...]:
    return f"code:card:{card}", f"code:account:{account_id}", f"code:address:{address}"
