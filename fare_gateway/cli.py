"""Gateway-side subcommands of `transit`: gateway, db, devices, cards, tokens, fares."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import date
from functools import wraps
from pathlib import Path
from typing import Any

import click

from fare_gateway.fares.policy import PolicyError, load_policy
from transit.settings import Settings, SettingsError


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


def _core():  # type: ignore[no-untyped-def]
    from fare_gateway.wiring import Core

    try:
        return Core.build(_settings())
    except PolicyError as exc:
        raise click.ClickException(f"TRANSIT_FARES: {exc}") from None


def _friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn known domain errors into one clear line instead of a traceback."""
    @wraps(fn)
    def inner(*args: Any, **kwargs: Any) -> Any:
        from sqlalchemy.exc import ArgumentError, OperationalError, ProgrammingError

        from fare_gateway.cards import CardError
        from fare_gateway.devices import DeviceError
        from fare_gateway.tokens import TokenError
        from ledger.domain import LedgerError
        try:
            return fn(*args, **kwargs)
        except (DeviceError, TokenError, LedgerError, CardError) as exc:
            raise click.ClickException(str(exc)) from None
        except ArgumentError as exc:
            raise click.ClickException(f"TRANSIT_DATABASE_URL is not usable: {exc}") from None
        except (OperationalError, ProgrammingError) as exc:
            raise click.ClickException(
                f"database error: {exc.orig}. Is TRANSIT_DATABASE_URL right, and has "
                "'transit db upgrade' been run?") from None
    return inner


@click.command()
def gateway() -> None:
    """Run the fare gateway: MQTT tap consumer and HTTP API."""
    from fare_gateway.wiring import run_gateway

    try:
        run_gateway(_settings())
    except PolicyError as exc:
        raise click.ClickException(f"TRANSIT_FARES: {exc}") from None


@click.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@_friendly
def db_upgrade(revision: str) -> None:
    """Create or migrate the database schema."""
    from ledger.adapters.db import make_engine
    from fare_gateway.schema import upgrade

    engine = make_engine(_settings().database_url)
    upgrade(engine, revision)
    engine.dispose()
    click.echo(f"database at {revision}: {engine.url.render_as_string(hide_password=True)}")


@click.group()
def devices() -> None:
    """Validators and their secrets."""


@devices.command("add")
@click.argument("device_id")
@click.option("--vehicle", required=True, help="The vehicle the validator is mounted in.")
@click.option("--secret", default=None, help="The device secret as 64 hex digits (else generated).")
@_friendly
def devices_add(device_id: str, vehicle: str, secret: str | None) -> None:
    """Register a validator; prints its secret when one is generated."""
    from fare_gateway.devices import add_device

    core = _core()
    with core.sessions.begin() as session:
        row, generated = add_device(session, device_id, vehicle, secret)
        secret_hex = row.plain_secret.hex()
    if generated:
        click.echo(secret_hex)
    else:
        click.echo(f"device {device_id} registered", err=True)


@devices.command("rotate")
@click.argument("device_id")
@click.option("--secret", default=None, help="The new secret as 64 hex digits (else generated).")
@click.option("--grace-hours", type=click.FloatRange(min=0), default=24.0, show_default=True,
              help="How long the old secret keeps verifying.")
@_friendly
def devices_rotate(device_id: str, secret: str | None, grace_hours: float) -> None:
    """Give a validator a new secret; prints it when one is generated."""
    from fare_gateway.devices import rotate_device

    core = _core()
    with core.sessions.begin() as session:
        new, generated = rotate_device(session, device_id, secret, grace_hours)
    if generated:
        click.echo(new.hex())
    else:
        click.echo(f"device {device_id} rotated", err=True)
    click.echo(f"the previous secret keeps verifying for {grace_hours:g} h", err=True)


@devices.command("revoke")
@click.argument("device_id")
@_friendly
def devices_revoke(device_id: str) -> None:
    """Revoke a validator: its taps and positions are refused from now on."""
    from fare_gateway.devices import revoke_device

    core = _core()
    with core.sessions.begin() as session:
        revoke_device(session, device_id)
    click.echo(f"device {device_id} revoked", err=True)


