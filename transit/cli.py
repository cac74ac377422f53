"""The `transit` command. Subcommands load their package only when run, so the on-bus
install (agent extra only) has a working `transit agent` without Flask or SQLAlchemy."""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import Any

import click

from transit import __version__

# name -> "module:attribute" of a click command; imported on first use.
SUBCOMMANDS = {
    "demo": "hardware_sim.demo:demo",
    "agent": "validator_agent.cli:agent",
    "gateway": "fare_gateway.cli:gateway",
    "db": "fare_gateway.cli:db",
    "devices": "fare_gateway.cli:devices",
    "cards": "fare_gateway.cli:cards",
    "tokens": "fare_gateway.cli:tokens",
    "fares": "fare_gateway.cli:fares",
    "denylist": "fare_gateway.cli:denylist",
    "settle": "fare_gateway.cli:settle",
    "gtfs": "tracking.cli:gtfs",
    "reconcile": "fare_gateway.cli:reconcile",
    "broker": "fare_gateway.broker_config:broker",
}


class LazyGroup(click.Group):
    """A group whose subcommands live in other packages and import lazily."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(SUBCOMMANDS))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in SUBCOMMANDS:
            module, _, attr = SUBCOMMANDS[name].partition(":")
            try:
                return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]
            except ImportError as exc:
                raise click.ClickException(
                    f"'transit {name}' needs a package that is not installed ({exc.name}); "
                    "install the matching extra, e.g. pip install 'surabaya-transit[gateway]'"
                ) from None
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ModuleNotFoundError as exc:
            # A subcommand reached for a package its extra did not install.
            raise click.ClickException(
                f"this command needs '{exc.name}', which is not installed; install the "
                "matching extra, e.g. pip install 'surabaya-transit[gateway]'") from None


@click.group(cls=LazyGroup)
@click.version_option(__version__, prog_name="transit")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """Cashless bus fares and live bus tracking."""
    name = os.environ.get("TRANSIT_LOG_LEVEL", "INFO").upper()
    level = logging.INFO - 10 * (verbose - 1) if verbose else getattr(logging, name, logging.INFO)
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Alembic narrates every plugin it loads at INFO; keep it to what matters.
    logging.getLogger("alembic").setLevel(max(level, logging.WARNING))


def main(argv: list[str] | None = None) -> Any:
    """Entry point of the `transit` console script."""
    return cli.main(args=argv, prog_name="transit")
