"""The finance use cases, each in a session of its own: what the HTTP views and the
`transit float` command call."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import date

from fare_gateway.fares.policy import FarePolicy
from fare_gateway.finance.adjustments import AdjustmentOffice
from fare_gateway.finance.detail import EVERY_LINE, DetailFilter, detail_lines
from fare_gateway.finance.errors import Conflict
from fare_gateway.finance.rollforward import DayFloat, day_float
from fare_gateway.finance.search import Found, find_cards, parse_query
from fare_gateway.riders import explain
from fare_gateway.riders.statement import Statement, Statements
from ledger.adapters.db import READS_ONLY, Sessions, snapshot
from ledger.services import Ledger
from ledger.settlement import BusinessCalendar


class Streamed:
    """Chunks of a response streamed from a generator that has already begun (its query
    made, its session open): `close`, which the server calls when the response ends or
    the client goes away, ends the generator and so its session, even if the response
    was never read."""

    def __init__(self, first: bytes, rest: Iterator[bytes]) -> None:
        self._first: bytes | None = first
        self._rest = rest

    def __iter__(self) -> Iterator[bytes]:
        if self._first is not None:
            first, self._first = self._first, None
            yield first
        yield from self._rest

    def close(self) -> None:
        """End the generator (and its session)."""
        close = getattr(self._rest, "close", None)
        if close is not None:
            close()


class FinanceOffice:
    """Float, detail, card search, staff statements and adjustments over one database."""

    def __init__(self, sessions: Sessions, ledger: Ledger, policy: FarePolicy,
                 clock: Callable[[], int] = lambda: int(time.time() * 1000)) -> None:
        self.sessions = sessions
        self.ledger = ledger
        self.policy = policy
        self.clock = clock
        self.calendar = BusinessCalendar(policy.timezone, policy.service_day_start_min)
        self.adjustments = AdjustmentOffice(sessions, ledger, policy, clock)
        self.statements = Statements(sessions, policy)

    @property
    def currency(self) -> str:
        return self.policy.currency

    def float_of(self, day: date) -> DayFloat:
        """The float of business day `day`, in one snapshot."""
        with self.sessions() as session:
            snapshot(session)
            return day_float(session, self.calendar, self.currency, day, self.clock())

    def detail(self, day: date, wanted: DetailFilter = EVERY_LINE) -> Streamed:
        """The day's detail CSV as UTF-8 chunks, already begun: a day that has not begun
        is refused here, before anything is sent."""
        if self.clock() < self.calendar.bounds(day)[0]:
            raise Conflict("day_not_begun", f"business day {day.isoformat()} has not begun")
        chunks = self._detail_chunks(day, wanted)
        return Streamed(next(chunks), chunks)

    def _detail_chunks(self, day: date, wanted: DetailFilter) -> Iterator[bytes]:
        # The session lives as long as the generator: it ends when the last chunk is
        # taken or the generator is closed (`Streamed.close`).
        with self.sessions() as session:
            conn = snapshot(session)
            lines = detail_lines(conn, self.calendar, day, wanted)
            # The header, then the query: made before the first chunk leaves, so that a
            # database failure is an error answer, not a cut-off file.
            header = next(lines)
            body = iter(lines)
            first = next(body, None)
            yield (header + (first or "")).encode()
            for chunk in body:
                yield chunk.encode()

    def search(self, raw_query: str | None) -> Found:
        """Cards by token prefix or rider e-mail."""
        query = parse_query(raw_query)
        with self.sessions() as session:
            session.connection(execution_options=READS_ONLY)
            return find_cards(session, query)

    def statement(self, card: str, first: date | None, last: date | None,
                  lang: str = explain.DEFAULT_LANGUAGE) -> Statement:
        """Any card's statement, for staff (no rider account is asked for)."""
        return self.statements.of_card(card, first, last, lang)
