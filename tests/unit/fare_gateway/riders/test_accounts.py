"""The checks of what a rider types: e-mails, passwords, check codes, cards."""

from __future__ import annotations

import re

import pytest

from fare_gateway.riders.accounts import (
    EMAIL_PATTERN,
    MAX_EMAIL,
    BadInput,
    parse_code,
    parse_email,
    parse_password,
    rider_card,
)


@pytest.mark.parametrize("email", [
    "siti@contoh.id", "Siti.Rahayu+bus@Mail.Contoh.co.id", "a@b.co", "o'neil@x-y.com",
    f"{'a' * 64}@{'b' * 63}.{'c' * 63}.{'d' * 57}.id",
])
def test_an_email_is_taken_lower_cased(email: str) -> None:
    assert parse_email(email) == email.lower()
    assert len(email) <= MAX_EMAIL
    # The API description's pattern is the check itself: what one admits the other does.
    assert re.fullmatch(EMAIL_PATTERN, email)


@pytest.mark.parametrize("email", [
    "siti", "siti@", "@contoh.id", "siti@contoh", "siti @contoh.id", "siti@contoh.id ",
    "siti@@contoh.id", "siti@-contoh.id", "siti@contoh-.id", "sïti@contoh.id",
    "siti@contoh.id\n", f"{'a' * 65}@contoh.id", f"a@{'b' * 250}.id", "", None, 42,
    ["siti@contoh.id"],
])
def test_a_malformed_email_is_refused(email: object) -> None:
    with pytest.raises(BadInput) as caught:
        parse_email(email)
    assert caught.value.code == "bad_email"


def test_passwords_codes_and_cards_are_refused_with_their_reason() -> None:
    assert parse_password("sepuluh-10") == "sepuluh-10"
    assert parse_code("01234567") == "01234567"
    assert rider_card("04AA000001") == "04AA000001"
    for parse, value, code in ((parse_password, "pendek", "bad_password"),
                               (parse_password, None, "bad_password"),
                               (parse_code, "1234", "bad_check_code"),
                               (parse_code, 12345678, "bad_check_code"),
                               (rider_card, "04aa000001", "bad_card"),
                               (rider_card, None, "bad_card")):
        with pytest.raises(BadInput) as caught:
            parse(value)  # type: ignore[operator]
        assert caught.value.code == code, (value, caught.value.code)
