"""The ledger's subcommands of `transit` (`settle`, `reconcile`), the database every
command opens, and the translator of database failures into one line.

The currency and the business calendar come from the fare policy, which the ledger
does not read: `settle_command` and `reconcile_command` build the commands around a
function that gives them (`SettlementTerms`), and the composition root
(`fare_gateway/cli/finance.py`) builds them with the fare policy's.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import click
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    InterfaceError,
    OperationalError,
    ProgrammingError,
)

from ledger.adapters.db import make_engine, session_factory
from ledger.domain import LedgerError
from ledger.fingerprint import Fingerprints
from ledger.settlement import BusinessCalendar, SettlementError, Settler, parse_day
from transit.context import CommandContext, pass_transit
from transit.errors import TransitError, one_line

if TYPE_CHECKING:
    from ledger.reconcile import Check

SETTING = "TRANSIT_DATABASE_URL"


# -- the database of a run -------------------------------------------------------------

def sqlite_file(url: URL) -> Path | None:
    """The absolute path of an SQLite database file, or None for any other database."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    if url.database.startswith("file:"):  # a URI filename: leave it to SQLite
        return None
    return Path(url.database).expanduser().resolve()


def database_url(obj: CommandContext, *, create: bool = False) -> str:
    """The run's database URL, checked once: an SQLite file must exist unless `create`.

    Only the commands that create a schema (`db upgrade`, the demo) may create the
    file; any other command meeting no file would leave an empty database behind.
    """
    def check() -> str:
        settings = obj.settings
        path = sqlite_file(make_url(settings.database_url))
        if path is None:
            return settings.database_url
        if settings.is_default(SETTING):
            click.echo(f"database: {path} (the default; set {SETTING} to use another)",
                       err=True)
        if create and not path.parent.is_dir():
            raise TransitError(f"no folder {path.parent} for the database {path.name}: "
                               f"create it, or set {SETTING}")
        if not create and not path.exists():
            raise TransitError(f"no database at {path}: run transit db upgrade or set "
                               f"{SETTING}")
        return settings.database_url

    return obj.once("ledger.database_url", check)


def engine(obj: CommandContext, *, create: bool = False) -> Engine:
    """The run's engine, made once and disposed of when the command ends."""
    url = database_url(obj, create=create)
    return obj.once("ledger.engine", lambda: make_engine(url), close=Engine.dispose)


def explain(exc: BaseException) -> str | None:
    """One line for a database failure or a refusal of the ledger; None for others."""
    if isinstance(exc, ArgumentError):  # also an unknown dialect (NoSuchModuleError)
        return f"{SETTING} is not usable: {one_line(exc)}"
    if isinstance(exc, (LedgerError, SettlementError)):
        return str(exc)
    if isinstance(exc, (OperationalError, ProgrammingError, InterfaceError)):
        cause = one_line((str(exc.orig).splitlines() or [type(exc.orig).__name__])[0])
        if "no such table" in cause or ("relation" in cause and "does not exist" in cause):
            return f"the database has no schema yet ({cause}): run transit db upgrade"
        if isinstance(exc, ProgrammingError):
            return (f"the database schema does not match this version ({cause}): run "
                    "transit db upgrade")
        return (f"database error: {cause}. Is {SETTING} right, the database running, and "
                "has 'transit db upgrade' been run?")
    if isinstance(exc, DBAPIError):
        return f"database error: {one_line(exc.orig)}"
    return None


# -- settle and reconcile ----------------------------------------------------------------

class BusinessDate(click.ParamType):
    """A business date written YYYY-MM-DD, within the range the ledger settles."""

    name = "DATE"

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> date:
        if isinstance(value, date):
            return value
        try:
            return parse_day(str(value))
        except SettlementError as exc:
            self.fail(str(exc), param, ctx)


@dataclass(frozen=True)
class SettlementTerms:
    """What settlement takes from the fare policy: the business calendar and the currency."""

    calendar: BusinessCalendar
    currency: str


Terms = Callable[[CommandContext], SettlementTerms]
"""The settlement terms of a run, from its context (given by the composition root)."""


def settle_command(terms: Terms) -> click.Command:
    """`transit settle`, settling in the business calendar and currency of `terms`."""

    @click.command("settle")
    @click.argument("business_date", metavar="DATE", type=BusinessDate())
    @click.option("--out", "out_dir", default=".", show_default=True,
                  type=click.Path(file_okay=False), help="Folder for the CSV and manifest.")
    @click.option("--quiet", is_flag=True, help="No progress bar.")
    @pass_transit
    def settle(obj: CommandContext, business_date: date, out_dir: str, quiet: bool) -> None:
        """Write the settlement of business day DATE (YYYY-MM-DD): settlement-DATE.csv/.json."""
        from ledger.audit import Actor
        from ledger.settlement import count_entries, settle_day

        day = business_date
        the_settler = settler(terms(obj), fingerprints(obj))
        sessions = session_factory(engine(obj))
        with sessions() as session:  # only the bar's length: settling reads the day itself
            total = count_entries(session, the_settler.calendar, day)
        with click.progressbar(length=total, label=f"settling {day}", file=sys.stderr,
                               hidden=quiet or total == 0) as bar:
            result = settle_day(sessions, the_settler, day, progress=bar.update,
                                actor=Actor.command())
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"settlement-{day}.csv").write_bytes(result.csv)
        (out / f"settlement-{day}.json").write_bytes(result.manifest_bytes)
        m = result.manifest
        click.echo(f"{out / f'settlement-{day}.csv'}: {m['lines']} lines, {m['entries']} "
                   f"entries, sha256 {m['sha256']} ({m['status']})")

    return settle


Checks = Callable[[CommandContext], Sequence["Check"]]
"""The checks `transit reconcile` adds to the ledger's own (given by the composition root,
made from the run's context only when the command runs)."""


def reconcile_command(terms: Terms, checks: Checks = lambda _obj: ()) -> click.Command:
    """`transit reconcile`, in the business calendar and currency of `terms`, with the
    extra `checks` of the tables the ledger does not own."""

    @click.command("reconcile")
    @click.argument("business_date", metavar="[DATE]", required=False, type=BusinessDate())
    @click.option("--dir", "files", default=None,
                  type=click.Path(file_okay=False, exists=True),
                  help="Also check the settlement files in this folder (exit 1 if none is).")
    @pass_transit
    def reconcile(obj: CommandContext, business_date: date | None, files: str | None) -> None:
        """Check the ledger, its settlements and their chain; exit 1 on any mismatch."""
        from ledger.reconcile import reconcile as run

        keyed = fingerprints(obj)
        the_settler = settler(terms(obj), keyed)
        with session_factory(engine(obj))() as session:
            report = run(session, the_settler, business_date, Path(files) if files else None,
                         fingerprints=keyed, checks=checks(obj))
        click.echo(report.text())
        if not report.ok:
            sys.exit(1)

    return reconcile


def fingerprints(obj: CommandContext) -> Fingerprints:
    """The run's fingerprints, under TRANSIT_SECRET_KEY (unkeyed without it)."""
    return Fingerprints(obj.settings.secret_key)


def settler(terms: SettlementTerms, keyed: Fingerprints) -> Settler:
    """The settler of these terms, fingerprinting its records with `keyed`."""
    return Settler(terms.calendar, terms.currency, fingerprints=keyed)
