"""What every `transit` subcommand shares, passed down through click as `ctx.obj`.

The root group builds one `CommandContext`: the settings (read once), how verbose to
be, and a place where a package keeps what it built from the settings (the gateway's
`Core`, an engine) so that it is built once per run and closed at the end. What a
lower package's command needs from a higher one is handed to it when the higher
package builds that command (the ledger's `settle` gets the fare policy's calendar from
the gateway's command line), never looked up here: the kernel knows no package above it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from transit.settings import Settings

T = TypeVar("T")


class CommandContext:
    """The settings and the objects built from them, shared by one run's commands."""

    def __init__(self, settings: Settings, verbosity: int = 0) -> None:
        self.settings = settings
        self.verbosity = verbosity
        self._built: dict[str, Any] = {}
        self._closers: list[Callable[[], None]] = []

    @property
    def debug(self) -> bool:
        """Whether failures show their traceback (`-vv` or TRANSIT_LOG_LEVEL=DEBUG)."""
        return self.verbosity >= 2 or self.settings.log_level == "DEBUG"

    def once(self, name: str, build: Callable[[], T],
             close: Callable[[T], None] | None = None) -> T:
        """The object called `name`, built by `build` on first use; `close` ends it."""
        if name not in self._built:
            value = build()
            self._built[name] = value
            if close is not None:
                self._closers.append(lambda: close(value))
        return self._built[name]  # type: ignore[no-any-return]

    def close(self) -> None:
        """End what was built, newest first."""
        while self._closers:
            self._closers.pop()()


pass_transit = click.make_pass_decorator(CommandContext)
"""Decorator handing a command the run's `CommandContext` as its first argument."""
