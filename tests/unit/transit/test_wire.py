"""The signed wire messages of contract section 2: canonical form, signing, strict parsing."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transit.wire import (
    MAX_PAYLOAD_BYTES,
    Position,
    Receipt,
    Tap,
    WireError,
    body_digest,
    canonical,
    signature,
    verify,
)

SECRET = bytes(range(32))
OTHER_SECRET = b"\x01" * 32


def contract_tap_body() -> dict[str, Any]:
    """The Tap example of contract section 2, without its signature."""
    return {"v": 1, "device_id": "SBY-0042-A", "seq": 1234, "vehicle_id": "SBY-0042",
            "route_id": "R1", "card": "04A1B2C3D4E5F6", "kind": "entry", "accepted": True,
            "ts": 1764313202123, "lat_e6": -7257500, "lon_e6": 112752100}


def contract_position_body() -> dict[str, Any]:
    return {"v": 1, "device_id": "SBY-0042-A", "vehicle_id": "SBY-0042", "route_id": "R1",
            "ts": 1764313202123, "lat_e6": -7257500, "lon_e6": 112752100,
            "speed_cms": 1250, "bearing_deg": 90}


def contract_receipt_body() -> dict[str, Any]:
    return {"v": 1, "device_id": "SBY-0042-A", "seq": 1234, "status": "charged",
            "fare": 5000, "balance": 45000, "currency": "IDR"}


def independent_sig(body: dict[str, Any], secret: bytes = SECRET) -> str:
    """The contract's signature, computed here without the project's code."""
    unsigned = {k: v for k, v in body.items() if k != "sig"}
    text = json.dumps(unsigned, sort_keys=True, separators=(",", ":"))
    return hmac.new(secret, text.encode("utf-8"), hashlib.sha256).hexdigest()


def signed_payload(body: dict[str, Any], secret: bytes = SECRET) -> bytes:
    """A payload a conforming validator would publish for `body`."""
    return json.dumps(dict(body, sig=independent_sig(body, secret))).encode()


def raw(body: dict[str, Any]) -> bytes:
    """`body` as JSON with a well-formed (but not necessarily matching) signature."""
    return json.dumps(dict({"sig": "0" * 64}, **body)).encode()


def reason_of(payload: bytes, cls: type[Tap] | type[Position] | type[Receipt] = Tap) -> WireError:
    with pytest.raises(WireError) as info:
        cls.parse(payload)
    return info.value


# -- canonical form and signatures ------------------------------------------------------

def test_canonical_form_is_sorted_compact_json_without_sig() -> None:
    body = contract_tap_body()
    expected = json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")
    assert canonical(dict(body, sig="ab" * 32)) == expected
    assert canonical(body) == expected
    assert b" " not in canonical(body)
    assert canonical(body).startswith(b'{"accepted":true,"card":"04A1B2C3D4E5F6",')


def test_canonical_form_with_non_ascii_extra_matches_python_json_dumps() -> None:
    body = dict(contract_tap_body(), note="Jl. Tunjungan — café")
    expected = json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")
    assert canonical(body) == expected


def test_signature_is_hmac_sha256_of_the_canonical_form() -> None:
    body = contract_tap_body()
    assert signature(body, SECRET) == independent_sig(body)
    assert signature(dict(body, sig="ff" * 32), SECRET) == independent_sig(body)
    assert verify(dict(body, sig=independent_sig(body)), SECRET)
    assert not verify(dict(body, sig=independent_sig(body)), OTHER_SECRET)
    assert not verify(body, SECRET)  # no sig at all
    assert not verify(dict(body, sig=independent_sig(body).upper()), SECRET)


def test_signed_tap_carries_the_independently_computed_signature() -> None:
    tap = Tap(**{k: v for k, v in contract_tap_body().items() if k != "v"}).signed(SECRET)
    assert tap.sig == independent_sig(contract_tap_body())
    assert tap.verify(SECRET)
    assert not tap.verify(OTHER_SECRET)
    # encode() is the canonical form with sig included.
    full = dict(contract_tap_body(), sig=tap.sig)
    assert tap.encode() == json.dumps(full, sort_keys=True, separators=(",", ":")).encode()


def test_unsigned_message_does_not_verify() -> None:
    tap = Tap(**{k: v for k, v in contract_tap_body().items() if k != "v"})
    assert tap.sig is None
    assert not tap.verify(SECRET)


def test_digest_is_sha256_of_unsigned_canonical_body() -> None:
    body = contract_tap_body()
    tap = Tap.parse(signed_payload(body))
    expected = hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert tap.digest == expected == body_digest(body)
    # the same body signed by another key has the same digest: it is the same tap
    assert Tap.parse(signed_payload(body, OTHER_SECRET)).digest == expected


# -- round trips ----------------------------------------------------------------------

def test_contract_tap_parses_and_verifies() -> None:
    payload = signed_payload(contract_tap_body())
    tap = Tap.parse(payload)
    assert tap.tap_id == "SBY-0042-A:1234"
    assert (tap.device_id, tap.seq, tap.vehicle_id, tap.route_id, tap.card, tap.kind,
            tap.accepted, tap.ts, tap.lat_e6, tap.lon_e6, tap.v) == (
        "SBY-0042-A", 1234, "SBY-0042", "R1", "04A1B2C3D4E5F6", "entry", True,
        1764313202123, -7257500, 112752100, 1)
    assert tap.trip_id is None and tap.reason is None and dict(tap.extra) == {}
    assert tap.verify(SECRET)
    assert Tap.parse(tap.encode()) == tap
    assert json.loads(tap.encode()) == json.loads(payload)


def test_tap_with_optional_fields_round_trips() -> None:
    body = dict(contract_tap_body(), accepted=False, reason="denylisted", trip_id="T-7.1")
    tap = Tap.parse(signed_payload(body))
    assert (tap.accepted, tap.reason, tap.trip_id) == (False, "denylisted", "T-7.1")
    assert tap.verify(SECRET)
    assert Tap.parse(tap.encode()) == tap


def test_position_round_trips_with_and_without_optionals() -> None:
    body = contract_position_body()
    pos = Position.parse(signed_payload(body))
    assert (pos.speed_cms, pos.bearing_deg, pos.trip_id) == (1250, 90, None)
    assert pos.verify(SECRET)
    assert Position.parse(pos.encode()) == pos
    bare = {k: v for k, v in body.items() if k not in ("speed_cms", "bearing_deg")}
    pos2 = Position.parse(signed_payload(bare))
    assert pos2.speed_cms is None and pos2.bearing_deg is None
    assert pos2.verify(SECRET)
    assert "speed_cms" not in pos2.to_dict()


def test_receipt_round_trips_including_negative_fare() -> None:
    receipt = Receipt.parse(signed_payload(contract_receipt_body()))
    assert receipt.tap_id == "SBY-0042-A:1234"
    assert receipt.verify(SECRET)
    assert Receipt.parse(receipt.encode()) == receipt
    # an exit's receipt states the (negative) change it caused
    refund = dict(contract_receipt_body(), fare=-2000, balance=47000)
    assert Receipt.parse(signed_payload(refund)).fare == -2000
    made = Receipt(device_id="D1", seq=1, status="duplicate", fare=0, balance=-5,
                   currency="IDR").signed(SECRET)
    assert made.sig == independent_sig(made.to_dict())
    assert Receipt.parse(made.encode()) == made


@pytest.mark.parametrize("status", ["charged", "duplicate", "not_charged", "unknown_card",
                                    "conflict"])
def test_every_receipt_status_of_the_contract_parses(status: str) -> None:
    assert Receipt.parse(signed_payload(dict(contract_receipt_body(), status=status))
                         ).status == status


def test_a_receipt_without_a_balance_leaves_it_out_of_its_signed_form() -> None:
    body = {k: v for k, v in contract_receipt_body().items() if k != "balance"}
    body.update(status="unknown_card", fare=0)
    receipt = Receipt.parse(signed_payload(body))
    assert receipt.balance is None and receipt.verify(SECRET)
    made = Receipt(device_id="SBY-0042-A", seq=1234, status="unknown_card", fare=0,
                   currency="IDR").signed(SECRET)
    assert "balance" not in made.to_dict() and "reason" not in made.to_dict()
    assert made.sig == independent_sig(made.to_dict())
    assert Receipt.parse(made.encode()) == made


@pytest.mark.parametrize("reason", ["wrong_vehicle", "ts_out_of_range"])
def test_a_rejected_receipt_names_the_rule_and_signs_it(reason: str) -> None:
    made = Receipt(device_id="SBY-0042-A", seq=7, status="rejected", fare=0,
                   currency="IDR", reason=reason).signed(SECRET)
    assert json.loads(made.encode()) == {
        "v": 1, "device_id": "SBY-0042-A", "seq": 7, "status": "rejected", "fare": 0,
        "currency": "IDR", "reason": reason, "sig": made.sig}
    assert made.sig == independent_sig(made.to_dict())
    parsed = Receipt.parse(made.encode())
    assert (parsed.status, parsed.reason, parsed.balance) == ("rejected", reason, None)
    # the reason is signed: another one does not verify
    other = dict(json.loads(made.encode()), reason="something_else")
    assert not Receipt.parse(json.dumps(other).encode()).verify(SECRET)


def test_a_rejected_receipt_needs_a_reason() -> None:
    rejected = dict(contract_receipt_body(), status="rejected", fare=0)
    err = reason_of(raw(rejected), Receipt)
    assert (err.reason, "reason" in err.detail) == ("missing_field", True)
    assert reason_of(raw(dict(rejected, reason="no spaces")), Receipt).reason == "bad_value"


@pytest.mark.parametrize("status", ["charged", "not_charged", "unknown_card"])
def test_a_reader_keeps_a_reason_on_another_receipt_rather_than_refusing_it(status: str
                                                                            ) -> None:
    """A later gateway may explain more than this one does: the receipt is still final,
    and its signature covers the reason."""
    body = dict(contract_receipt_body(), status=status, reason="repeat")
    receipt = Receipt.parse(signed_payload(body))
    assert (receipt.status, receipt.reason) == (status, "repeat")
    assert receipt.verify(SECRET)
    assert not Receipt.parse(json.dumps(dict(body, reason="other", sig=receipt.sig)
                                        ).encode()).verify(SECRET)


# -- extra fields ---------------------------------------------------------------------

def test_unknown_scalar_extras_are_kept_and_signed() -> None:
    body = dict(contract_tap_body(), fw="2.1.0", battery_pct=87, offline=True)
    tap = Tap.parse(signed_payload(body))
    assert dict(tap.extra) == {"fw": "2.1.0", "battery_pct": 87, "offline": True}
    assert tap.verify(SECRET)
    assert tap.to_dict()["fw"] == "2.1.0"
    assert json.loads(tap.encode()) == dict(body, sig=independent_sig(body))
    # tampering with an extra breaks the signature
    tampered = dict(body, battery_pct=88, sig=independent_sig(body))
    assert not Tap.parse(json.dumps(tampered).encode()).verify(SECRET)
    # dropping an extra breaks it too
    dropped = dict(contract_tap_body(), sig=independent_sig(body))
    assert not Tap.parse(json.dumps(dropped).encode()).verify(SECRET)


@pytest.mark.parametrize("value", [{"a": 1}, [1, 2], [], {}, 1.5, None])
def test_non_scalar_extras_are_rejected(value: Any) -> None:
    err = reason_of(raw(dict(contract_tap_body(), blob=value)))
    assert err.reason == "wrong_type"
    assert "blob" in err.detail


# -- malformed payloads ---------------------------------------------------------------

@pytest.mark.parametrize("payload", [b"[1, 2, 3]", b'"tap"', b"42", b"null", b"true"])
def test_non_object_json_is_malformed(payload: bytes) -> None:
    assert reason_of(payload).reason == "malformed"


@pytest.mark.parametrize("payload", [b"", b"{", b'{"v": 1, "device_id": ', b"\xff\xfe not utf-8",
                                     b'{"v": 1}\x00', b"\xef\xbb\xbf{}", b"{'v': 1}"])
def test_undecodable_payloads_are_malformed(payload: bytes) -> None:
    assert reason_of(payload).reason == "malformed"


def test_non_utf8_inside_a_string_is_malformed() -> None:
    payload = signed_payload(contract_tap_body()).replace(b"R1", b"R\xe9")
    assert reason_of(payload).reason == "malformed"


def test_deeply_nested_json_within_the_size_limit_is_malformed_not_a_crash() -> None:
    # 4000 bytes is under the 4096-byte limit, but nests deeper than the JSON decoder's
    # recursion limit: the parser must still answer with a WireError.
    for payload in (b"[" * 4000, b'[{"a":' * 650):
        assert len(payload) <= MAX_PAYLOAD_BYTES
        try:
            Tap.parse(payload)
        except WireError as exc:
            assert exc.reason == "malformed"
        except RecursionError:
            pytest.fail("BUG transit/wire.py decode(): deeply nested JSON under the size "
                        "limit raises RecursionError instead of WireError('malformed')")
        else:
            pytest.fail("nested JSON was accepted as a Tap")


def test_oversized_payload_is_too_large() -> None:
    body = dict(contract_tap_body(), pad="x" * MAX_PAYLOAD_BYTES)
    err = reason_of(signed_payload(body))
    assert err.reason == "too_large"
    assert reason_of(b" " * (MAX_PAYLOAD_BYTES + 1)).reason == "too_large"
    assert reason_of(b"x" * (1024 * 1024)).reason == "too_large"


def test_payload_of_exactly_the_limit_is_accepted() -> None:
    body = dict(contract_tap_body(), pad="")
    base = len(signed_payload(body))
    body["pad"] = "x" * (MAX_PAYLOAD_BYTES - base)
    payload = signed_payload(body)
    assert len(payload) == MAX_PAYLOAD_BYTES
    tap = Tap.parse(payload)
    assert tap.verify(SECRET)
    body["pad"] += "x"
    assert reason_of(signed_payload(body)).reason == "too_large"


@pytest.mark.parametrize("payload", [b'{"v": NaN}', b'{"v": Infinity}', b'{"v": -Infinity}'])
def test_non_finite_numbers_are_refused(payload: bytes) -> None:
    assert reason_of(payload).reason in ("malformed", "wrong_type")


@pytest.mark.parametrize("cls,body", [(Tap, contract_tap_body), (Position, contract_position_body),
                                      (Receipt, contract_receipt_body)])
@pytest.mark.parametrize("twice", ['"device_id": "SBY-0099-Z"', '"v": 1', '"sig": "x"',
                                   '"x_extra": 1, "x_extra": 1', '"x_blob": {"a": 1, "a": 2}'])
def test_a_key_given_twice_is_malformed(cls: type[Tap] | type[Position] | type[Receipt],
                                        body: Any, twice: str) -> None:
    """Python's parser would keep the last copy, others the first: the signed body would
    not be the same for every reader of the bytes."""
    payload = signed_payload(body())
    assert cls.parse(payload).verify(SECRET)
    err = reason_of(payload[:-1] + f", {twice}}}".encode(), cls)
    assert err.reason == "malformed" and "more than once" in err.detail


# -- fields: types, ranges, patterns, presence --------------------------------------

TAP_INT_FIELDS = ["v", "seq", "ts", "lat_e6", "lon_e6"]
TAP_STR_FIELDS = ["device_id", "vehicle_id", "route_id", "card", "kind"]
TAP_REQUIRED = TAP_INT_FIELDS + TAP_STR_FIELDS + ["accepted"]


@pytest.mark.parametrize("name", TAP_INT_FIELDS)
@pytest.mark.parametrize("bad", [True, False, 1.0, 12.5, "1", [1], {"n": 1}])
def test_integer_fields_refuse_other_types(name: str, bad: Any) -> None:
    err = reason_of(raw(dict(contract_tap_body(), **{name: bad})))
    assert err.reason == "wrong_type"
    assert name in err.detail


@pytest.mark.parametrize("name", TAP_STR_FIELDS + ["trip_id", "reason"])
@pytest.mark.parametrize("bad", [1, True, 1.5, ["R1"], {"id": "R1"}])
def test_string_fields_refuse_other_types(name: str, bad: Any) -> None:
    err = reason_of(raw(dict(contract_tap_body(), **{name: bad})))
    assert err.reason == "wrong_type"
    assert name in err.detail


@pytest.mark.parametrize("bad", [1, 0, "true", "yes", None, 1.0])
def test_accepted_must_be_a_boolean(bad: Any) -> None:
    err = reason_of(raw(dict(contract_tap_body(), accepted=bad)))
    assert err.reason in ("wrong_type", "missing_field")
    assert "accepted" in err.detail


@pytest.mark.parametrize("name", TAP_REQUIRED + ["sig"])
def test_missing_required_field(name: str) -> None:
    body = dict(contract_tap_body(), sig="0" * 64)
    del body[name]
    err = reason_of(json.dumps(body).encode())
    assert err.reason == "missing_field"
    assert name in err.detail


@pytest.mark.parametrize("name", TAP_REQUIRED)
def test_null_required_field(name: str) -> None:
    err = reason_of(raw(dict(contract_tap_body(), **{name: None})))
    assert err.reason in ("missing_field", "wrong_type")
    assert name in err.detail


@pytest.mark.parametrize("name,value", [
    ("seq", 0), ("seq", -1), ("seq", 2**63), ("ts", -1),
    ("lat_e6", 90_000_001), ("lat_e6", -90_000_001),
    ("lon_e6", 180_000_001), ("lon_e6", -180_000_001),
])
def test_out_of_range_integers(name: str, value: int) -> None:
    err = reason_of(raw(dict(contract_tap_body(), **{name: value})))
    assert err.reason == "out_of_range"
    assert name in err.detail


@pytest.mark.parametrize("name,value", [
    ("lat_e6", 90_000_000), ("lat_e6", -90_000_000), ("lon_e6", 180_000_000),
    ("lon_e6", -180_000_000), ("seq", 1), ("seq", 2**63 - 1), ("ts", 0),
])
def test_range_boundaries_are_accepted(name: str, value: int) -> None:
    body = dict(contract_tap_body(), **{name: value})
    assert getattr(Tap.parse(signed_payload(body)), name) == value


@pytest.mark.parametrize("v", [0, 2, 1000, -1, 10**6])
def test_wrong_version(v: int) -> None:
    err = reason_of(raw(dict(contract_tap_body(), v=v)))
    assert err.reason in ("bad_version", "out_of_range")
    assert "v " in err.detail or err.detail.startswith("v")


@pytest.mark.parametrize("card", [
    "04a1b2c3d4e5f6",          # lower case
    "04A1B2C3d4E5F6",          # one lower-case digit
    "04A1B2C",                 # 7 digits
    "0" * 33,                  # 33 digits
    "04A1B2C3D4E5FG",          # not hex
    "04A1 B2C3D4E5F6",         # space
    "0x04A1B2C3D4",            # prefix
    "04A1B2C3D4E5F6\n",        # trailing newline
    "",
])
def test_bad_card_tokens(card: str) -> None:
    err = reason_of(raw(dict(contract_tap_body(), card=card)))
    assert err.reason == "bad_value"
    assert "card" in err.detail


@pytest.mark.parametrize("card", ["04A1B2C3", "0" * 32, "04A1B2C3D4E5F6", "0123456789ABCDEF"])
def test_good_card_tokens(card: str) -> None:
    assert Tap.parse(signed_payload(dict(contract_tap_body(), card=card))).card == card


BAD_IDS = ["SBY 0042", "", "x" * 65, "SBY/0042", "SBY+0042", "SBY#1", "bus\n", "Ş-1", "a:b"]


@pytest.mark.parametrize("name", ["device_id", "vehicle_id", "route_id", "trip_id"])
@pytest.mark.parametrize("value", BAD_IDS)
def test_bad_ids(name: str, value: str) -> None:
    err = reason_of(raw(dict(contract_tap_body(), **{name: value})))
    assert err.reason == "bad_value"
    assert name in err.detail


@pytest.mark.parametrize("name", ["device_id", "vehicle_id", "route_id", "trip_id"])
@pytest.mark.parametrize("value", ["x" * 64, "a", "A.b_c-9"])
def test_good_ids(name: str, value: str) -> None:
    tap = Tap.parse(signed_payload(dict(contract_tap_body(), **{name: value})))
    assert getattr(tap, name) == value


@pytest.mark.parametrize("kind", ["ENTRY", "enter", "", "exit "])
def test_bad_kind(kind: str) -> None:
    err = reason_of(raw(dict(contract_tap_body(), kind=kind)))
    assert err.reason == "bad_value"
    assert "kind" in err.detail


@pytest.mark.parametrize("sig", ["0" * 63, "0" * 65, "A" * 64, "g" * 64, ""])
def test_bad_sig_format(sig: str) -> None:
    err = reason_of(json.dumps(dict(contract_tap_body(), sig=sig)).encode())
    assert err.reason == "bad_value"
    assert "sig" in err.detail


@pytest.mark.parametrize("reason", ["not authentic", "x" * 65, "", "deny/listed", "é"])
def test_bad_reason(reason: str) -> None:
    err = reason_of(raw(dict(contract_tap_body(), accepted=False, reason=reason)))
    assert err.reason == "bad_value"
    assert "reason" in err.detail


@pytest.mark.parametrize("reason", ["denylisted", "not_authentic", "Expired-2024", "x" * 64])
def test_reasons_are_an_open_list(reason: str) -> None:
    """The contract lists reasons with an ellipsis: new ones must not be quarantined."""
    body = dict(contract_tap_body(), accepted=False, reason=reason, sig="0" * 64)
    assert Tap.from_dict(body).reason == reason


@pytest.mark.parametrize("name,value,why", [
    ("bearing_deg", 360, "out_of_range"), ("bearing_deg", -1, "out_of_range"),
    ("speed_cms", -1, "out_of_range"), ("bearing_deg", 90.0, "wrong_type"),
    ("speed_cms", True, "wrong_type"), ("route_id", "R 1", "bad_value"),
    ("lat_e6", 90_000_001, "out_of_range"), ("ts", "1764313202123", "wrong_type"),
])
def test_position_bad_fields(name: str, value: Any, why: str) -> None:
    err = reason_of(raw(dict(contract_position_body(), **{name: value})), Position)
    assert err.reason == why
    assert name in err.detail


@pytest.mark.parametrize("name", ["v", "device_id", "vehicle_id", "route_id", "ts", "lat_e6",
                                  "lon_e6", "sig"])
def test_position_missing_fields(name: str) -> None:
    body = dict(contract_position_body(), sig="0" * 64)
    del body[name]
    err = reason_of(json.dumps(body).encode(), Position)
    assert err.reason == "missing_field"
    assert name in err.detail


@pytest.mark.parametrize("name,value,why", [
    ("status", "paid", "bad_value"), ("status", "CHARGED", "bad_value"),
    ("currency", "idr", "bad_value"), ("currency", "IDRR", "bad_value"),
    ("fare", 5000.0, "wrong_type"), ("fare", False, "wrong_type"),
    ("balance", "45000", "wrong_type"), ("seq", 0, "out_of_range"), ("v", 2, "bad_version"),
])
def test_receipt_bad_fields(name: str, value: Any, why: str) -> None:
    err = reason_of(raw(dict(contract_receipt_body(), **{name: value})), Receipt)
    assert err.reason == why
    assert name in err.detail


@pytest.mark.parametrize("name", ["device_id", "seq", "status", "fare", "currency"])
def test_receipt_missing_fields(name: str) -> None:
    body = dict(contract_receipt_body(), sig="0" * 64)
    del body[name]
    err = reason_of(json.dumps(body).encode(), Receipt)
    assert err.reason == "missing_field"
    assert name in err.detail


def test_wire_error_carries_reason_and_detail() -> None:
    err = reason_of(raw(dict(contract_tap_body(), seq="7")))
    assert isinstance(err, ValueError)
    assert err.reason == "wrong_type"
    assert str(err).startswith("wrong_type: ") and "seq" in str(err)


# -- property: any valid Tap survives the wire and any change breaks its signature ------

IDS = st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True)
CARDS = st.from_regex(r"[0-9A-F]{8,32}", fullmatch=True)
REASONS = st.from_regex(r"[a-z_]{1,32}", fullmatch=True)
EXTRA_KEYS = st.from_regex(r"x_[a-z]{1,10}", fullmatch=True)
SCALARS = st.one_of(st.text(max_size=20), st.integers(-(2**53), 2**53), st.booleans())


@st.composite
def taps(draw: st.DrawFn) -> Tap:
    accepted = draw(st.booleans())
    return Tap(
        device_id=draw(IDS), seq=draw(st.integers(1, 2**63 - 1)), vehicle_id=draw(IDS),
        route_id=draw(IDS), card=draw(CARDS), kind=draw(st.sampled_from(["entry", "exit"])),
        accepted=accepted, ts=draw(st.integers(0, 2**63 - 1)),
        lat_e6=draw(st.integers(-90_000_000, 90_000_000)),
        lon_e6=draw(st.integers(-180_000_000, 180_000_000)),
        trip_id=draw(st.none() | IDS),
        reason=None if accepted else draw(st.none() | REASONS),
        extra=draw(st.dictionaries(EXTRA_KEYS, SCALARS, max_size=3)),
    )


SECRETS = st.binary(min_size=32, max_size=32)


@settings(max_examples=200, deadline=None)
@given(taps(), SECRETS)
def test_any_valid_tap_survives_encode_parse_and_verifies(tap: Tap, secret: bytes) -> None:
    signed = tap.signed(secret)
    payload = signed.encode()
    if len(payload) > MAX_PAYLOAD_BYTES:  # 64-char ids and extras can exceed the limit
        assert reason_of(payload).reason == "too_large"
        return
    parsed = Tap.parse(payload)
    assert parsed == signed
    assert parsed.verify(secret)
    assert parsed.sig == independent_sig(json.loads(payload), secret)
    assert parsed.digest == signed.digest


def _other(value: Any, draw: st.DrawFn, name: str) -> Any:
    """A different, still valid, value for field `name`."""
    strategies: dict[str, st.SearchStrategy[Any]] = {
        "device_id": IDS, "vehicle_id": IDS, "route_id": IDS, "trip_id": IDS,
        "card": CARDS, "kind": st.sampled_from(["entry", "exit"]), "accepted": st.booleans(),
        "seq": st.integers(1, 2**63 - 1), "ts": st.integers(0, 2**63 - 1),
        "lat_e6": st.integers(-90_000_000, 90_000_000),
        "lon_e6": st.integers(-180_000_000, 180_000_000), "reason": REASONS,
    }
    different = strategies.get(name, SCALARS).filter(
        lambda x: x != value or type(x) is not type(value))
    return draw(different)


@settings(max_examples=200, deadline=None)
@given(taps(), SECRETS, st.data())
def test_changing_any_field_breaks_verification(tap: Tap, secret: bytes,
                                                data: st.DataObject) -> None:
    signed = tap.signed(secret)
    body = json.loads(signed.encode())
    names = sorted(k for k in body if k not in ("sig", "v"))
    name = data.draw(st.sampled_from(names))
    body[name] = _other(body[name], data.draw, name)
    payload = json.dumps(body).encode()
    if len(payload) > MAX_PAYLOAD_BYTES:
        return
    try:
        parsed = Tap.parse(payload)
    except WireError:
        return  # e.g. an extra turned into something invalid: refused, not verified
    assert not parsed.verify(secret), f"changing {name} kept the signature valid"


@settings(max_examples=100, deadline=None)
@given(taps(), SECRETS, SECRETS)
def test_a_tap_signed_with_one_key_does_not_verify_with_another(
        tap: Tap, secret: bytes, other: bytes) -> None:
    signed = tap.signed(secret)
    assert signed.verify(secret)
    assert signed.verify(other) == (secret == other)
