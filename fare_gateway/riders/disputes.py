"""Disputes, pure (contract section 7): the 48-hour clock, what a rider may ask, who may
answer how, and how much a refund may give back.

A dispute's state is never stored: it is judged from when it was opened and when it
was answered, as of any instant, so escalation at 24 hours and the deadline at 48 need
no job to run and read the same on every gateway. Every instant is epoch milliseconds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from fare_gateway.riders.times import iso_z
from transit.instants import AS_OF as AS_OF
from transit.instants import AS_OF_PATTERN as AS_OF_PATTERN
from transit.instants import DATE_PATTERN

HOUR_MS = 3_600_000
ESCALATE_AFTER_MS = 24 * HOUR_MS
DUE_AFTER_MS = 48 * HOUR_MS

CATEGORIES = ("wrong_fare", "charged_twice", "missing_exit", "denied_wrongly", "other")
STATES = ("open", "escalated", "overdue", "answered")
DECISIONS = ("refund", "reject")
MAX_MESSAGE = 2000
MAX_AGE_DAYS = 90  # the oldest service day a rider may question, counted back from today
MAX_PENDING = 20  # unanswered disputes an account may hold at once
AUTO = "auto"  # `answered_by` of an answer the gateway gave itself (charged_twice)

# A date as the API takes it (its pattern and `AS_OF` live in `transit.instants`).
DAY = re.compile(rf"{DATE_PATTERN}")


class DisputeError(ValueError):
    """A dispute request that cannot be done; `code` says which kind (a 422)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class DisputeNotFound(LookupError):
    """No such dispute, or no such tap of the card (a 404)."""


class DisputeConflict(Exception):
    """The dispute was answered already, or one on the same tap is still open (a 409)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class NotAllowed(Exception):
    """The caller's role may not give this answer (a 403)."""


def escalate_at(created_ms: int) -> int:
    """When an unanswered dispute is escalated: 24 hours after it was opened."""
    return created_ms + ESCALATE_AFTER_MS


def due_at(created_ms: int) -> int:
    """When an unanswered dispute is overdue: 48 hours after it was opened."""
    return created_ms + DUE_AFTER_MS


def status_at(created_ms: int, answered_ms: int | None, as_of: int) -> str:
    """The state as of `as_of`: answered if answered by then, else overdue from the
    deadline, else escalated from the escalation, else open."""
    if answered_ms is not None and answered_ms <= as_of:
        return "answered"
    if as_of >= due_at(created_ms):
        return "overdue"
    if as_of >= escalate_at(created_ms):
        return "escalated"
    return "open"


@dataclass(frozen=True)
class StateWindow:
    """The disputes in one state as of an instant, as bounds on their columns: opened
    in (`created_after`, `created_until`] (no lower bound when None), and answered by
    the instant (`answered`) or not."""

    created_after: int | None
    created_until: int
    answered: bool


def state_window(status: str, as_of: int) -> StateWindow:
    """Which disputes are in `status` as of `as_of` (only those opened by then exist)."""
    if status == "answered":
        return StateWindow(None, as_of, True)
    if status == "overdue":
        return StateWindow(None, as_of - DUE_AFTER_MS, False)
    if status == "escalated":
        return StateWindow(as_of - DUE_AFTER_MS, as_of - ESCALATE_AFTER_MS, False)
    if status == "open":
        return StateWindow(as_of - ESCALATE_AFTER_MS, as_of, False)
    raise ValueError(f"no state {status!r}")


@dataclass(frozen=True)
class DisputeRecord:
    """A dispute as stored, safe to use after its session has closed."""

    dispute_id: int
    account_id: int
    card: str
    tap_id: str | None
    service_date: str | None
    category: str
    message: str
    created_ms: int
    answered_ms: int | None = None
    decision: str | None = None
    amount: int | None = None
    answer: str | None = None
    answered_by: str | None = None


def dispute_json(record: DisputeRecord, as_of: int, answer: str | None = None
                 ) -> dict[str, Any]:
    """A dispute as the API shows it, its `status` judged as of `as_of`; `answer` replaces
    the stored text (an automatic answer is told in the reader's language)."""
    answered = record.answered_ms is not None and record.answered_ms <= as_of
    return {
        "dispute_id": record.dispute_id,
        "card": record.card,
        "tap_id": record.tap_id,
        "service_date": record.service_date,
        "category": record.category,
        "message": record.message,
        "status": status_at(record.created_ms, record.answered_ms, as_of),
        "created_at": iso_z(record.created_ms),
        "escalate_at": iso_z(escalate_at(record.created_ms)),
        "due_at": iso_z(due_at(record.created_ms)),
        # An answer given after `as_of` was not there yet.
        "answered_at": iso_z(record.answered_ms) if record.answered_ms is not None and answered
        else None,
        "decision": record.decision if answered else None,
        "amount": record.amount if answered else None,
        "answer": (answer if answer is not None else record.answer) if answered else None,
    }


# -- what a rider may ask ---------------------------------------------------------------------

