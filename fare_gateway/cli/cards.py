"""`transit cards`: issue, top up and show cards."""

from __future__ import annotations

import json

import click

from fare_gateway.cli.core import core
from fare_gateway.cli.params import CARD, TakesNegativeNumbers
from ledger.audit import Actor
from transit.cli import Group
from transit.context import CommandContext, pass_transit
from transit.errors import TransitError


@click.group(cls=Group)
def cards() -> None:
    """Cards: issue, top up, show, new check codes."""


@cards.command("issue")
@click.argument("card", type=CARD)
@click.option("--category", default=None, help="Rider category (default: the policy's).")
@pass_transit
def cards_issue(obj: CommandContext, card: str, category: str | None) -> None:
    """Issue a card."""
    from fare_gateway.cards import CardOffice

    the_core = core(obj)
    issued = CardOffice(the_core.sessions, the_core.ledger, the_core.policy).issue(
        card, category, Actor.command())
    # The code is shown this once (only its hash is kept): it goes on the card.
    click.echo(f"check code: {issued.check_code}")
    click.echo(json.dumps({"card": card, "category": issued.state.category,
                           "status": "active", "balance": 0,
                           "currency": the_core.policy.currency}))


@cards.command("check-code")
@click.argument("card", type=CARD)
@pass_transit
def cards_check_code(obj: CommandContext, card: str) -> None:
    """Give CARD a new check code (the old one stops working); shown this once."""
    from fare_gateway.cards import CardOffice

    the_core = core(obj)
    code = CardOffice(the_core.sessions, the_core.ledger, the_core.policy).new_check_code(
        card, Actor.command())
    click.echo(f"check code: {code}")


# A negative AMOUNT ("-500") is an argument to refuse with the allowed range, not an
# unknown option "-5"; a mistyped option is still refused.
@cards.command("topup", cls=TakesNegativeNumbers)
@click.argument("card", type=CARD)
@click.argument("amount", type=int)
@click.option("--reference", required=True,
              help="Unique reference: the same one never credits twice.")
@pass_transit
def cards_topup(obj: CommandContext, card: str, amount: int, reference: str) -> None:
    """Top up a card by AMOUNT (idempotent by reference)."""
    from fare_gateway.cards import CardError, CardOffice, parse_topup

    try:
        amount, reference = parse_topup(amount, reference)
    except CardError as exc:
        raise TransitError(f"{exc} (got {amount if exc.code == 'bad_amount' else reference!r})"
                           ) from None
    the_core = core(obj)
    result = CardOffice(the_core.sessions, the_core.ledger, the_core.policy).topup(
        card, amount, reference, Actor.command())
    click.echo(json.dumps({"card": card, "balance": result.balance,
                           "currency": the_core.policy.currency, "amount": amount,
                           "reference": reference, "created": result.created}))


@cards.command("show")
@click.argument("card", type=CARD)
@pass_transit
def cards_show(obj: CommandContext, card: str) -> None:
    """Show a card's category, status and balance."""
    from fare_gateway.cards import CardOffice

    the_core = core(obj)
    state = CardOffice(the_core.sessions, the_core.ledger, the_core.policy).show(card)
    click.echo(json.dumps({"card": state.card, "category": state.category,
                           "status": state.status, "balance": state.balance,
                           "currency": the_core.policy.currency}))
