"""Card authenticity (issue 8, point 5): key diversification, the EV1 AES three-pass
authentication against the virtual secure card in-process, clones and tampering."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from hardware_sim.desfire import DesfireApplication, clone_card, secure_card
from hardware_sim.vpcd import VirtualCard
from validator_agent.secure_card import (
    AID,
    SYSTEM_ID,
    NoApplication,
    NotAuthentic,
    SecureCardCheck,
    authenticate,
    diversify_key,
    load_master_key,
)

MASTER = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
UID = "04A1B2C3D4E5F6"


def _aes_ecb(key: bytes, block: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _shift(block: bytes) -> bytes:
    n = int.from_bytes(block, "big") << 1
    out = (n & (2**128 - 1)).to_bytes(16, "big")
    return _xor(out, bytes(15) + b"\x87") if n >> 128 else out


def _an10922_by_hand(master: bytes, div_input: bytes) -> bytes:
    """AN10922 section 2.2 written out from AES-ECB: M = 01 || D, padded to 32 bytes
    with 80 00.. (then the last block XOR K2) or not (K1), CBC-MAC under IV zero."""
    k1 = _shift(_aes_ecb(master, bytes(16)))
    k2 = _shift(k1)
    m = b"\x01" + div_input
    padded = len(m) < 32
    if padded:
        m = m + b"\x80" + bytes(31 - len(m))
    last = _xor(m[16:], k2 if padded else k1)
    state = _aes_ecb(master, m[:16])
    return _aes_ecb(master, _xor(state, last))


def test_diversification_matches_an_independent_an10922_computation() -> None:
    for uid in ("04A1B2C3D4E5F6", "DEADBEEF", "0102030405060708090A"):
        expected = _an10922_by_hand(MASTER, bytes.fromhex(uid) + AID + SYSTEM_ID)
        assert diversify_key(MASTER, bytes.fromhex(uid)) == expected
    # A fixed known answer, so that a change of the input layout cannot go unseen.
    assert diversify_key(MASTER, bytes.fromhex(UID)).hex() == \
        _an10922_by_hand(MASTER, bytes.fromhex("04A1B2C3D4E5F6F01001") + b"SBY-TRANSIT").hex()
    # Different cards, applications or master keys give different keys.
    assert diversify_key(MASTER, bytes.fromhex(UID)) != diversify_key(
        MASTER, bytes.fromhex("04A1B2C3D4E5F7"))
    assert diversify_key(MASTER, bytes.fromhex(UID)) != diversify_key(
        MASTER, bytes.fromhex(UID), aid=bytes.fromhex("F01002"))
    with pytest.raises(ValueError):
        diversify_key(MASTER[:8], bytes.fromhex(UID))


def test_the_nxp_an10922_example_vector() -> None:
    # AN10922 AES-128 example: UID 04782E21801D80, AID 3042F5, system id "NXP Abu".
    key = diversify_key(MASTER, bytes.fromhex("04782E21801D80"), bytes.fromhex("3042F5"),
                        b"NXP Abu")
    assert key.hex().upper() == "A8DD63A3B89D54B37CA802473FDA9175"


def test_a_genuine_card_authenticates_and_its_token_is_read() -> None:
    card = secure_card(UID, MASTER)
    assert authenticate(card.respond, bytes.fromhex(UID), MASTER) == UID.encode()
    assert card.extra.authenticated  # type: ignore[union-attr]
    assert SecureCardCheck(MASTER, "secure").check(card.respond, UID) is True


def test_only_cryptograms_cross_the_wire() -> None:
    card = secure_card(UID, MASTER)
    wire: list[bytes] = []

    def transmit(apdu: bytes) -> bytes:
        answer = card.respond(apdu)
        wire.extend((apdu, answer))
        return answer

    authenticate(transmit, bytes.fromhex(UID), MASTER)
    key = diversify_key(MASTER, bytes.fromhex(UID))
    assert not any(MASTER in m or key in m for m in wire)
    assert [m[1] for m in wire[::2]] == [0x5A, 0xAA, 0xAF, 0xBD]


def test_a_clone_with_the_same_uid_but_no_key_fails() -> None:
    clone = clone_card(UID)
    with pytest.raises(NotAuthentic):
        authenticate(clone.respond, bytes.fromhex(UID), MASTER)
    assert clone.extra.failed_authentications == 1  # type: ignore[union-attr]
    assert SecureCardCheck(MASTER, "secure").check(clone_card(UID).respond, UID) is False
    assert SecureCardCheck(MASTER, "any").check(clone_card(UID).respond, UID) is False
    # Nor does another card's genuine key help: keys are per UID.
    other = secure_card("04B1B2C3D4E5F7", MASTER)
    transplanted = VirtualCard(UID, extra=other.extra)
    with pytest.raises(NotAuthentic):
        authenticate(transplanted.respond, bytes.fromhex(UID), MASTER)


def test_a_tampered_reader_cryptogram_is_refused_by_the_card() -> None:
    card = secure_card(UID, MASTER)

    def tamper(apdu: bytes) -> bytes:
        if apdu[1] == 0xAF:
            apdu = apdu[:10] + bytes([apdu[10] ^ 0x01]) + apdu[11:]
        return card.respond(apdu)

    with pytest.raises(NotAuthentic, match="refused our cryptogram"):
        authenticate(tamper, bytes.fromhex(UID), MASTER)
    assert not card.extra.authenticated  # type: ignore[union-attr]


def test_a_tampered_card_answer_is_refused_by_the_reader() -> None:
    card = secure_card(UID, MASTER)

    def tamper(apdu: bytes) -> bytes:
        answer = card.respond(apdu)
        if apdu[1] == 0xAF:
            answer = bytes([answer[0] ^ 0x80]) + answer[1:]
        return answer

    with pytest.raises(NotAuthentic, match="does not prove"):
        authenticate(tamper, bytes.fromhex(UID), MASTER)


def test_a_replayed_session_fails_because_rndb_is_fresh() -> None:
    card = secure_card(UID, MASTER)
    recorded: list[bytes] = []

    def record(apdu: bytes) -> bytes:
        recorded.append(apdu)
        return card.respond(apdu)

    authenticate(record, bytes.fromhex(UID), MASTER)
    card.respond(recorded[0])
    card.respond(recorded[1])
    assert card.respond(recorded[2])[-2:] == b"\x91\xae"


def test_the_token_is_readable_only_after_authentication() -> None:
    app = DesfireApplication(bytes(16), b"TOKEN-1")
    assert app(bytes.fromhex("905A000003F0100100"))[-2:] == b"\x91\x00"
    assert app(bytes.fromhex("90BD0000070100000000000000")) == b"\x91\xae"
    assert app(bytes.fromhex("905A000003F0100200")) == b"\x91\xa0"


def test_a_plain_uid_card_has_no_application() -> None:
    plain = VirtualCard(UID)
    with pytest.raises(NoApplication):
        authenticate(plain.respond, bytes.fromhex(UID), MASTER)
    assert SecureCardCheck(MASTER, "secure").check(plain.respond, UID) is False
    assert SecureCardCheck(MASTER, "any").check(plain.respond, UID) is None


def test_the_master_key_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "master.hex"
    path.write_text(MASTER.hex() + "\n")
    path.chmod(0o600)
    assert load_master_key(path) == MASTER
    path.write_text("00" * 8)
    with pytest.raises(ValueError, match="16"):
        load_master_key(path)
    path.write_text("not hex")
    with pytest.raises(ValueError, match="hexadecimal"):
        load_master_key(path)
    with pytest.raises(ValueError, match="cannot read"):
        load_master_key(tmp_path / "missing")
