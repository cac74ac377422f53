"""Card search for staff (contract section 9): the cards whose token starts with a
prefix, or those linked to a rider's e-mail.

A query holding `@` is an e-mail, matched exactly and without regard to case (riders'
e-mails are stored in lower case, `fare_gateway.riders.accounts.parse_email`); a
deleted account has no e-mail left, so its cards are found by token alone. Any other
query is a token prefix of 1 to 32 hex digits (upper or lower case): "the cards whose
token starts with Q", however short; what bounds the answer is that at most
`MAX_RESULTS` cards come back, in token order, and the answer says when there were more
(a short prefix walks the primary key's index only that far). A query holding a control
character (a NUL, which PostgreSQL refuses in text) matches nothing and is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from fare_gateway.adapters.models import RiderAccount, RiderCard
from fare_gateway.finance.errors import BadQuery
from fare_gateway.finance.text import has_control
from ledger.adapters.models import Card
from ledger.domain import CardState

MIN_PREFIX = 1
MAX_TOKEN = 32  # a card token's most hex digits (contract section 1)
MAX_EMAIL = 254
MAX_RESULTS = 50
HEX = re.compile(r"[0-9A-F]+")
# A bound above every token with the prefix: `G` sorts after every hex digit, in
# PostgreSQL's collations as in byte order, so `prefix <= card < prefix || 'G'` walks
# the primary key's index over exactly the cards with that prefix.
AFTER_HEX = "G"


@dataclass(frozen=True)
class CardQuery:
    """What a search looks for: `email` (lower case) or `prefix` (upper-case hex)."""

    kind: str  # email | prefix
    value: str


@dataclass(frozen=True)
class Found:
    """The cards a search found (at most `MAX_RESULTS`) and whether there were more."""

    cards: tuple[CardState, ...]
    truncated: bool


def parse_query(raw: str | None) -> CardQuery:
    """A search query; BadQuery (a 400) when it is missing or cannot match a card."""
    text = (raw or "").strip()
    if not text:
        raise BadQuery("bad_query", f"query is required: a card token prefix ({MIN_PREFIX} "
                                    f"to {MAX_TOKEN} hex digits) or a rider's e-mail")
    if has_control(text):
        raise BadQuery("bad_query", "query must not hold control characters")
    if "@" in text:
        if len(text) > MAX_EMAIL:
            raise BadQuery("bad_query", f"an e-mail has at most {MAX_EMAIL} characters")
        return CardQuery("email", text.lower())
    prefix = text.upper()
    if not MIN_PREFIX <= len(prefix) <= MAX_TOKEN or not HEX.fullmatch(prefix):
        raise BadQuery("bad_query", f"a card token prefix is {MIN_PREFIX} to {MAX_TOKEN} hex "
                                    "digits (or search by a rider's e-mail, with its @)")
    return CardQuery("prefix", prefix)


def find_cards(session: Session, query: CardQuery, limit: int = MAX_RESULTS) -> Found:
    """The cards matching `query`, in token order."""
    c = Card.__table__.c
    stmt = select(c.card, c.category, c.status, c.balance, c.account_id)
    if query.kind == "email":
        r, a = RiderCard.__table__.c, RiderAccount.__table__.c
        stmt = (stmt.join(RiderCard.__table__, r.card == c.card)
                .join(RiderAccount.__table__, a.id == r.account_id)
                .where(a.email == query.value, a.deleted_ms.is_(None)))
    else:
        # The range finds the cards through the index; LIKE keeps the answer exact
        # whatever the collation (hex digits hold no LIKE wildcard).
        stmt = stmt.where(c.card >= query.value, c.card < query.value + AFTER_HEX,
                          c.card.like(query.value + "%"))
    rows = session.execute(stmt.order_by(c.card).limit(limit + 1)).all()
    return Found(tuple(CardState(*row) for row in rows[:limit]), len(rows) > limit)
