"""Rider accounts and their cards (contract section 7): sign-up, login, logout, deletion,
linking a card by its check code, reporting it lost and replacing it.

The `RiderOffice` runs each use case in a transaction of its own, like the card office.
Slow hashes are made and verified before a transaction opens, so that no row stays
locked and no connection stays taken while argon2 runs. What a rider gets wrong says as
little as it can: a wrong password and an unknown e-mail are one answer, and so are a
wrong check code and a card that does not exist; both kinds are limited
(`fare_gateway.riders.limits`), the count taken as the gate before any hash is verified,
and so are sign-ups per address.

Only a card its rider reported lost may be replaced: `/lost` records the report in
`card_losses` when it blocks an active card, and a card blocked by staff alone (a fraud
hold) is refused with `not_reported_lost`, so its rider cannot drain it.

A replacement moves the lost card's whole balance to the new card in one `transfer`
entry, keyed by the lost card, and records it in `card_replacements` (the lost card is
its key) in the same transaction. Taps of the lost card that a validator accepted before
it learnt of the block (a bus that was offline) may still arrive after the move: they
are charged to the lost card as the rides they were, which may take it below zero. The
money the rider had is then on the new card, the fares on the old one, and the sum of
all accounts stays zero. Money may also reach the lost card after the move (a late
exit's correction giving back a maximum fare, a top-up, a refund): the same replacement
asked again moves what the lost card holds above zero then, in one more `transfer`
keyed by the lost card's newest entry, so that a repeat with nothing new moves nothing
and nothing moves twice; `moved` is the total.

What riders change is written to the audit trail in the change's own transaction, after
its writes, as done by the rider's account (by number: an e-mail never reaches the
trail, which is chained and cannot be edited when the account is deleted):
`rider.signed_up`, `rider.card_linked`, `rider.card_lost`, `rider.card_replaced` (each
move of money), `rider.deleted`. A request that changes nothing (a card linked or
reported lost again, a replacement asked again with nothing new to move) writes nothing;
logging in and out changes no record of the system's and writes nothing either.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fare_gateway.adapters.models import (
    ApiToken,
    CardLoss,
    CardReplacement,
    CheckCode,
    RiderAccount,
    RiderCard,
)
from fare_gateway.cards import parse_card, set_card_status
from fare_gateway.denylist import refresh_denylist
from fare_gateway.fares.policy import FarePolicy
from fare_gateway.riders.actors import rider_actor
from fare_gateway.riders.links import linked_cards, own_card
from fare_gateway.riders.passwords import (
    hash_secret,
    needs_rehash,
    password_problem,
    verify_secret,
    warm_up,
    well_formed_code,
)
from fare_gateway.tokens import create_rider_token, revoke_account_tokens, revoke_token
from ledger import audit
from ledger.adapters.db import Sessions
from ledger.adapters.models import Entry
from ledger.audit import Actor
from ledger.domain import CardState, transfer_entry
from ledger.services import CardNotFound, Ledger, card_states, now_ms, retry_once_on_race

MAX_EMAIL = 254  # what SMTP carries in a path (RFC 5321), and the column's width
# ASCII e-mails only, the shape HTML's <input type=email> accepts, with a dot in the
# domain: enough to catch a typo, and lower-casing it never changes its length.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL_PATTERN = rf"[A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-]{{1,64}}@{_LABEL}(?:\.{_LABEL})+"
EMAIL = re.compile(EMAIL_PATTERN)
SIGN_UPS = 10  # sign-ups one address may make in a window of TRANSIT_RIDER_FAILURES


class FailureLimits(Protocol):
    """Where sign-ups, wrong passwords and check codes are counted
    (`fare_gateway.riders.limits`): an attempt begins before its hash is verified (False:
    refused) and ends once it is, counted a failure if it was wrong."""

    def sign_up_allowed(self, address: str) -> bool: ...
    def login_begin(self, email: str, address: str) -> bool: ...
    def login_end(self, email: str, address: str, failed: bool) -> None: ...
    def code_begin(self, card: str, account_id: int, address: str) -> bool: ...
    def code_end(self, card: str, account_id: int, address: str, failed: bool) -> None: ...


class RiderError(Exception):
    """A rider's request that cannot be done; `code` says which kind, the class how bad."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class BadInput(RiderError):
    """A value of the request is malformed."""


