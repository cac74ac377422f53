"""The rules of the ledger's tamper evidence, pure: what a fingerprint covers, and the
walk of a card's chain from its head (`ledger.integrity`)."""

from __future__ import annotations

from ledger.fingerprint import Fingerprints, card_mac
from ledger.integrity import Chained, chain_problems, entry_mac, settlement_mac

FP = Fingerprints(bytes(range(1, 33)))
CARD = "04A0000000000001"
FIELDS = ["tap:DEV-1:1", "fare", "d" * 64, 5000, 1764212400000, "IDR", CARD, "DEV-1:1",
          None, "2025-11-27", "SBY", "R1", "regular"]
POSTINGS = [(7, -5000), (3, 5000)]


def chain(n: int) -> list[Chained]:
    """`n` entries chained in id order, as the ledger posts them."""
    out, prev = [], None
    for i in range(1, n + 1):
        mac = f"{i:064x}"
        out.append(Chained(i, mac, prev))
        prev = mac
    return out


def test_an_entry_fingerprint_covers_every_field_its_postings_their_order_and_its_link() -> None:
    mac = entry_mac(FP, FIELDS, None, POSTINGS)
    assert mac == entry_mac(FP, list(FIELDS), None, list(POSTINGS))
    for i in range(len(FIELDS)):
        changed = list(FIELDS)
        changed[i] = "x" if changed[i] != "x" else "y"
        assert entry_mac(FP, changed, None, POSTINGS) != mac, i
    assert entry_mac(FP, FIELDS, "0" * 64, POSTINGS) != mac
    assert entry_mac(FP, FIELDS, None, POSTINGS[::-1]) != mac
    assert entry_mac(FP, FIELDS, None, [(7, -5000), (4, 5000)]) != mac
    # another key, or none, gives another fingerprint
    assert entry_mac(Fingerprints(bytes(range(2, 34))), FIELDS, None, POSTINGS) != mac
    assert entry_mac(Fingerprints(None), FIELDS, None, POSTINGS) != mac


def test_fingerprints_of_different_tables_never_match() -> None:
    fields = ["2025-11-27", "a" * 64, None, "b" * 64, "c" * 64, 3, "{}"]
    assert settlement_mac(FP, fields) != FP.of("entries", *fields)
    assert card_mac(FP, CARD, "regular", "active", 1, None) != \
        card_mac(FP, CARD, "senior", "active", 1, None)
    assert card_mac(FP, CARD, "regular", "active", 1, None) != \
        card_mac(FP, CARD, "regular", "blocked", 1, None)
    assert card_mac(FP, CARD, "regular", "active", 1, None) != \
        card_mac(FP, CARD, "regular", "active", 1, "e" * 64)


def test_a_whole_chain_has_no_problem() -> None:
    entries = chain(4)
    assert chain_problems(CARD, entries[-1].mac, entries) == []
    assert chain_problems(CARD, None, []) == []
    # the order the entries are given in does not matter
    assert chain_problems(CARD, entries[-1].mac, entries[::-1]) == []


def test_an_entry_removed_from_the_middle_breaks_the_link_after_it() -> None:
    entries = chain(4)
    problems = chain_problems(CARD, entries[-1].mac, entries[:1] + entries[2:])
    assert problems[0] == (f"card {CARD}: entry 3 follows an entry that is not there (an "
                           "entry was removed from the card's chain)")
    assert problems[1].startswith(f"card {CARD}: entry 1 is not on the card's chain")
    assert len(problems) == 2


def test_the_newest_entries_removed_leave_a_head_pointing_nowhere() -> None:
    entries = chain(3)
    problems = chain_problems(CARD, entries[-1].mac, entries[:2])
    assert problems[0].startswith(f"card {CARD}: its chain's head is the fingerprint of no "
                                  "entry")
    assert problems[1].startswith(f"card {CARD}: entries 1, 2 are not on the card's chain")


def test_an_entry_added_beside_the_chain_is_named() -> None:
    entries = chain(3)
    forged = [*entries, Chained(9, None, None), Chained(10, "f" * 64, entries[-1].mac)]
    assert chain_problems(CARD, entries[-1].mac, forged) == [
        f"card {CARD}: entries 9, 10 are not on the card's chain (posted behind the "
        "application's back, or re-linked)"]


def test_a_head_cleared_leaves_every_entry_off_the_chain() -> None:
    assert chain_problems(CARD, None, chain(2)) == [
        f"card {CARD}: entries 1, 2 are not on the card's chain (posted behind the "
        "application's back, or re-linked)"]


def test_a_loop_ends_the_walk() -> None:
    looped = [Chained(1, "a" * 64, "b" * 64), Chained(2, "b" * 64, "a" * 64)]
    assert chain_problems(CARD, "b" * 64, looped) == [
        f"card {CARD}: its chain loops back to entry 2"]


def test_many_entries_off_the_chain_are_counted_past_ten() -> None:
    off = [Chained(i, None, None) for i in range(1, 15)]
    problem, = chain_problems(CARD, None, off)
    assert "entries 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 and 4 more are not on" in problem
