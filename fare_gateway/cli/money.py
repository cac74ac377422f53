"""`transit float DATE`: a business day's float, as `GET /api/v1/finance/float/{date}`
gives it, for finance at the command line; exit 1 when it does not tie out."""

from __future__ import annotations

import json
import sys
from datetime import date

import click

from fare_gateway.cli.core import core
from ledger.cli import BusinessDate
from transit.context import CommandContext, pass_transit
from transit.errors import TransitError

LABELS = (("opening", "opening (cards at the day's start)"), ("topups", "+ top-ups"),
          ("fares", "+ fares"), ("corrections", "+ corrections"), ("refunds", "+ refunds"),
          ("transfers", "+ transfers between cards"), ("adjustments", "+ adjustments"),
          ("closing", "= closing"), ("cards_total", "cards total (balances at the day's end)"))


def float_table(figures: dict[str, object]) -> str:
    """The float as a readable table: one figure a line, amounts aligned."""
    width = max(len(label) for _, label in LABELS)
    lines = [f"float of business day {figures['date']} ({figures['status']}), "
             f"{figures['currency']}"]
    for key, label in LABELS:
        if key == "closing":
            lines.append("-" * (width + 16))
        lines.append(f"{label:<{width}}  {figures[key]:>14,}")
    return "\n".join(lines)


@click.command("float")
@click.argument("business_date", metavar="DATE", type=BusinessDate())
@click.option("--json", "as_json", is_flag=True,
              help="Print the API's JSON object instead of the table.")
@pass_transit
def float_command(obj: CommandContext, business_date: date, as_json: bool) -> None:
    """Print the float of business day DATE (YYYY-MM-DD); exit 1 if it does not tie out."""
    from fare_gateway.finance.errors import FinanceError
    from fare_gateway.finance.office import FinanceOffice

    the_core = core(obj)
    office = FinanceOffice(the_core.sessions, the_core.ledger, the_core.policy)
    try:
        result = office.float_of(business_date)
    except FinanceError as exc:
        raise TransitError(str(exc)) from None
    figures = result.as_json()
    click.echo(json.dumps(figures) if as_json else float_table(figures))
    if not result.ties_out:
        click.echo(f"MISMATCH the float of {business_date} does not tie out: closing "
                   f"{result.closing:,} but the cards hold {result.cards_total:,} (a "
                   f"difference of {result.cards_total - result.closing:+,}): run transit "
                   "reconcile", err=True)
        sys.exit(1)
