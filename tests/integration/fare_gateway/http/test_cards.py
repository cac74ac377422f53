"""Cards over HTTP (contract section 3), from outside: real HTTP against `transit
gateway` running on PostgreSQL and on SQLite: issue, show, block, top up, bad input and
races. Every response is checked for "never a 500", and every 4xx for the
`{"error": {"code", "message"}}` shape."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from tests.conftest import System
from tests.integration.fare_gateway.http.client import (
    CARD_FIELDS,
    Api,
    assert_card,
    balance_of,
    expect,
)

CARD = "04A1B2C3D4E5F6"
OTHER = "04FFEEDDCCBBAA"
UNKNOWN = "0400000000DEAD"  # well-formed, never issued


# -- cards ----------------------------------------------------------------------------


def test_cards_issue_show_block_taps_and_bad_input(system: System) -> None:
    api = Api(system.http)
    admin = system.token("admin")
    finance = system.token("finance")

    # Issue: 201 with the card, as GET shows it.
    issued = expect(api.post("/api/v1/cards", {"card": CARD, "category": "student"}, admin),
                    201, "issue")
    assert_card(issued, CARD, category="student", balance=0)
    shown = expect(api.get(f"/api/v1/cards/{CARD}", finance), 200, "show")
    assert_card(shown, CARD, category="student", balance=0)
    assert {k: shown[k] for k in CARD_FIELDS} == {k: issued[k] for k in CARD_FIELDS}

    # The same card again: 409, whatever the category; the first one is untouched.
    expect(api.post("/api/v1/cards", {"card": CARD, "category": "student"}, admin), 409, "dup")
    expect(api.post("/api/v1/cards", {"card": CARD, "category": "senior"}, admin), 409, "dup")
    assert_card(expect(api.get(f"/api/v1/cards/{CARD}", admin), 200, ""), CARD,
                category="student", balance=0)

    # Every category of the policy can be issued; 4-, 7- and 10-byte UIDs and 32 digits.
    for card, category in (("0A1B2C3D", "regular"), ("04112233445566", "senior"),
                           ("04112233445566778899", "student"), ("F" * 32, "regular")):
        assert_card(expect(api.post("/api/v1/cards", {"card": card, "category": category},
                                    admin), 201, f"issue {card}"), card, category=category)

    # Bad card token or category: 422.
    bad_cards: list[Any] = ["04a1b2c3d4e5f6",   # lower case
                            "04A1B2C",           # 7 digits
                            "0" * 33,            # 33 digits
                            "04A1B2C3D4E5FG",    # not hex
                            " 04A1B2C3D4E5F6",   # padding
                            "04A1B2C3D4E5F6\n",
                            "", None, 4711, ["04A1B2C3D4E5F6"], {"uid": "04A1B2C3"}, True]
    for card in bad_cards:
        expect(api.post("/api/v1/cards", {"card": card, "category": "regular"}, admin), 422,
               f"card {card!r}")
    expect(api.post("/api/v1/cards", {"category": "regular"}, admin), 422, "no card")
    bad_categories: list[Any] = ["vip", "Regular", "", None, 1, ["regular"], {"x": 1}]
    for category in bad_categories:
        expect(api.post("/api/v1/cards", {"card": OTHER, "category": category}, admin), 422,
               f"category {category!r}")
    expect(api.get(f"/api/v1/cards/{OTHER}", admin), 404, "refused card was not created")

    # Malformed JSON or a body that is not an object: 400.
    for raw in (b"{not json", b'{"card": "04A1B2C3D4E5F6"', b"", b"\xff\xfe\x00",
                b"[]", b'"04A1B2C3D4E5F6"', b"42", b"null", b"true",
                b'[{"card": "04FFEEDDCCBBAA"}]'):
        expect(api.request("POST", "/api/v1/cards", raw=raw, token=admin), 400, f"raw {raw!r}")
    expect(api.request("POST", f"/api/v1/cards/{CARD}/topups", raw=b"[1000]", token=admin),
           400, "topup list body")
    expect(api.request("POST", f"/api/v1/cards/{CARD}/topups", raw=b"{", token=admin),
           400, "topup bad json")

    # Unknown card: 404 on every per-card endpoint.
    for method, path, body in (("GET", f"/api/v1/cards/{UNKNOWN}", None),
                               ("GET", f"/api/v1/cards/{UNKNOWN}/taps", None),
                               ("POST", f"/api/v1/cards/{UNKNOWN}/topups",
                                {"amount": 1000, "reference": "r-unknown"}),
                               ("POST", f"/api/v1/cards/{UNKNOWN}/block", {}),
                               ("POST", f"/api/v1/cards/{UNKNOWN}/unblock", {})):
        expect(api.request(method, path, body=body, token=admin), 404, f"{method} {path}")
    expect(api.get(f"/api/v1/cards/{UNKNOWN}", admin), 404, "top-up did not create the card")

    # A malformed card in the path is bad input, never a 500 (400, 404 or 422).
    for card in ("04a1b2c3d4e5f6", "XYZ", "0" * 40, "04A1B2C3%20D4"):
        for method, suffix, body in (("GET", "", None), ("GET", "/taps", None),
                                     ("POST", "/topups", {"amount": 1, "reference": "r"}),
                                     ("POST", "/block", {}), ("POST", "/unblock", {})):
            status, _ = api.request(method, f"/api/v1/cards/{card}{suffix}", body=body,
                                    token=admin)
            assert status in (400, 404, 422), (method, card, suffix, status)

    # Block and unblock: status changes, idempotently; balance and category unchanged.
    for action, state in (("block", "blocked"), ("block", "blocked"),
                          ("unblock", "active"), ("unblock", "active"),
                          ("block", "blocked")):
        got = expect(api.post(f"/api/v1/cards/{CARD}/{action}", {}, admin), 200, action)
        assert_card(got, CARD, category="student", status=state, balance=0)
        assert_card(expect(api.get(f"/api/v1/cards/{CARD}", finance), 200, ""), CARD,
                    category="student", status=state, balance=0)
    # An empty POST body (no JSON at all) works for block/unblock too.
    got = expect(api.request("POST", f"/api/v1/cards/{CARD}/unblock", token=admin), 200,
                 "unblock without a body")
    assert got["status"] == "active"

    # Taps of a card without taps: an empty list.
    taps = expect(api.get(f"/api/v1/cards/{CARD}/taps", finance), 200, "taps")
    assert taps["taps"] == []

    # Paths and methods the API does not have: 404 / 405 with the error object.
    expect(api.get("/api/v1/nothing-here", admin), 404, "unknown path")
    expect(api.request("DELETE", f"/api/v1/cards/{CARD}", token=admin), 405, "DELETE card")
    expect(api.request("PUT", "/api/v1/cards", body={"card": OTHER}, token=admin), 405, "PUT")
    expect(api.get(f"/api/v1/cards/{CARD}/block", admin), 405, "GET block")

    # Deeply nested JSON, well under 64 KiB, is malformed input like any other: 400.
    # (Last in this test, so that a failure here hides none of the checks above.)
    for path in ("/api/v1/cards", f"/api/v1/cards/{CARD}/topups"):
        for raw in (b"[" * 30_000 + b"]" * 30_000,
                    b'{"card": ' * 6_000 + b"1" + b"}" * 6_000):
            expect(api.request("POST", path, raw=raw, token=admin), 400,
                   f"{path} with JSON nested {raw.count(raw[:1])} deep")


# -- top-ups --------------------------------------------------------------------------


def test_topups_validation_idempotency_and_limits(system: System) -> None:
    api = Api(system.http)
    admin = system.token("admin")
    system.issue(CARD)
    url = f"/api/v1/cards/{CARD}/topups"

    got = expect(api.post(url, {"amount": 20_000, "reference": "bank-2025-0001"}, admin),
                 201, "first top-up")
    assert {"card", "balance", "currency"} <= set(got), got
    assert (got["card"], got["balance"], got["currency"]) == (CARD, 20_000, "IDR")
    assert balance_of(api, admin, CARD) == 20_000

    # The same reference again: 200, the same answer, no second credit.
    for _ in range(3):
        again = expect(api.post(url, {"amount": 20_000, "reference": "bank-2025-0001"}, admin),
                       200, "replayed top-up")
        assert (again["card"], again["balance"], again["currency"]) == (CARD, 20_000, "IDR")
        assert balance_of(api, admin, CARD) == 20_000

    # The same reference with another amount: 409, nothing credited.
    for amount in (20_001, 5_000, 1):
        expect(api.post(url, {"amount": amount, "reference": "bank-2025-0001"}, admin), 409,
               f"conflicting amount {amount}")
    assert balance_of(api, admin, CARD) == 20_000

    # A reference is per card? At least: a new reference credits again.
    got = expect(api.post(url, {"amount": 5_000, "reference": "bank-2025-0002"}, admin), 201,
                 "second top-up")
    assert got["balance"] == 25_000

    # Amounts: whole positive numbers of rupiah only (never a float, anywhere).
    bad_amounts: list[Any] = [1000.0, 1000.5, "1000", "", True, False, 0, -1, -20_000,
                              None, [1000], {"value": 1000}, 10**30, 2**63, 2**64 + 1,
                              -(2**63) - 1, 10**400]
    for i, amount in enumerate(bad_amounts):
        expect(api.post(url, {"amount": amount, "reference": f"bad-amount-{i}"}, admin), 422,
               f"amount {amount!r:.40}")
    for i, raw in enumerate((b"1e3", b"1E400", b"NaN", b"Infinity", b"-Infinity", b"1.0e3")):
        body = b'{"amount": ' + raw + b', "reference": "bad-raw-%d"}' % i
        status, _ = api.request("POST", url, raw=body, token=admin)
        assert status in (400, 422), (raw, status)
    expect(api.post(url, {"reference": "no-amount"}, admin), 422, "no amount")
    assert balance_of(api, admin, CARD) == 25_000

    # References: 1-64 characters of A-Z a-z 0-9 . _ : / -.
    for reference in ("", " ", "with space", "x" * 65, "ünïcödé", "semi;colon", "new\nline",
                      None, 12345, ["r"], {"r": 1}, True):
        expect(api.post(url, {"amount": 1000, "reference": reference}, admin), 422,
               f"reference {reference!r:.40}")
    expect(api.post(url, {"amount": 1000}, admin), 422, "no reference")
    assert balance_of(api, admin, CARD) == 25_000
    ok_ref = "A.z_0:9/-" + "x" * 55  # every allowed character class, 64 long
    assert len(ok_ref) == 64
    expect(api.post(url, {"amount": 1000, "reference": ok_ref}, admin), 201, "64-char ref")
    assert balance_of(api, admin, CARD) == 26_000

    # A body over 64 KiB: 400, nothing credited (also when the JSON itself is valid).
    big = {"amount": 1000, "reference": "big-body", "note": "x" * (64 * 1024)}
    expect(api.post(url, big, admin), 400, "64 KiB+ body")
    expect(api.post("/api/v1/cards", {"card": OTHER, "category": "regular",
                                      "pad": "y" * 70_000}, admin), 400, "64 KiB+ issue")
    expect(api.get(f"/api/v1/cards/{OTHER}", admin), 404, "oversized issue created nothing")
    assert balance_of(api, admin, CARD) == 26_000
    # Just under the limit is fine.
    small = {"amount": 1000, "reference": "near-limit", "note": "x" * (60 * 1024)}
    expect(api.post(url, small, admin), 201, "60 KiB body")
    assert balance_of(api, admin, CARD) == 27_000

    # Top-up on a blocked card is not a server error (credit or refuse, but say so).
    expect(api.post(f"/api/v1/cards/{CARD}/block", {}, admin), 200, "block")
    status, _ = api.post(url, {"amount": 1000, "reference": "while-blocked"}, admin)
    assert status in (200, 201, 409, 422), status

    # The CLI and the API share one idempotency space for references.
    system.issue(OTHER)
    system.transit("cards", "topup", OTHER, "3000", "--reference", "shared-ref")
    again = expect(api.post(f"/api/v1/cards/{OTHER}/topups",
                            {"amount": 3000, "reference": "shared-ref"}, admin), 200,
                   "API replay of a CLI top-up")
    assert again["balance"] == 3000
    expect(api.post(f"/api/v1/cards/{OTHER}/topups",
                    {"amount": 4000, "reference": "shared-ref"}, admin), 409, "CLI ref conflict")
    assert balance_of(api, admin, OTHER) == 3000


# -- concurrency ----------------------------------------------------------------------


def _race(n: int, fn: Callable[[int], tuple[int, Any]]) -> list[tuple[int, Any]]:
    """Run fn(0..n-1) in n threads released at the same instant."""
    barrier = threading.Barrier(n)
    results: list[tuple[int, Any] | None] = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(10)
            results[i] = fn(i)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return [r for r in results if r is not None]


def test_concurrent_topups_are_credited_once(system: System) -> None:
    http = system.http  # raw, so that a 500 shows up in the tally rather than stopping
    admin = system.token("admin")
    api = Api(http)
    system.issue(CARD)
    n = 8

    # The same top-up, sent by n clients at once (a retrying payment provider): one 201,
    # the rest 200, exactly one credit, never a 500.
    for round_ in range(4):
        ref = f"race-{round_}"
        def same_topup(_i: int, ref: str = ref) -> tuple[int, Any]:
            return http.post(f"/api/v1/cards/{CARD}/topups",
                             {"amount": 1000, "reference": ref}, admin)
        results = _race(n, same_topup)
        statuses = sorted(s for s, _ in results)
        assert statuses == [200] * (n - 1) + [201], (ref, statuses, results)
        assert balance_of(api, admin, CARD) == 1000 * (round_ + 1)

    # n different top-ups at once: all credited, none lost.
    before = balance_of(api, admin, CARD)
    results = _race(n, lambda i: http.post(
        f"/api/v1/cards/{CARD}/topups", {"amount": 100 + i, "reference": f"many-{i}"}, admin))
    assert sorted(s for s, _ in results) == [201] * n, results
    assert balance_of(api, admin, CARD) == before + sum(100 + i for i in range(n))



def test_concurrent_issue_and_block_never_fail(system: System) -> None:
    http = system.http
    admin = system.token("admin")
    api = Api(http)
    system.issue(CARD)
    n = 8

    # Block and unblock racing each other end in one of the two states, never an error.
    results = _race(n, lambda i: http.post(
        f"/api/v1/cards/{CARD}/{'block' if i % 2 else 'unblock'}", {}, admin))
    assert sorted(s for s, _ in results) == [200] * n, results
    assert expect(api.get(f"/api/v1/cards/{CARD}", admin), 200, "")["status"] in (
        "active", "blocked")

    # The same card issued by n clients at once: one 201, the rest 409.
    for round_ in range(3):
        card = f"04CC{round_:02d}" + "AB" * 4
        def same_issue(_i: int, card: str = card) -> tuple[int, Any]:
            return http.post("/api/v1/cards", {"card": card, "category": "regular"}, admin)
        results = _race(n, same_issue)
        statuses = sorted(s for s, _ in results)
        assert statuses == [201] + [409] * (n - 1), (card, statuses, results)
        assert_card(expect(api.get(f"/api/v1/cards/{card}", admin), 200, ""), card, balance=0)

