"""What riders get wrong, counted by what each request names (the sharing through Redis
is shown from outside, in tests/integration/fare_gateway/riders/test_accounts.py)."""

from __future__ import annotations

from limits.storage import RedisStorage

from fare_gateway.riders.limits import RiderLimits, email_digest
from transit.settings import FailureLimit

LIMIT = FailureLimit(3, 60)
EMAIL = "siti@contoh.id"


def test_logins_are_counted_per_email_and_per_address() -> None:
    limits = RiderLimits(LIMIT)
    for n in range(3):  # one e-mail, from three addresses
        assert not limits.login_refused(EMAIL, f"10.0.0.{n}")
        limits.login_failed(EMAIL, f"10.0.0.{n}")
    assert limits.login_refused(EMAIL, "10.9.9.9")  # from anywhere
    assert not limits.login_refused("budi@contoh.id", "10.0.0.1")
    for n in range(3):  # three e-mails, from one address
        limits.login_failed(f"rider{n}@contoh.id", "10.1.1.1")
    assert limits.login_refused("budi@contoh.id", "10.1.1.1")
    assert not limits.login_refused("budi@contoh.id", "10.1.1.2")


def test_check_codes_are_counted_per_card_per_account_and_per_address() -> None:
    limits = RiderLimits(LIMIT)
    for n in range(3):
        limits.code_failed("04AA000001", n, f"10.0.0.{n}")
    assert limits.code_refused("04AA000001", 99, "10.9.9.9")
    assert not limits.code_refused("04AA000002", 99, "10.9.9.9")
    for n in range(3):
        limits.code_failed(f"04BB00000{n}", 7, f"10.2.0.{n}")
    assert limits.code_refused("04CC000001", 7, "10.9.9.8")
    for n in range(3):
        limits.code_failed(f"04DD00000{n}", 10 + n, "10.3.3.3")
    assert limits.code_refused("04CC000001", 50, "10.3.3.3")
    assert not limits.code_refused("04CC000001", 50, "10.3.3.4")


def test_counted_in_memory_while_redis_is_away() -> None:
    away = RedisStorage("redis://127.0.0.1:1/0", wrap_exceptions=True,
                        socket_connect_timeout=0.5)
    limits = RiderLimits(LIMIT, away)
    for _ in range(3):
        limits.login_failed(EMAIL, "10.0.0.1")
    assert limits.login_refused(EMAIL, "10.0.0.2")


def test_redis_holds_a_digest_of_the_email_not_the_email() -> None:
    digest = email_digest(EMAIL)
    assert len(digest) == 32 and "siti" not in digest
    assert digest == email_digest(EMAIL) != email_digest("budi@contoh.id")