class WrongLogin(RiderError):
    """The e-mail and password do not match an account (whichever of them is wrong)."""


class WrongCode(RiderError):
    """The card and check code do not match (whichever of them is wrong)."""


class Refused(RiderError):
    """The request conflicts with what is recorded (an e-mail taken, a card linked to
    another account, a card not blocked, replaced already)."""


class TooManyFailures(RiderError):
    """Too many wrong passwords or check codes (or sign-ups) lately for what this
    request names."""


def wrong_login() -> WrongLogin:
    """The one answer to a wrong password and to an e-mail nobody uses."""
    return WrongLogin("wrong_login", "the e-mail or the password is wrong")


def wrong_code() -> WrongCode:
    """The one answer to a wrong check code and to a card that does not exist."""
    return WrongCode("wrong_check_code", "the card or its check code is wrong")


@dataclass(frozen=True)
class Account:
    """An account just opened."""

    account_id: int
    email: str


@dataclass(frozen=True)
class Login:
    """A rider token, shown once, and when it expires (epoch ms)."""

    token: str
    expires_ms: int


@dataclass(frozen=True)
class RiderCardView:
    """One of a rider's cards as the rider sees it."""

    card: str
    category: str
    status: str
    balance: int
    replaced_by: str | None = None


@dataclass(frozen=True)
class Replacement:
    """A lost card replaced: the new card, its balance now, and what the move carried."""

    card: str
    balance: int
    moved: int
    replaced: str


def parse_email(email: object) -> str:
    """An e-mail, lower-cased; raises BadInput if it is not one."""
    if not isinstance(email, str) or len(email) > MAX_EMAIL or not EMAIL.fullmatch(email):
        raise BadInput("bad_email", "email must be an e-mail address like nama@contoh.id")
    return email.lower()


def parse_password(password: object) -> str:
    """A password fit to keep; raises BadInput saying why not."""
    problem = password_problem(password)
    if problem is not None:
        raise BadInput("bad_password", problem)
    assert isinstance(password, str)
    return password


def parse_code(code: object) -> str:
    """A check code's eight digits; raises BadInput otherwise."""
    if not well_formed_code(code):
        raise BadInput("bad_check_code", "check_code must be the card's eight digits")
    assert isinstance(code, str)
    return code


def rider_card(card: object) -> str:
    """A card token as a rider gives it; raises BadInput when malformed."""
    try:
        return parse_card(card)
    except ValueError as exc:
        raise BadInput("bad_card", str(exc)) from None