@devices.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
@_friendly
def devices_list(as_json: bool) -> None:
    """Registered validators (never their secrets)."""
    from datetime import UTC, datetime

    from fare_gateway.devices import list_devices

    def when(ms: int | None) -> str:
        if ms is None:
            return "-"
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    core = _core()
    with core.sessions() as session:
        rows = list_devices(session)
    if as_json:
        for d in rows:
            click.echo(json.dumps({
                "device_id": d.device_id, "vehicle_id": d.vehicle_id, "status": d.status,
                "key_created": when(d.key_created_ms), "previous_in_grace": d.previous_in_grace,
                "previous_valid_until": when(d.previous_valid_until_ms),
                "encrypted": d.encrypted}))
        return
    click.echo(f"{'DEVICE':<24} {'VEHICLE':<16} {'STATUS':<8} {'KEY CREATED':<20} GRACE")
    for d in rows:
        grace = f"until {when(d.previous_valid_until_ms)}" if d.previous_in_grace else "no"
        click.echo(f"{d.device_id:<24} {d.vehicle_id:<16} {d.status:<8} "
                   f"{when(d.key_created_ms):<20} {grace}")


@click.group()
def cards() -> None:
    """Cards: issue, top up, show."""


@cards.command("issue")
@click.argument("card")
@click.option("--category", default=None, help="Rider category (default: the policy's).")
@_friendly
def cards_issue(card: str, category: str | None) -> None:
    """Issue a card."""
    from fare_gateway.cards import issue_card
    from transit.wire import CARD_PATTERN

    if not CARD_PATTERN.fullmatch(card):
        raise click.ClickException("CARD must be 8-32 upper-case hex digits")
    core = _core()
    with core.sessions.begin() as session:
        row = issue_card(session, core.ledger, core.policy, card, category)
        category = row.category
    click.echo(json.dumps({"card": card, "category": category, "status": "active",
                           "balance": 0, "currency": core.policy.currency}))


@cards.command("topup")
@click.argument("card")
@click.argument("amount", type=int)
@click.option("--reference", required=True,
              help="Unique reference: the same one never credits twice.")
@_friendly
def cards_topup(card: str, amount: int, reference: str) -> None:
    """Top up a card (idempotent by reference)."""
    from fare_gateway.api import MAX_TOPUP, REFERENCE

    if not 0 < amount <= MAX_TOPUP:
        raise click.ClickException(f"AMOUNT must be between 1 and {MAX_TOPUP}")
    if not REFERENCE.fullmatch(reference):
        raise click.ClickException("--reference must be 1-64 characters of A-Z a-z 0-9 . _ : / -")
    from fare_gateway.cards import topup_card
    from ledger.services import retry_once_on_race

    core = _core()

    def work():  # type: ignore[no-untyped-def]
        with core.sessions.begin() as session:
            return topup_card(session, core.ledger, core.policy, card, amount, reference)

    result = retry_once_on_race(work)
    click.echo(json.dumps({"card": card, "balance": result.balance,
                           "currency": core.policy.currency, "amount": amount,
                           "reference": reference, "created": result.created}))


@cards.command("show")
@click.argument("card")
@_friendly
def cards_show(card: str) -> None:
    """Show a card's category, status and balance."""
    from ledger.adapters.models import Card

    core = _core()
    with core.sessions() as session:
        row = session.get(Card, card)
        if row is None:
            raise click.ClickException(f"no card {card}")
        click.echo(json.dumps({"card": row.card, "category": row.category,
                               "status": row.status, "balance": row.balance,
                               "currency": core.policy.currency}))


@click.group()
def tokens() -> None:
    """API tokens."""


@tokens.command("create")
@click.option("--role", required=True, type=click.Choice(["admin", "ops", "finance"]))
@click.option("--label", default="", help="Who or what the token is for.")
@click.option("--days", type=click.IntRange(min=1), default=None,
              help="Expire after this many days (default: never).")
@_friendly
def tokens_create(role: str, label: str, days: int | None) -> None:
    """Print a new API token (shown once; only its hash is stored)."""
    from fare_gateway.tokens import create_token

    core = _core()
    with core.sessions.begin() as session:
        token = create_token(session, role, label, days)
    click.echo(token)


@tokens.command("revoke")
@click.argument("token_id")
@_friendly
def tokens_revoke(token_id: str) -> None:
    """Revoke a token by its id (the hex after `tt_`, as `tokens list` shows it)."""
    from fare_gateway.tokens import revoke_token

    core = _core()
    with core.sessions.begin() as session:
        if not revoke_token(session, token_id):
            raise click.ClickException(f"no token {token_id}")
    click.echo(f"token {token_id} revoked")


