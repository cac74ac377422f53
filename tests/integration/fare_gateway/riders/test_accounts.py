"""Rider accounts from outside (contract section 7), on one gateway over PostgreSQL:
sign-up and its limit, login and its limit (also against parallel guesses), answers
kept out of caches, rider tokens that open the rider endpoints alone and expire, check
codes (issued, printed, re-issued) and linking cards by them with their limit, other
accounts' cards, and deleting an account."""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select, update

from fare_gateway.adapters.models import ApiToken, CheckCode, Dispute, RiderAccount, RiderCard
from fare_gateway.riders.limits import SIGN_UPS, RiderLimits
from fare_gateway.riders.times import parse_instant
from ledger.adapters.db import session_factory
from ledger.adapters.models import Entry
from testbed.broker import Broker
from testbed.postgres import create_pg_database, drop_pg_database
from tests.conftest import System
from tests.support.riders import (
    PASSWORD,
    call,
    issue,
    link,
    log_in,
    other_code,
    rider,
    rider_system,
    send,
    sign_up,
)
from transit.settings import Settings

FAILURES = 3  # TRANSIT_RIDER_FAILURES of this module's gateway, in a quarter of an hour


@pytest.fixture(scope="module")
def riders(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    url = create_pg_database()
    try:
        with rider_system(url, broker, tmp_path_factory.mktemp("riders"),
                          TRANSIT_RIDER_FAILURES=f"{FAILURES}/900",
                          TRANSIT_AUTH_FAILURES="100000/60") as system:
            yield system
    finally:
        drop_pg_database(url)


@pytest.fixture(scope="module")
def admin(riders: System) -> str:
    return riders.token("admin")


def sign_up_login_and_a_rider_token_that_opens_the_rider_endpoints_alone(
        riders: System, admin: str) -> None:
    email = f"Siti.{uuid.uuid4().hex[:8]}@Contoh.ID"
    answer = send(riders, "POST", "/api/v1/rider/accounts",
                  {"email": email, "password": PASSWORD})
    body = answer.json()
    assert answer.status == 201 and body == {"account_id": body["account_id"],
                                             "email": email.lower()}, body
    # A password went in: the answer stays out of every cache, as a token's does.
    assert answer.headers.get("cache-control") == "no-store", answer.headers
    status, body = call(riders, "POST", "/api/v1/rider/accounts",
                        {"email": email.upper(), "password": PASSWORD + "!"})
    assert (status, body["error"]["code"]) == (409, "email_taken"), body
    for bad in ({"email": "siti-at-contoh.id", "password": PASSWORD},
                {"email": "budi@contoh.id", "password": "123456789"},
                {"email": "budi@contoh.id"}, {"email": None, "password": PASSWORD}):
        status, body = call(riders, "POST", "/api/v1/rider/accounts", bad)
        assert status == 422 and body["error"]["code"] in ("bad_email", "bad_password"), (
            bad, body)

    # A wrong password and an e-mail nobody uses: one answer.
    wrong = call(riders, "POST", "/api/v1/rider/login",
                 {"email": email, "password": "not-the-password"}, source="127.0.0.2")
    unknown = call(riders, "POST", "/api/v1/rider/login",
                   {"email": "nobody@contoh.id", "password": PASSWORD}, source="127.0.0.2")
    assert wrong == unknown == (401, {"error": {
        "code": "wrong_login", "message": "the e-mail or the password is wrong"}}), (
        wrong, unknown)

    before = int(time.time() * 1000)
    answer = send(riders, "POST", "/api/v1/rider/login",
                  {"email": email.upper(), "password": PASSWORD})
    session = answer.json()
    assert answer.status == 200 and set(session) == {"token", "expires_at"}, session
    assert answer.headers.get("cache-control") == "no-store", answer.headers
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", session["expires_at"])
    expires = parse_instant(session["expires_at"])
    assert expires is not None and 0 <= expires - before - 24 * 3_600_000 < 60_000, session
    token = session["token"]
    assert call(riders, "GET", "/api/v1/rider/cards", token=token) == (200, {"cards": []})
    # Staff endpoints refuse a rider token, and the rider endpoints a staff token.
    for path in ("/api/v1/cards/04A1B2C3D4E5F6", "/api/v1/vehicles",
                 "/api/v1/settlements/2026-01-01"):
        status, body = call(riders, "GET", path, token=token)
        assert (status, body["error"]["code"]) == (403, "forbidden"), (path, body)
    status, body = call(riders, "GET", "/api/v1/rider/cards", token=admin)
    assert status == 403, body

    # A token past its expiry opens nothing (its expiry moved into the past, as the
    # hours would); logging out revokes the token presented, and only that one.
    expiring = log_in(riders, email)
    engine = riders.engine()
    try:
        with session_factory(engine).begin() as s:
            s.execute(update(ApiToken).where(ApiToken.id == expiring.split("_")[1])
                      .values(expires_ms=int(time.time() * 1000) - 1))
    finally:
        engine.dispose()
    assert call(riders, "GET", "/api/v1/rider/cards", token=expiring)[0] == 401
    status, body = call(riders, "POST", "/api/v1/rider/logout", token=token)
    assert status == 200 and parse_instant(body["revoked_at"]), body
    status, body = call(riders, "GET", "/api/v1/rider/cards", token=token)
    assert (status, body["error"]["code"]) == (401, "unauthorized"), body
    assert call(riders, "GET", "/api/v1/rider/cards", token=log_in(riders, email))[0] == 200


def wrong_logins_are_limited_per_email_and_per_address_in_redis(riders: System) -> None:
    email, _ = rider(riders)
    for n in range(FAILURES):  # one e-mail, each time from another address
        status, _ = call(riders, "POST", "/api/v1/rider/login",
                         {"email": email, "password": "not-the-password"},
                         source=f"127.0.1.{n + 1}")
        assert status == 401
    # Refused from anywhere now, even with the right password, before it is verified.
    status, body = call(riders, "POST", "/api/v1/rider/login",
                        {"email": email, "password": PASSWORD}, source="127.0.1.99")
    assert (status, body["error"]["code"]) == (429, "too_many_failures"), body
    # Counted where every gateway of the system reads: in Redis, not in the gateway.
    shared = RiderLimits.shared(Settings.from_env(riders.env))
    assert shared.login_refused(email, "127.0.1.98")
    assert not shared.login_refused(f"x{email}", "127.0.1.98")

    # One address trying many e-mails is stopped too; another address is not.
    other, _ = rider(riders)
    for n in range(FAILURES):
        assert call(riders, "POST", "/api/v1/rider/login",
                    {"email": f"guess{n}@contoh.id", "password": PASSWORD},
                    source="127.0.2.1")[0] == 401
    status, body = call(riders, "POST", "/api/v1/rider/login",
                        {"email": other, "password": PASSWORD}, source="127.0.2.1")
    assert status == 429, body
    assert log_in(riders, other, source="127.0.2.2")


def parallel_guesses_get_no_more_than_the_limit_and_sign_ups_are_limited(
        riders: System, admin: str) -> None:
    email, _ = rider(riders)
    card = f"04F0{uuid.uuid4().hex[:8].upper()}"
    code = issue(riders, admin, card)
    _, guesser = rider(riders)
    # Twelve wrong logins at once, one e-mail from one address: the count is the gate,
    # taken before any hash is verified, so the burst gets the limit and no more.
    with ThreadPoolExecutor(12) as pool:
        logins = Counter(pool.map(lambda _: call(
            riders, "POST", "/api/v1/rider/login",
            {"email": email, "password": "not-the-password"}, source="127.0.8.1")[0],
            range(12)))
        codes = Counter(pool.map(lambda n: link(riders, guesser, card, other_code(code),
                                                f"127.0.8.{10 + n}")[0], range(12)))
    assert logins[401] <= FAILURES and logins[429] >= 12 - FAILURES, logins
    assert set(logins) <= {401, 429}, logins
    assert codes[403] <= FAILURES and set(codes) <= {403, 429}, codes
    # A right password after the burst is refused too, for the window.
    assert call(riders, "POST", "/api/v1/rider/login",
                {"email": email, "password": PASSWORD}, source="127.0.8.2")[0] == 429

    # Sign-ups from one address: SIGN_UPS in the window, each a 409 here (the e-mail
    # has an account), then 429 whatever the e-mail.
    statuses = [call(riders, "POST", "/api/v1/rider/accounts",
                     {"email": email, "password": PASSWORD}, source="127.0.9.1")[0]
                for _ in range(SIGN_UPS)]
    assert statuses == [409] * SIGN_UPS, statuses
    status, body = call(riders, "POST", "/api/v1/rider/accounts",
                        {"email": f"n{uuid.uuid4().hex[:8]}@contoh.id",
                         "password": PASSWORD}, source="127.0.9.1")
    assert (status, body["error"]["code"]) == (429, "too_many_sign_ups"), body
    assert sign_up(riders, f"n{uuid.uuid4().hex[:8]}@contoh.id")  # another address


def check_codes_link_cards_once_and_wrong_ones_are_limited(
        riders: System, admin: str) -> None:
    suffix = uuid.uuid4().hex[:8].upper()
    card, fresh, printed, bare = (f"04A{n}{suffix}" for n in range(4))
    code = issue(riders, admin, card, 25_000)
    fresh_code = issue(riders, admin, fresh)
    # The command prints the code once, on a line of its own.
    issued = riders.transit("cards", "issue", printed).stdout
    printed_code = re.search(r"^check code: ([0-9]{8})$", issued, re.MULTILINE)
    assert printed_code, issued
    _, token = rider(riders)

    wrong = link(riders, token, card, other_code(code), "127.0.3.1")
    unknown = link(riders, token, f"04FF{suffix}", code, "127.0.3.1")
    assert wrong == unknown == (403, {"error": {
        "code": "wrong_check_code", "message": "the card or its check code is wrong"}})
    assert link(riders, token, card, "12ab")[0] == 422  # malformed: says nothing of cards
    status, body = link(riders, token, card, code)
    assert status == 201 and body == {"card": card, "category": "regular",
                                      "status": "active", "balance": 25_000,
                                      "currency": "IDR", "replaced_by": None}, body
    assert link(riders, token, card, code) == (200, body)  # linked already: the same card
    assert call(riders, "GET", "/api/v1/rider/cards", token=token) == (200, {"cards": [body]})
    assert link(riders, token, printed, printed_code.group(1))[0] == 201

    # Another account: the card is not its to take, nor to report or replace.
    _, stranger = rider(riders)
    assert link(riders, stranger, card, other_code(code), "127.0.3.2")[0] == 403
    status, body = link(riders, stranger, card, code)
    assert (status, body["error"]["code"]) == (409, "card_linked"), body
    for path, body in ((f"/api/v1/rider/cards/{card}/lost", {}),
                       (f"/api/v1/rider/cards/{card}/replace",
                        {"new_card": fresh, "check_code": fresh_code})):
        status, answer = call(riders, "POST", path, body, stranger)
        assert (status, answer["error"]["code"]) == (404, "not_found"), (path, answer)
    assert call(riders, "GET", f"/api/v1/cards/{card}", token=admin)[1]["status"] == "active"

    # An admin's new code voids the old one; unknown cards have none to give.
    status, body = call(riders, "POST", f"/api/v1/cards/{fresh}/check-code", token=admin)
    assert status == 201 and set(body) == {"card", "check_code"} and body["card"] == fresh
    assert link(riders, stranger, fresh, fresh_code, "127.0.3.3")[0] == 403
    assert link(riders, stranger, fresh, body["check_code"])[0] == 201
    status, body = call(riders, "POST", f"/api/v1/cards/04FE{suffix}/check-code", token=admin)
    assert (status, body["error"]["code"]) == (404, "not_found"), body
    # A card from before check codes has none until an admin gives it one.
    _, owner = rider(riders)
    issue(riders, admin, bare)
    engine = riders.engine()
    try:
        with session_factory(engine).begin() as s:
            s.delete(s.get(CheckCode, bare))
    finally:
        engine.dispose()
    assert link(riders, owner, bare, "00000000", "127.0.3.4") == wrong
    new_code = riders.transit("cards", "check-code", bare).stdout.strip()
    assert re.fullmatch(r"check code: [0-9]{8}", new_code), new_code
    assert link(riders, owner, bare, new_code.split()[-1])[0] == 201

    # Wrong codes for one card, from any account and address: refused, right code too.
    target = f"04B0{suffix}"
    target_code = issue(riders, admin, target)
    for n in range(FAILURES):
        _, guesser = rider(riders)
        assert link(riders, guesser, target, other_code(target_code),
                    f"127.0.4.{n + 1}")[0] == 403
    status, body = link(riders, owner, target, target_code, "127.0.4.99")
    assert (status, body["error"]["code"]) == (429, "too_many_failures"), body
    # Wrong codes from one account, whichever cards they name.
    _, guesser = rider(riders)
    for n in range(FAILURES):
        assert link(riders, guesser, f"04C{n}{suffix}", "00000000", f"127.0.5.{n + 1}"
                    )[0] == 403
    assert link(riders, guesser, fresh, "00000000", "127.0.5.99")[0] == 429


def deleting_an_account_erases_it_and_frees_its_email_and_cards(
        riders: System, admin: str) -> None:
    email, token = rider(riders)
    second = log_in(riders, email)
    card = f"04D0{uuid.uuid4().hex[:8].upper()}"
    code = issue(riders, admin, card, 10_000)
    assert link(riders, token, card, code)[0] == 201
    engine = riders.engine()
    sessions = session_factory(engine)
    try:
        with sessions.begin() as s:
            account_id = s.scalar(select(RiderAccount.id).where(RiderAccount.email == email))
            s.add(Dispute(account_id=account_id, card=card, category="other",
                          message="kartu saya", created_ms=int(time.time() * 1000)))
        with sessions() as s:
            entries = s.scalars(select(Entry.id).where(Entry.card == card)).all()
        status, body = call(riders, "DELETE", "/api/v1/rider/account", token=token)
        assert status == 200 and body["account_id"] == account_id, body
        for presented in (token, second):  # every token of the account, not just this one
            assert call(riders, "GET", "/api/v1/rider/cards", token=presented)[0] == 401
        with sessions() as s:
            row = s.get(RiderAccount, account_id)
            assert row is not None and (row.email, row.password_hash) == (None, None)
            assert row.deleted_ms == parse_instant(body["deleted_at"])
            assert s.scalar(select(RiderCard.card).where(RiderCard.card == card)) is None
            assert s.scalars(select(ApiToken.revoked_ms).where(
                ApiToken.account_id == account_id)).all() == [row.deleted_ms] * 2
            assert s.scalar(select(Dispute.card).where(Dispute.account_id == account_id)
                            ) == card
            assert s.scalars(select(Entry.id).where(Entry.card == card)).all() == entries
    finally:
        engine.dispose()
    assert call(riders, "POST", "/api/v1/rider/login",
                {"email": email, "password": PASSWORD}, source="127.0.6.1")[0] == 401
    again = sign_up(riders, email)
    assert again != account_id
    assert link(riders, log_in(riders, email), card, code)[0] == 201


def test_rider_accounts_from_outside(riders: System, admin: str) -> None:
    """One test, so that the module's gateway is set up once whatever pytest-xdist does
    with its tests; the parts run in the order they are written."""
    sign_up_login_and_a_rider_token_that_opens_the_rider_endpoints_alone(riders, admin)
    wrong_logins_are_limited_per_email_and_per_address_in_redis(riders)
    parallel_guesses_get_no_more_than_the_limit_and_sign_ups_are_limited(riders, admin)
    check_codes_link_cards_once_and_wrong_ones_are_limited(riders, admin)
    deleting_an_account_erases_it_and_frees_its_email_and_cards(riders, admin)
