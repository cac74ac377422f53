"""`transit fares`: fare policy files, read as a table and tried on taps offline.

Amounts are written as the rider's statement writes them (`Rp5.000`: a dot between
thousands, no decimals) when the policy's currency is IDR, and as `5,000 XYZ` for any
other; `--json` gives whole numbers of the currency.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from transit.cli import Group
from transit.context import CommandContext, pass_transit
from transit.errors import TransitError

if TYPE_CHECKING:
    from fare_gateway.fares.engine import CardPrice
    from fare_gateway.fares.policy import FarePolicy
    from fare_gateway.fares.tapfile import CsvTap, TapFile


@click.group(cls=Group)
def fares() -> None:
    """Fare policy files: check one and read it as a table, price taps with it."""


def _policy(file: str) -> FarePolicy:
    from fare_gateway.fares.policy import PolicyError, load_policy

    try:
        return load_policy(file)
    except PolicyError as exc:
        raise TransitError(str(exc)) from None


def money_of(policy: FarePolicy) -> Callable[[int], str]:
    """How the policy's amounts are written."""
    if policy.currency == "IDR":
        from fare_gateway.riders.explain import rupiah

        return rupiah
    return lambda amount: f"{amount:,} {policy.currency}"


@fares.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON, for tools.")
def fares_check(file: str, as_json: bool) -> None:
    """Validate a fare policy file (every rule, every minute of every route priced) and
    print who pays what when: routes by local time window by category, transfers, caps."""
    from fare_gateway.fares.table import table_json, table_lines

    policy = _policy(file)
    if as_json:
        click.echo(json.dumps({"file": file, "ok": True, **table_json(policy)}))
        return
    click.echo(f"{file}: ok ({len(policy.rules)} rules, categories "
               f"{', '.join(policy.categories)}, currency {policy.currency})")
    click.echo()
    for line in table_lines(policy, money_of(policy)):
        click.echo(line)


@fares.command("price")
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("taps", metavar="TAPS.csv", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the charges as JSON, for tools.")
@click.option("--lang", type=click.Choice(["en", "id"]), default="en", show_default=True,
              help="Language of the reasons: English or Indonesian.")
def fares_price(file: str, taps: str, as_json: bool, lang: str) -> None:
    """Price the taps of a CSV file offline with the fare policy FILE: each charge with
    its reason, then each card's totals per day, week and month. Nothing is written."""
    from fare_gateway.fares.engine import price_card
    from fare_gateway.fares.tapfile import TapFileError, read_taps

    policy = _policy(file)
    try:
        tapfile = read_taps(taps, policy)
    except TapFileError as exc:
        for problem in exc.problems:
            click.echo(problem, err=True)
        if exc.bad_lines > len(exc.problems):
            click.echo(f"... and {exc.bad_lines - len(exc.problems)} more bad lines", err=True)
        raise TransitError(str(exc)) from None
    by_card: dict[str, list[CsvTap]] = {}
    for row in tapfile.taps:
        by_card.setdefault(row.card, []).append(row)
    prices = {card: price_card(policy, tapfile.categories[card], [r.tap for r in rows])
              for card, rows in by_card.items()}
    ordered = sorted(tapfile.taps, key=lambda r: (r.tap.order, r.line))
    if as_json:
        click.echo(json.dumps(_price_json(policy, tapfile, ordered, prices, lang)))
        return
    for line in _price_lines(policy, tapfile, ordered, prices, lang):
        click.echo(line)


def _price_lines(policy: FarePolicy, tapfile: TapFile, ordered: list[CsvTap],
                 prices: dict[str, CardPrice], lang: str) -> list[str]:
    """The charges in event order, then each card's totals, as aligned plain text."""
    from fare_gateway.fares.table import aligned
    from fare_gateway.riders.explain import charge_sentence

    money = money_of(policy)
    rows = [["service date", "time", "card", "route", "vehicle", "kind", "charge", "why"]]
    for row in ordered:
        tap = row.tap
        charge = prices[row.card].charges[tap.tap_id]
        rows.append([policy.service_date(tap.ts).isoformat(),
                     policy.local_time(tap.ts).strftime("%H:%M:%S"), row.card,
                     tap.route_id, tap.vehicle_id, tap.kind, money(charge.amount),
                     charge_sentence(charge, lang)])
    totals = [["card", "category", "period", "from", "charged", "cap"]]
    for card, price in prices.items():
        category = tapfile.categories[card]
        caps = policy.caps(category)
        for period, figures, cap in (("day", {d: p.total for d, p in price.days.items()},
                                      caps.daily),
                                     ("week", price.weeks, caps.weekly),
                                     ("month", price.months, caps.monthly)):
            for start, total in figures.items():
                totals.append([card, category, period, start.isoformat(), money(total),
                               "none" if cap is None else money(cap)])
        totals.append([card, category, "total", "", money(price.total), ""])
    return [*aligned(rows), "", *aligned(totals)]


def _price_json(policy: FarePolicy, tapfile: TapFile, ordered: list[CsvTap],
                prices: dict[str, CardPrice], lang: str) -> dict[str, Any]:
    """The same for tools: amounts as whole numbers of the currency."""
    from fare_gateway.riders.explain import charge_sentence

    taps = []
    for row in ordered:
        tap = row.tap
        charge = prices[row.card].charges[tap.tap_id]
        taps.append({
            "line": row.line, "tap_id": tap.tap_id, "card": row.card,
            "category": tapfile.categories[row.card],
            "service_date": policy.service_date(tap.ts).isoformat(),
            "local_time": policy.local_time(tap.ts).isoformat(timespec="milliseconds"),
            "ts": tap.ts, "route_id": tap.route_id, "vehicle_id": tap.vehicle_id,
            "kind": tap.kind, "amount": charge.amount, "full_fare": charge.full_fare,
            "role": charge.role, "pricing": charge.pricing, "cap": charge.cap,
            "capped_by": charge.capped_by, "reason": charge_sentence(charge, lang),
        })
    cards = {card: {"category": tapfile.categories[card],
                    "days": {d.isoformat(): p.total for d, p in price.days.items()},
                    "weeks": {d.isoformat(): t for d, t in price.weeks.items()},
                    "months": {d.isoformat(): t for d, t in price.months.items()},
                    "total": price.total}
             for card, price in prices.items()}
    return {"currency": policy.currency, "taps": taps, "cards": cards}


@fares.command("rebuild-totals")
@pass_transit
def fares_rebuild_totals(obj: CommandContext) -> None:
    """Set every card's week and month totals (where its weekly and monthly caps count
    from) to what the ledger's entries add up to, after `transit reconcile` named one."""
    from fare_gateway.cli.core import core
    from fare_gateway.taps.period_checks import rebuild_fare_periods
    from ledger.audit import Actor

    the_core = core(obj)
    mended = rebuild_fare_periods(the_core.sessions, the_core.ledger, Actor.command())
    for m in mended:
        click.echo(f"card {m.card}: {m.kind} from {m.start} "
                   f"{'missing' if m.was is None else m.was} -> {m.now}")
    click.echo(f"{len(mended)} total(s) set to what the ledger says"
               if mended else "every total already agrees with the ledger")
