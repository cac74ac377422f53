"""Cards issued and funded in bulk, for runs that need many passengers at once."""

from __future__ import annotations


def fund_cards(db_url: str, cards: list[str], amount: int, category: str = "regular",
               secret_key: bytes | None = None) -> None:
    """Issue cards and top each up once, straight through the ledger's own services
    (fingerprinted under `secret_key`, the run's TRANSIT_SECRET_KEY)."""
    from ledger.adapters.db import make_engine, session_factory
    from ledger.fingerprint import Fingerprints
    from ledger.services import Ledger

    engine = make_engine(db_url)
    sessions = session_factory(engine)
    ledger = Ledger(engine, "IDR", fingerprints=Fingerprints(secret_key))
    with sessions.begin() as s:
        for card in cards:
            ledger.open_card(s, card, category)
    with sessions.begin() as s:
        for card in cards:
            ledger.topup(s, card, amount, f"fund-{card}")
    engine.dispose()
