"""What riders get wrong, counted by what each request names, the count taken as the gate
before a secret is checked (the sharing through Redis is shown from outside, in
tests/integration/fare_gateway/riders/test_accounts.py)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from limits.storage import RedisStorage

from fare_gateway.riders.limits import SIGN_UPS, RiderLimits, email_digest
from transit.settings import FailureLimit

LIMIT = FailureLimit(3, 60)
EMAIL = "siti@contoh.id"


def test_logins_are_counted_per_email_and_per_address() -> None:
    limits = RiderLimits(LIMIT)
    for n in range(3):  # one e-mail, from three addresses
        assert not limits.login_refused(EMAIL, f"10.0.0.{n}")
        limits.login_failed(EMAIL, f"10.0.0.{n}")
    assert limits.login_refused(EMAIL, "10.9.9.9")  # from anywhere
    assert not limits.login_begin(EMAIL, "10.9.9.9")
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


def test_attempts_under_way_count_so_a_burst_gets_the_limit_and_right_ones_cost_nothing(
        ) -> None:
    limits = RiderLimits(LIMIT)
    # Every attempt begins before any ends (each would then verify a hash).
    with ThreadPoolExecutor(12) as pool:
        began = list(pool.map(lambda _: limits.login_begin(EMAIL, "10.4.0.1"), range(12)))
    assert began.count(True) == 3, began
    for _ in range(3):
        limits.login_end(EMAIL, "10.4.0.1", failed=True)
    assert limits.login_refused(EMAIL, "10.4.0.2")
    # A right secret ends its attempt uncounted: one address logs in as often as it likes.
    for _ in range(10):
        assert limits.code_begin("04EE000001", 5, "10.5.0.1")
        limits.code_end("04EE000001", 5, "10.5.0.1", failed=False)
    # Refused by one subject, the others it entered are left again.
    limits.login_failed("budi@contoh.id", "10.6.0.1")
    for n in range(3):
        limits.login_failed(f"x{n}@contoh.id", "10.6.0.9")
    assert not limits.login_begin("budi@contoh.id", "10.6.0.9")
    assert limits.login_begin("budi@contoh.id", "10.6.0.2")
    assert limits.login_begin("budi@contoh.id", "10.6.0.3")
    assert not limits.login_begin("budi@contoh.id", "10.6.0.4")  # 1 failed + 2 under way


def test_sign_ups_are_limited_per_address() -> None:
    limits = RiderLimits(LIMIT)
    barrier = threading.Barrier(SIGN_UPS + 2)

    def one(_: int) -> bool:
        barrier.wait()
        return limits.sign_up_allowed("10.7.0.1")

    with ThreadPoolExecutor(SIGN_UPS + 2) as pool:
        allowed = list(pool.map(one, range(SIGN_UPS + 2)))
    assert allowed.count(True) == SIGN_UPS, allowed
    assert limits.sign_up_allowed("10.7.0.2")


def test_counted_in_memory_while_redis_is_away() -> None:
    away = RedisStorage("redis://127.0.0.1:1/0", wrap_exceptions=True,
                        socket_connect_timeout=0.5)
    limits = RiderLimits(LIMIT, away)
    for _ in range(3):
        assert limits.login_begin(EMAIL, "10.0.0.1")
        limits.login_end(EMAIL, "10.0.0.1", failed=True)
    assert limits.login_refused(EMAIL, "10.0.0.2")
    assert not limits.login_begin(EMAIL, "10.0.0.2")


def test_redis_holds_a_keyed_digest_of_the_email_not_the_email() -> None:
    digest = email_digest(EMAIL)
    assert len(digest) == 32 and "siti" not in digest
    assert digest == email_digest(EMAIL) != email_digest("budi@contoh.id")
    keyed = email_digest(EMAIL, b"k" * 32)
    assert len(keyed) == 32 and keyed not in (digest, email_digest(EMAIL, b"j" * 32))
    assert RiderLimits(LIMIT, key=b"k" * 32).email_digest(EMAIL) == keyed