@tokens.command("list")
@_friendly
def tokens_list() -> None:
    """List tokens: id, role, label, created, expires, revoked (never the secret)."""
    import time as _time

    from sqlalchemy import select

    from fare_gateway.adapters.models import ApiToken

    def when(ms: int | None) -> str:
        return "-" if ms is None else _time.strftime("%Y-%m-%dT%H:%M:%SZ", _time.gmtime(ms / 1000))

    with _core().sessions() as session:
        for t in session.scalars(select(ApiToken).order_by(ApiToken.created_ms)):
            click.echo(f"{t.id}\t{t.role}\t{t.label or '-'}\tcreated {when(t.created_ms)}\t"
                       f"expires {when(t.expires_ms)}\trevoked {when(t.revoked_ms)}")


@click.group()
def fares() -> None:
    """Fare policy files."""


@fares.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
def fares_check(file: str) -> None:
    """Validate a fare policy file."""
    try:
        policy = load_policy(file)
    except PolicyError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(f"{file}: ok ({len(policy.rules)} rules, categories "
               f"{', '.join(policy.categories)}, currency {policy.currency})")


@click.group()
def denylist() -> None:
    """The deny list validators enforce."""


@denylist.command("key")
@_friendly
def denylist_key() -> None:
    """Print the network's public key (hex) that validators verify the deny list with."""
    from fare_gateway.denylist import network_key

    click.echo(network_key(_core().sessions)[1].hex())


@denylist.command("show")
@_friendly
def denylist_show() -> None:
    """List the cards on the deny list, with why."""
    from sqlalchemy import select

    from fare_gateway.adapters.models import DenyEntry

    with _core().sessions() as session:
        for card, reason, version in session.execute(
                select(DenyEntry.card, DenyEntry.reason, DenyEntry.version)
                .order_by(DenyEntry.card)).all():
            click.echo(f"{card}\t{reason}\t{version}")


def _settler(core):  # type: ignore[no-untyped-def]
    from ledger.settlement import BusinessCalendar, Settler

    return Settler(BusinessCalendar(core.policy.timezone, core.policy.service_day_start_min),
                   core.policy.currency)


def _business_date(value: str) -> date:
    from ledger.settlement import SettlementError, parse_day

    try:
        return parse_day(value)
    except SettlementError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command()
@click.argument("business_date", metavar="DATE")
@click.option("--out", "out_dir", default=".", show_default=True,
              type=click.Path(file_okay=False), help="Folder for the CSV and manifest.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_friendly
def settle(business_date: str, out_dir: str, quiet: bool) -> None:
    """Write the settlement of business day DATE (YYYY-MM-DD): settlement-DATE.csv/.json."""
    from ledger.settlement import SettlementError, count_entries

    day = _business_date(business_date)
    core = _core()
    settler = _settler(core)
    try:
        with core.sessions.begin() as session:
            total = count_entries(session, settler.calendar, day)
            with click.progressbar(length=total, label=f"settling {day}", file=sys.stderr,
                                   hidden=quiet or total == 0) as bar:
                result = settler.settle(session, day, progress=bar.update)
    except SettlementError as exc:
        raise click.ClickException(str(exc)) from None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"settlement-{day}.csv").write_bytes(result.csv)
    (out / f"settlement-{day}.json").write_bytes(result.manifest_bytes)
    m = result.manifest
    click.echo(f"{out / f'settlement-{day}.csv'}: {m['lines']} lines, {m['entries']} entries, "
               f"sha256 {m['sha256']} ({m['status']})")


@click.command()
@click.argument("business_date", metavar="[DATE]", required=False)
@click.option("--dir", "files", default=None, type=click.Path(file_okay=False, exists=True),
              help="Also check the settlement files in this folder.")
@_friendly
def reconcile(business_date: str | None, files: str | None) -> None:
    """Check the ledger, its settlements and their chain; exit 1 on any mismatch."""
    from ledger.reconcile import reconcile as run

    day = _business_date(business_date) if business_date else None
    core = _core()
    with core.sessions() as session:
        report = run(session, _settler(core), day, Path(files) if files else None)
    click.echo(report.text())
    if not report.ok:
        sys.exit(1)