def parse_category(value: object) -> str:
    """One of CATEGORIES; DisputeError("bad_category") otherwise."""
    if not isinstance(value, str) or value not in CATEGORIES:
        raise DisputeError("bad_category", f"category must be one of {', '.join(CATEGORIES)}")
    return value


def parse_message(value: object, field: str = "message") -> str:
    """A text of 1 to MAX_MESSAGE characters (not blank); DisputeError otherwise."""
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_MESSAGE:
        raise DisputeError(f"bad_{field}",
                           f"{field} must be 1 to {MAX_MESSAGE} characters, not blank")
    return value


def parse_day(value: object, today: str) -> str:
    """A service date YYYY-MM-DD, a real one, not after `today`."""
    if not isinstance(value, str) or not DAY.fullmatch(value):
        raise DisputeError("bad_date", "date must be a real date, YYYY-MM-DD")
    if value > today:
        raise DisputeError("bad_date", f"date {value} is after today's service date {today}")
    return value


def check_day(day: str, today: str, issued: str | None) -> None:
    """DisputeError("bad_date") when the service day is more than MAX_AGE_DAYS before
    `today`, or (given `issued`, the card's issue date) before the card was issued."""
    oldest = (date.fromisoformat(today) - timedelta(days=MAX_AGE_DAYS)).isoformat()
    if day < oldest:
        raise DisputeError("bad_date", f"date {day} is more than {MAX_AGE_DAYS} days ago: "
                                       f"disputes go back to {oldest}")
    if issued is not None and day < issued:
        raise DisputeError("bad_date", f"date {day} is before the card was issued, on "
                                       f"{issued}")


def check_pending(pending: int) -> None:
    """DisputeConflict("too_many_disputes") when the account already holds MAX_PENDING
    unanswered disputes."""
    if pending >= MAX_PENDING:
        raise DisputeConflict("too_many_disputes", f"this account has {pending} disputes "
                              f"not answered yet, the most it may hold at once is "
                              f"{MAX_PENDING}: wait for an answer")


# -- who may answer how, and how much --------------------------------------------------------

@dataclass(frozen=True)
class Answer:
    """An answer as asked: a rejection refunds 0."""

    decision: str
    amount: int
    message: str


def parse_decision(value: object) -> str:
    """`refund` or `reject`; DisputeError("bad_decision") otherwise."""
    if not isinstance(value, str) or value not in DECISIONS:
        raise DisputeError("bad_decision", "decision must be refund or reject")
    return value


def parse_answer(decision: object, amount: object, message: object) -> Answer:
    """The answer's decision, amount and message, checked; DisputeError otherwise.

    A refund names a whole positive amount; a rejection names none (absent, null or 0).
    """
    decision = parse_decision(decision)
    text = parse_message(message)
    if decision == "reject":
        if amount not in (None, 0) or isinstance(amount, bool):
            raise DisputeError("bad_amount", "a rejection refunds nothing: leave amount out")
        return Answer(decision, 0, text)
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise DisputeError("bad_amount", "a refund's amount must be a whole number above 0")
    return Answer(decision, amount, text)


def may_answer(role: str, decision: str) -> bool:
    """Ops may reject only; finance (and admin) may refund or reject."""
    if role in ("admin", "finance"):
        return True
    return role == "ops" and decision == "reject"


def refund_bound(charged: int, refunded: int) -> int:
    """What a refund may still give back: what was charged less what was refunded, never
    below 0."""
    return max(0, charged - refunded)


def check_refund(amount: int, bound: int) -> None:
    """DisputeError("over_bound") when `amount` is more than `bound`, naming the bound."""
    if amount > bound:
        raise DisputeError("over_bound", f"a refund may give back at most {bound} here: what "
                                         "the card was charged for it, less what earlier "
                                         f"answers refunded; {amount} is more")


def overcharge(held: Mapping[str, int], priced: Mapping[str, int], tap_id: str | None) -> int:
    """How much more the ledger holds than the fare rules charge: for one tap, or (None)
    for every tap of the day; `held` is each tap's net in the ledger, `priced` what
    `price_day` charges it now."""
    taps = [tap_id] if tap_id is not None else sorted(held)
    return sum(max(0, held.get(t, 0) - priced.get(t, 0)) for t in taps)


def auto_refund(excess: int, refunded: int, bound: int) -> int:
    """What a charged_twice dispute refunds at once: the overcharge, up to the bound, and
    nothing when earlier answers refunded anything for the tap or day (the ledger keeps
    no tap on a refund, so the overcharge it shows would be paid again: a person looks)."""
    if refunded > 0:
        return 0
    return max(0, min(excess, bound))


def largest_charge(charges: Mapping[str, int]) -> str | None:
    """The tap whose net charge is the largest (the first tap id of a tie), or None when
    nothing was charged: a day's refund goes to that tap's operator and route."""
    charged = [(-amount, tap_id) for tap_id, amount in charges.items() if amount > 0]
    return min(charged)[1] if charged else None


@dataclass(frozen=True)
class Backlog:
    """The unanswered disputes now, by state, and how long the oldest has waited."""

    open: int
    escalated: int
    overdue: int
    oldest_age_s: float
