"""Riders' secrets: argon2id at the stated parameters, verification that never raises,
bounded passwords, check codes, and an unknown e-mail costing a wrong password's time."""

from __future__ import annotations

import statistics
import time

from argon2 import PasswordHasher, Type

from fare_gateway.riders.passwords import (
    MAX_PASSWORD,
    MIN_PASSWORD,
    hash_secret,
    needs_rehash,
    new_check_code,
    password_problem,
    verify_secret,
    well_formed_code,
)

PASSWORD = "kopi-susu-panas"


def test_a_hash_is_argon2id_at_owasp_minimum_and_verifies_only_its_secret() -> None:
    stored = hash_secret(PASSWORD)
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$"), stored
    assert hash_secret(PASSWORD) != stored  # salted
    assert verify_secret(stored, PASSWORD)
    assert not verify_secret(stored, PASSWORD.upper())
    assert not verify_secret(None, PASSWORD)  # no account: the dummy, and no
    assert not verify_secret("not a hash", PASSWORD)
    # Too long, or not encodable: refused after the same work, never raised.
    assert not verify_secret(stored, "x" * (MAX_PASSWORD + 1))
    assert not verify_secret(stored, "abc\ud800defghij")
    assert not needs_rehash(stored)
    weaker = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1, type=Type.ID)
    assert needs_rehash(weaker.hash(PASSWORD)) and needs_rehash("garbage")


def test_passwords_are_bounded_text() -> None:
    assert password_problem("x" * MIN_PASSWORD) is None
    assert password_problem("x" * MAX_PASSWORD) is None
    for bad in ("x" * (MIN_PASSWORD - 1), "x" * (MAX_PASSWORD + 1), None, 1234567890,
                "abcdefghij\udfff"):
        assert password_problem(bad) is not None, bad


def test_check_codes_are_eight_random_digits() -> None:
    codes = [new_check_code() for _ in range(200)]
    assert all(len(c) == 8 and c.isdigit() and well_formed_code(c) for c in codes)
    assert len(set(codes)) > 190  # 10**8 values: repeats among 200 are near impossible
    for bad in ("1234567", "123456789", "1234567a", "１２３４５６７８", 12345678, None):
        assert not well_formed_code(bad), bad


def test_an_unknown_account_costs_what_a_wrong_password_costs() -> None:
    stored = hash_secret(PASSWORD)
    verify_secret(None, PASSWORD)  # the dummy hash is made on first use

    def median_s(target: str | None) -> float:
        times = []
        for _ in range(5):
            started = time.perf_counter()
            verify_secret(target, "wrong-password")
            times.append(time.perf_counter() - started)
        return statistics.median(times)

    wrong, unknown = median_s(stored), median_s(None)
    # A lookup that skipped the hash would take microseconds, not milliseconds.
    assert wrong > 0.005 and unknown > 0.005, (wrong, unknown)
    assert 1 / 3 < unknown / wrong < 3, (wrong, unknown)
