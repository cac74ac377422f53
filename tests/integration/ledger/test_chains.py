"""Each card's chain of entries as the ledger posts it, and the sealing of legacy rows,
in-process on SQLite (the tampering itself is shown on PostgreSQL,
test_tampering.py): entries of one card in one batch chain in draft order, a transfer
chains on the card it leaves, an entry of no card is fingerprinted on no chain, a lock
taken in one transaction is never trusted in the next, and a card's status set
through the ledger keeps its fingerprint."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from fare_gateway.schema import load_all_models, upgrade
from ledger.adapters.db import make_engine, session_factory
from ledger.adapters.models import Card, Entry
from ledger.domain import (
    EntryDraft,
    PostingDraft,
    revenue_account,
    topup_entry,
    transfer_entry,
)
from ledger.fingerprint import Fingerprints, card_mac
from ledger.integrity import seal_legacy
from ledger.reconcile import check_fingerprints
from ledger.services import Ledger, set_card_status

FP = Fingerprints(bytes(range(7, 39)))
A, B, C = "04A0000000000001", "04B0000000000002", "04C0000000000003"


def chain_of(session: Session, card: str) -> list[tuple[int, str | None, str | None]]:
    return [tuple(r) for r in session.execute(  # type: ignore[misc]
        select(Entry.id, Entry.prev_mac, Entry.mac).where(Entry.card == card)
        .order_by(Entry.id)).all()]


def clean(session: Session) -> list[str]:
    result = check_fingerprints(session, FP)
    return result.problems


def test_posting_chains_each_cards_entries_and_sealing_links_legacy_ones(
        tmp_path: Path) -> None:
    load_all_models()
    engine = make_engine(f"sqlite:///{tmp_path}/chains.db")
    upgrade(engine)
    sessions = session_factory(engine)
    ledger = Ledger(engine, "IDR", fingerprints=FP)
    with sessions.begin() as s:
        for card in (A, B, C):
            ledger.open_card(s, card, "regular")
    moved = EntryDraft(idem_key="corr:x", kind="correction", digest="x", amount=0,
                       postings=(PostingDraft(revenue_account("SBY"), -700),
                                 PostingDraft(revenue_account("TMN"), 700)),
                       currency="IDR", operator_id="TMN")
    with sessions.begin() as s:
        posted = ledger.post(s, [
            topup_entry(card=A, amount=1000, reference="t1", currency="IDR"),
            topup_entry(card=A, amount=2000, reference="t2", currency="IDR"),
            transfer_entry(old_card=A, new_card=B, amount=500, currency="IDR"),
            moved])
    assert dict(posted.balances) == {A: 2500, B: 500}
    with sessions() as s:
        (t1, p1, m1), (t2, p2, m2), (tr, p3, m3) = chain_of(s, A)
        assert (p1, p2, p3) == (None, m1, m2)  # in draft order, the transfer on A
        assert chain_of(s, B) == []
        row_a, row_b = s.get(Card, A), s.get(Card, B)
        assert row_a is not None and row_b is not None
        assert row_a.head == m3 and row_b.head is None
        assert row_a.mac == card_mac(FP, A, "regular", "active", row_a.account_id, m3)
        nobody = s.execute(select(Entry.prev_mac, Entry.mac)
                           .where(Entry.idem_key == "corr:x")).one()
        assert nobody[0] is None and nobody[1] is not None
        assert clean(s) == []

    # A lock held in one transaction says nothing in the next: another session posts for
    # A in between, and the first one's next posting chains after that entry.
    first = sessions()
    with first.begin():
        ledger.lock_cards(first, [A])
    with sessions.begin() as other:
        ledger.topup(other, A, 100, "t3")
    with first.begin():
        ledger.post(first, [topup_entry(card=A, amount=100, reference="t4", currency="IDR")])
        # blocked, then charged again in the same transaction: the card's fingerprint
        # carries the new status and the newest head
        ledger.lock_cards(first, [A])
        set_card_status(first, FP, A, "blocked")
        ledger.post(first, [topup_entry(card=A, amount=100, reference="t5", currency="IDR")])
    first.close()
    with sessions() as s:
        links = chain_of(s, A)
        assert [prev for _, prev, _ in links[1:]] == [mac for _, _, mac in links[:-1]]
        row = s.get(Card, A)
        assert row is not None and row.status == "blocked" and row.head == links[-1][2]
        assert clean(s) == []

    # Legacy: C's first entries written before fingerprints, then one the ledger posted
    # while C's head was still empty. Sealing chains them all in id order, once.
    with sessions.begin() as s:
        ledger.post(s, [topup_entry(card=C, amount=n, reference=f"c{n}", currency="IDR")
                        for n in (10, 20)])
    with engine.begin() as conn:
        conn.execute(text("UPDATE entries SET mac = NULL, prev_mac = NULL WHERE card = :c"),
                     {"c": C})
        conn.execute(text("UPDATE cards SET mac = NULL, head = NULL WHERE card = :c"),
                     {"c": C})
    with sessions.begin() as s:
        ledger.topup(s, C, 30, "c30")
    with sessions() as s:
        assert any(f"card {C}" in p for p in clean(s))
    with sessions.begin() as s:
        assert seal_legacy(s, FP) == {"entries": 3, "cards": 1, "settlements": 0}
    with sessions() as s:
        links = chain_of(s, C)
        assert links[0][1] is None
        assert [prev for _, prev, _ in links[1:]] == [mac for _, _, mac in links[:-1]]
        assert clean(s) == []
    with sessions.begin() as s:
        assert seal_legacy(s, FP) == {"entries": 0, "cards": 0, "settlements": 0}

    # A broken chain is never mended by sealing: an entry of A removed, A's own
    # fingerprint cleared to make it look legacy; sealing gives A a fingerprint, the
    # gap stays.
    with engine.begin() as conn:
        middle = conn.execute(text("SELECT id FROM entries WHERE card = :c ORDER BY id "
                                   "LIMIT 1 OFFSET 1"), {"c": A}).scalar_one()
        conn.execute(text("DELETE FROM postings WHERE entry_id = :e"), {"e": middle})
        conn.execute(text("DELETE FROM entries WHERE id = :e"), {"e": middle})
        conn.execute(text("UPDATE cards SET mac = NULL WHERE card = :c"), {"c": A})
    with sessions.begin() as s:
        assert seal_legacy(s, FP) == {"entries": 0, "cards": 1, "settlements": 0}
    with sessions() as s:
        problems = clean(s)
    assert any(p.startswith(f"card {A}: entry ") and "follows an entry that is not there" in p
               for p in problems), problems
    engine.dispose()
