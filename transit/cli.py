"""The `transit` command: the root group, its shared context and its one error boundary.

Subcommands live in their packages and are declared as entry points of the group
`transit.commands` (pyproject.toml), each with the extra that installs what it needs in
brackets (`NAME = "package.module:command [extra]"`). A command's module is imported only
when that command runs or a listing shows it, so the on-bus install (agent extra only)
has a working `transit agent` without Flask or SQLAlchemy. The translators of
third-party failures are entry points too (`transit.errors`, see `transit.errors`). The
kernel thus names no package above it, not even as a string.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
import sys
import traceback
from collections.abc import Iterator
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import click

from transit import __version__
from transit.context import CommandContext
from transit.errors import (
    TransitError,
    explain,
    install_hint,
    load_translators,
    missing_package,
    one_line,
)
from transit.settings import Settings

COMMANDS = "transit.commands"
TRANSLATORS = "transit.errors"


@functools.cache
def subcommands() -> dict[str, EntryPoint]:
    """The subcommands installed here, by name: the entry points of `transit.commands`."""
    return {entry.name: entry for entry in entry_points(group=COMMANDS)}


@functools.cache
def translators() -> list[EntryPoint]:
    """The declared translators of failures into one line, in the order of their names."""
    return sorted(entry_points(group=TRANSLATORS), key=lambda entry: entry.name)


@functools.cache
def our_packages() -> frozenset[str]:
    """The top-level packages of this installation's commands: the kernel's own and those
    its declared commands and translators live in."""
    declared = [*entry_points(group=COMMANDS), *entry_points(group=TRANSLATORS)]
    return frozenset({__name__.partition(".")[0]}
                     | {entry.module.partition(".")[0] for entry in declared})


def extra(entry: EntryPoint) -> str:
    """The extra that installs what a declared command needs (its `[extra]`)."""
    return ",".join(entry.extras)


def ours(exc: ImportError) -> bool:
    """Whether the import that failed is of our own code (a fault, not a missing extra)."""
    return (exc.name or "").partition(".")[0] in our_packages()


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


class UsageFailure(Failure):
    """A command line click could not make sense of: one line, exit 2 as click's own."""

    exit_code = 2


def usage_line(exc: click.UsageError) -> str:
    """A usage error on one line, pointing to the help of the command it is about."""
    message = one_line(exc.format_message()).rstrip(".")
    if exc.ctx is None:
        return message
    return f"{message} (see '{exc.ctx.command_path} --help')"


class RootGroup(Group):
    """The `transit` group: declared subcommands, loaded lazily, and the error boundary
    around parsing and running them."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(subcommands()))

    def declared(self, name: str) -> EntryPoint | None:
        """The entry point of the subcommand `name`, unless the group holds one itself."""
        return None if name in self.commands else subcommands().get(name)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        entry = self.declared(name)
        if entry is None:
            return super().get_command(ctx, name)
        try:
            return self.load(entry)
        except ImportError as exc:
            if ours(exc):
                raise
            raise TransitError(missing_package(exc, name, extra(entry))) from None

    @staticmethod
    def load(entry: EntryPoint) -> click.Command:
        """Import a declared subcommand from its package."""
        command = entry.load()
        if not isinstance(command, click.Command):
            raise TypeError(f"the entry point {entry.name} = {entry.value!r} of {COMMANDS} "
                            "is not a click command")
        return command

    def listed_command(self, ctx: click.Context, name: str) -> click.Command | None:
        try:
            return self.get_command(ctx, name)
        except TransitError:  # a missing extra (our own broken code is raised as it is)
            entry = self.declared(name)
            assert entry is not None
            return click.Command(name, short_help="(not installed here: "
                                                  f"{install_hint(extra(entry))})")

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # Parsing runs `--help`, which loads every command to list it.
        with self.boundary(ctx):
            return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        with self.boundary(ctx):
            return super().invoke(ctx)

    @contextlib.contextmanager
    def boundary(self, ctx: click.Context) -> Iterator[None]:
        """Turn every failure inside into one line (click's exits and Ctrl-C pass)."""
        try:
            yield
        except click.UsageError as exc:
            raise UsageFailure(usage_line(exc)) from None
        except (click.ClickException, click.exceptions.Exit, click.Abort, BrokenPipeError):
            raise
        except Exception as exc:  # the boundary: every other failure becomes one line
            raise self.failure(ctx, exc) from None

    def failure(self, ctx: click.Context, exc: Exception) -> Failure:
        """The one-line report of `exc`, with its traceback first when debugging."""
        obj = ctx.obj if isinstance(ctx.obj, CommandContext) else None
        debug = obj.debug if obj is not None else int(ctx.params.get("verbose") or 0) >= 2
        name = ctx.invoked_subcommand or ""
        entry = self.declared(name)
        if isinstance(exc, ImportError) and entry is not None and not ours(exc):
            line = missing_package(exc, name, extra(entry))
        else:
            line = explain(exc, load_translators(translators()))
        if debug:
            traceback.print_exception(exc, file=sys.stderr)
        return Failure(line)


@click.group("transit", cls=RootGroup,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="transit")
# Eager, so that `transit -vv --help` knows it must show a traceback while listing.
@click.option("-v", "--verbose", count=True, is_eager=True,
              help="More log output: -v for INFO, -vv for DEBUG and tracebacks.")
@click.pass_context
def cli(ctx: click.Context, verbose: int) -> None:
    """Cashless bus fares and live bus tracking."""
    settings = Settings.from_env()
    obj = CommandContext(settings, verbose)
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
