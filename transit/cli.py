"""The `transit` command: the root group, its shared context and its one error boundary.

Subcommands live in their packages and load only when run, so the on-bus install
(agent extra only) has a working `transit agent` without Flask or SQLAlchemy. The
kernel names the packages above it only as strings here (the subcommands, what they
provide to each other, and their error translators: see `transit.errors`); it never
imports them.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import sys
import traceback
from dataclasses import dataclass
from typing import Any

import click

from transit import __version__
from transit.context import CommandContext
from transit.errors import TransitError, explain, load_translators, missing_package, one_line
from transit.settings import Settings


@dataclass(frozen=True)
class Subcommand:
    """Where a subcommand's click command lives, and the extra that installs its needs."""

    target: str  # "module:attribute"
    extra: str


SUBCOMMANDS = {
    "demo": Subcommand("hardware_sim.demo:demo", "demo"),
    "agent": Subcommand("validator_agent.cli:agent", "agent"),
    "gateway": Subcommand("fare_gateway.cli.gateway:gateway", "gateway"),
    "db": Subcommand("fare_gateway.cli.db:db", "gateway"),
    "devices": Subcommand("fare_gateway.cli.devices:devices", "gateway"),
    "cards": Subcommand("fare_gateway.cli.cards:cards", "gateway"),
    "tokens": Subcommand("fare_gateway.cli.tokens:tokens", "gateway"),
    "fares": Subcommand("fare_gateway.cli.fares:fares", "gateway"),
    "denylist": Subcommand("fare_gateway.cli.denylist:denylist", "gateway"),
    "broker": Subcommand("fare_gateway.cli.broker:broker", "gateway"),
    "gtfs": Subcommand("tracking.cli:gtfs", "gateway"),
    "settle": Subcommand("ledger.cli:settle", "gateway"),
    "reconcile": Subcommand("ledger.cli:reconcile", "gateway"),
}

# What one package's commands ask the context for, and the package that makes it.
PROVIDERS = {
    "fare_terms": "fare_gateway.cli.core:fare_terms",
}

# Turn the third-party failures of each package's surroundings into one line; tried in
# this order, skipped where the package (or the library it knows) is not installed.
TRANSLATORS = (
    "fare_gateway.cli.core:explain",
    "tracking.cli:explain",
    "ledger.cli:explain",
)

OUR_PACKAGES = {"transit", "ledger", "tracking", "fare_gateway", "validator_agent",
                "hardware_sim"}


def ours(exc: ImportError) -> bool:
    """Whether the import that failed is of our own code (a fault, not a missing extra)."""
    return (exc.name or "").partition(".")[0] in OUR_PACKAGES


def describe(command: click.Command) -> str:
    """A command's description for a listing: its first paragraph, whole, on one line."""
    text = command.short_help or inspect.cleandoc(command.help or "")
    return one_line(text.split("\f")[0].split("\n\n")[0].replace("\b", ""))


class Group(click.Group):
    """A group whose listing gives every command's description in full on one line.

    click cuts descriptions to the terminal's width (80 columns when not a terminal);
    a listing people read to find the right command should not end in "...".
    """

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.listed_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, describe(command)))
        if not rows:
            return
        width = max(len(name) for name, _ in rows)
        with formatter.section("Commands"):
            for name, text in rows:
                formatter.write(f"{'':>{formatter.current_indent}}{name:<{width}}  {text}\n")

    def listed_command(self, ctx: click.Context, name: str) -> click.Command | None:
        """The command as the listing shows it."""
        return self.get_command(ctx, name)


class Failure(click.ClickException):
    """A failure reported as the one `Error:` line (contract section 4)."""


class RootGroup(Group):
    """The `transit` group: lazy subcommands and the error boundary around them."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(SUBCOMMANDS))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in SUBCOMMANDS:
            return super().get_command(ctx, name)
        try:
            return self.load(name)
        except ImportError as exc:
            if not ours(exc):
                raise TransitError(missing_package(exc, name, SUBCOMMANDS[name].extra)
                                   ) from None
            raise

    def load(self, name: str) -> click.Command:
        """Import the subcommand `name` from its package."""
        module, _, attr = SUBCOMMANDS[name].target.partition(":")
        command = getattr(importlib.import_module(module), attr)
        assert isinstance(command, click.Command)
        return command

    def listed_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in SUBCOMMANDS:
            return super().get_command(ctx, name)
        try:
            return self.load(name)
        except ImportError:
            extra = SUBCOMMANDS[name].extra
            return click.Command(name, short_help="(not installed here: pip install "
                                                  f"'surabaya-transit[{extra}]')")

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort, BrokenPipeError):
            raise
        except Exception as exc:  # the boundary: every other failure becomes one line
            raise self.failure(ctx, exc) from None

    def failure(self, ctx: click.Context, exc: Exception) -> Failure:
        """The one-line report of `exc`, with its traceback first when debugging."""
        obj = ctx.obj if isinstance(ctx.obj, CommandContext) else None
        debug = obj.debug if obj is not None else int(ctx.params.get("verbose") or 0) >= 2
        name = ctx.invoked_subcommand or ""
        if isinstance(exc, ImportError) and name in SUBCOMMANDS and not ours(exc):
            line = missing_package(exc, name, SUBCOMMANDS[name].extra)
        else:
            line = explain(exc, load_translators(TRANSLATORS))
        if debug:
            traceback.print_exception(exc, file=sys.stderr)
        return Failure(line)


@click.group(cls=RootGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="transit")
@click.option("-v", "--verbose", count=True,
              help="More log output: -v for INFO, -vv for DEBUG and tracebacks.")
@click.pass_context
def cli(ctx: click.Context, verbose: int) -> None:
    """Cashless bus fares and live bus tracking."""
    settings = Settings.from_env()
    obj = CommandContext(settings, verbose, PROVIDERS)
    ctx.obj = obj
    ctx.call_on_close(obj.close)
    level = logging.INFO - 10 * (verbose - 1) if verbose else settings.log_level_number
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Alembic narrates every plugin it loads at INFO; keep it to what matters.
    logging.getLogger("alembic").setLevel(max(level, logging.WARNING))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `transit` console script; returns the exit status."""
    return run(cli, argv)


def run(group: click.Command, argv: list[str] | None = None) -> int:
    """Run `group` as `transit`: its exit status, failures in one line, 130 for Ctrl-C."""
    try:
        result = group.main(args=argv, prog_name="transit", standalone_mode=False)
    except click.Abort:  # Ctrl-C (click turns KeyboardInterrupt into Abort)
        return 130
    except KeyboardInterrupt:  # Ctrl-C while click was not listening
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except BrokenPipeError:  # the reader of our output went away (`| head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return result if isinstance(result, int) else 0