class RiderOffice:
    """The riders' use cases, each in one transaction of its own."""

    def __init__(self, sessions: Sessions, ledger: Ledger, policy: FarePolicy,
                 limits: FailureLimits, token_hours: int) -> None:
        self.sessions = sessions
        self.ledger = ledger
        self.policy = policy
        self.limits = limits
        self.token_ms = token_hours * 3_600_000
        warm_up()

    # -- accounts -------------------------------------------------------------
    def sign_up(self, email: object, password: object, source: str) -> Account:
        """Open an account; Refused("email_taken") if the e-mail has one, TooManyFailures
        past the sign-ups one address (`source`) may make in a window."""
        address, secret = parse_email(email), parse_password(password)
        if not self.limits.sign_up_allowed(source):
            raise TooManyFailures("too_many_sign_ups",
                                  "too many sign-ups from this address; wait a quarter of "
                                  "an hour")
        if self._account_of(address) is not None:  # spare the hash
            raise _email_taken()
        password_hash = hash_secret(secret)
        try:
            with self.sessions.begin() as session:
                row = RiderAccount(email=address, password_hash=password_hash,
                                   created_ms=now_ms())
                session.add(row)
                session.flush()
                self._audit(session, rider_actor(row.id, source), "rider.signed_up",
                            f"account:{row.id}")
                return Account(row.id, address)
        except IntegrityError:  # signed up a moment ago by another request
            raise _email_taken() from None

    def login(self, email: object, password: object, address: str) -> Login:
        """A rider token for the account with this e-mail and password."""
        if not isinstance(email, str) or not isinstance(password, str):
            raise BadInput("bad_login", "email and password must be strings")
        email = email.strip().lower()[:MAX_EMAIL + 1]
        if not self.limits.login_begin(email, address):
            raise TooManyFailures("too_many_failures",
                                  "too many wrong logins for this e-mail or from this "
                                  "address; wait a quarter of an hour")
        failed = False
        try:
            found = self._account_of(email)
            stored = found[1] if found is not None else None
            # Verified even for an e-mail nobody uses (against the dummy hash): its
            # answer must take as long as a wrong password's.
            failed = not verify_secret(stored, password) or found is None
        finally:
            self.limits.login_end(email, address, failed)
        if failed or found is None:
            raise wrong_login()
        account_id = found[0]
        rehashed = hash_secret(password) if stored and needs_rehash(stored) else None
        with self.sessions.begin() as session:
            if rehashed is not None:
                session.execute(update(RiderAccount).where(RiderAccount.id == account_id)
                                .values(password_hash=rehashed))
            token, expires = create_rider_token(session, account_id, self.token_ms,
                                                fingerprints=self.ledger.fingerprints)
        return Login(token, expires)

    def logout(self, token_id: str) -> int:
        """Revoke the token the rider presented; when it was revoked (epoch ms)."""
        with self.sessions.begin() as session:
            revoke_token(session, token_id, fingerprints=self.ledger.fingerprints)
            revoked = session.scalar(select(ApiToken.revoked_ms)
                                     .where(ApiToken.id == token_id))
        return int(revoked or now_ms())

    def delete(self, account_id: int, actor: Actor) -> int:
        """Erase the account's e-mail and password, unlink its cards and revoke its
        tokens; its disputes and the ledger keep their rows. When it was done (ms)."""
        now = now_ms()
        with self.sessions.begin() as session:
            session.execute(update(RiderAccount).where(RiderAccount.id == account_id)
                            .values(email=None, password_hash=None, deleted_ms=now))
            unlinked = session.execute(delete(RiderCard)
                                       .where(RiderCard.account_id == account_id))
            revoked = revoke_account_tokens(session, account_id, now,
                                            fingerprints=self.ledger.fingerprints)
            self._audit(session, actor, "rider.deleted", f"account:{account_id}",
                        {"cards_unlinked": unlinked.rowcount,  # type: ignore[attr-defined]
                         "tokens_revoked": revoked})
        return now

    # -- cards ----------------------------------------------------------------
    def link(self, account_id: int, card: object, code: object, address: str,
             actor: Actor) -> tuple[RiderCardView, bool]:
        """Link a card by its check code; True when newly linked, False when it was this
        account's already. Refused("card_linked") when it is another account's."""
        token = self._checked_code(account_id, card, code, address)

        def attach() -> tuple[RiderCardView, bool]:
            with self.sessions.begin() as session:
                created = _attach(session, account_id, token)
                if created:
                    self._audit(session, actor, "rider.card_linked", token,
                                {"account": f"account:{account_id}"})
                return self._views(session, [token])[0], created

        # Linked by another request at this very moment: run again, it finds the link.
        return retry_once_on_race(attach)

    def cards(self, account_id: int) -> list[RiderCardView]:
        """The account's cards, in token order."""
        with self.sessions() as session:
            return self._views(session, linked_cards(session, account_id))

    def report_lost(self, account_id: int, card: object, actor: Actor) -> RiderCardView:
        """Block one of the account's cards at once (the deny list follows in the same
        transaction); CardNotFound if it is not the account's."""
        token = _path_card(card)
        with self.sessions.begin() as session:
            own_card(session, account_id, token)
            state = self.ledger.lock_cards(session, [token]).get(token)
            # A report counts when it blocks the card: one blocked by staff stays staff's
            # (its rider may not replace it), and a report kept from before staff
            # unblocked the card is replaced by this one.
            blocks = state is not None and state.status != "blocked"
            if blocks:
                loss = session.get(CardLoss, token)
                if loss is None:
                    session.add(CardLoss(card=token, account_id=account_id,
                                         reported_ms=now_ms()))
                else:
                    loss.account_id, loss.reported_ms = account_id, now_ms()
            # Audited as the rider's report, only when it blocks the card.
            set_card_status(session, self.ledger, self.policy, token, "blocked",
                            actor=actor, action="rider.card_lost",
                            detail={"account": f"account:{account_id}"})
            return self._views(session, [token])[0]

    def replace(self, account_id: int, card: object, new_card: object, code: object,
                address: str, actor: Actor) -> tuple[Replacement, bool]:
        """Move a lost card's whole balance to a new card, proved by the new card's
        check code, and link the new card; True when done now, False when it was done
        before (then only what reached the lost card since moves, once)."""
        old = _path_card(card)
        with self.sessions() as session:
            own_card(session, account_id, old)
        if rider_card(new_card) == old:
            raise BadInput("same_card", "new_card must be another card than the lost one")
        new = self._checked_code(account_id, new_card, code, address)

        def move() -> tuple[Replacement, bool]:
            with self.sessions.begin() as session:
                return self._move(session, account_id, old, new, actor)

        # Two requests replacing one card race to its card_replacements row (or the
        # transfer's key): the loser, run again, finds the winner's row.
        return retry_once_on_race(move)

    # -- parts ----------------------------------------------------------------
    def _checked_code(self, account_id: int, card: object, code: object, address: str
                      ) -> str:
        """The card, once its check code proved right."""
        token = rider_card(card)
        digits = parse_code(code)
        if not self.limits.code_begin(token, account_id, address):
            raise TooManyFailures("too_many_failures",
                                  "too many wrong check codes for this card, this account "
                                  "or from this address; wait a quarter of an hour")
        failed = False
        try:
            with self.sessions() as session:
                stored = session.scalar(select(CheckCode.code_hash)
                                        .where(CheckCode.card == token))
            failed = not verify_secret(stored, digits)
        finally:
            self.limits.code_end(token, account_id, address, failed)
        if failed:
            raise wrong_code()
        return token

    def _account_of(self, email: str) -> tuple[int, str | None] | None:
        with self.sessions() as session:
            row = session.execute(select(RiderAccount.id, RiderAccount.password_hash)
                                  .where(RiderAccount.email == email)).first()
        return None if row is None else (row[0], row[1])

    def _move(self, session: Session, account_id: int, old: str, new: str, actor: Actor
              ) -> tuple[Replacement, bool]:
        # Both cards locked in sorted order, as the tap path locks them: a tap of either
        # waits for the move, or the move for the tap.
        states = self.ledger.lock_cards(session, [old, new])
        done = session.get(CardReplacement, old)
        if done is not None:
            if done.new_card != new:
                raise Refused("already_replaced",
                              f"card {old} was replaced by another card already")
            return self._sweep(session, done, states, actor), False
        lost, fresh = states[old], states.get(new)
        if fresh is None:  # its code was right a moment ago: the card cannot be gone
            raise wrong_code()
        if lost.status != "blocked":
            raise Refused("not_blocked",
                          f"card {old} must be reported lost (blocked) before it is replaced")
        loss = session.get(CardLoss, old)
        if loss is None or loss.account_id != account_id:
            raise Refused("not_reported_lost",
                          f"card {old} was blocked by staff, not reported lost by its "
                          "rider: ask the service desk")
        if fresh.status == "blocked":
            raise Refused("new_card_blocked", f"card {new} is blocked: it cannot take "
                                              "the balance")
        if session.scalar(select(CardReplacement.old_card)
                          .where(CardReplacement.new_card == new)) is not None:
            raise Refused("card_used", f"card {new} replaced another card already")
        _attach(session, account_id, new)
        moved = max(lost.balance, 0)
        entry_id = None
        balance = fresh.balance
        if moved:
            posted = self.ledger.post(
                session, [transfer_entry(old_card=old, new_card=new, amount=moved,
                                         currency=self.ledger.currency)],
                {old: lost.account_id, new: fresh.account_id})
            entry_id, balance = posted.entry_ids[0], posted.balances[new]
        session.add(CardReplacement(old_card=old, new_card=new, account_id=account_id,
                                    moved=moved, entry_id=entry_id, created_ms=now_ms()))
        session.flush()
        refresh_denylist(session, self.policy, [old, new],
                         fingerprints=self.ledger.fingerprints)
        self._audit(session, actor, "rider.card_replaced", old,
                    {"old": old, "new": new, "moved": moved, "entry_id": entry_id})
        return Replacement(new, balance, moved, old), True

    def _sweep(self, session: Session, done: CardReplacement, states: dict[str, CardState],
               actor: Actor) -> Replacement:
        """A replacement asked again: what the lost card holds above zero now moves too,
        keyed by its newest entry (nothing new since, nothing moves)."""
        old, new = done.old_card, done.new_card
        lost, fresh = states[old], states[new]
        if lost.balance <= 0:
            return Replacement(new, fresh.balance, done.moved, old)
        newest = session.scalar(select(func.max(Entry.id)).where(Entry.card == old))
        draft = dataclasses.replace(
            transfer_entry(old_card=old, new_card=new, amount=lost.balance,
                           currency=self.ledger.currency),
            idem_key=f"transfer:{old}:{newest}")
        posted = self.ledger.post(session, [draft],
                                  {old: lost.account_id, new: fresh.account_id})
        done.moved += lost.balance
        session.flush()
        refresh_denylist(session, self.policy, [old, new],
                         fingerprints=self.ledger.fingerprints)
        self._audit(session, actor, "rider.card_replaced", old,
                    {"old": old, "new": new, "moved": lost.balance,
                     "entry_id": posted.entry_ids[0], "moved_in_all": done.moved})
        return Replacement(new, posted.balances[new], done.moved, old)

    def _audit(self, session: Session, actor: Actor, action: str, subject: str,
               detail: dict[str, object] | None = None) -> None:
        """Record a rider's change in its transaction, after the change's writes."""
        audit.record(session, self.ledger.fingerprints, actor, action, subject, detail)

    def _views(self, session: Session, cards: list[str]) -> list[RiderCardView]:
        states: dict[str, CardState] = card_states(session, cards)
        replaced = dict(session.execute(
            select(CardReplacement.old_card, CardReplacement.new_card)
            .where(CardReplacement.old_card.in_(cards))).all()) if cards else {}
        return [RiderCardView(c, states[c].category, states[c].status, states[c].balance,
                              replaced.get(c)) for c in cards if c in states]


def _attach(session: Session, account_id: int, card: str) -> bool:
    """Link `card` to the account; False if it was linked to it already."""
    owner = session.scalar(select(RiderCard.account_id).where(RiderCard.card == card))
    if owner == account_id:
        return False
    if owner is not None:
        raise Refused("card_linked", f"card {card} is linked to another account")
    session.add(RiderCard(card=card, account_id=account_id, linked_ms=now_ms()))
    session.flush()
    return True


def _path_card(card: object) -> str:
    """A card of the path: a malformed one cannot be the account's (CardNotFound)."""
    try:
        return parse_card(card)
    except ValueError:
        raise CardNotFound(f"no card {card!s:.40} on this account") from None


def _email_taken() -> Refused:
    return Refused("email_taken", "an account with this e-mail exists")
