"""What every `transit` subcommand shares, passed down through click as `ctx.obj`.

The root group builds one `CommandContext`: the settings (read once), how verbose to
be, and a place where a package keeps what it built from the settings (the gateway's
`Core`, an engine) so that it is built once per run and closed at the end. What a
lower package needs from a higher one (the ledger's commands need the fare policy's
currency and business calendar) is asked for by name and provided by the higher
package, named lazily as a "module:function" string by the root group, so that no
package imports one above it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from transit.errors import TransitError
from transit.settings import Settings

T = TypeVar("T")


@dataclass(frozen=True)
class FareTerms:
    """What the ledger's commands take from the fare policy: currency and business day."""

    currency: str
    timezone: str
    service_day_start_min: int


class CommandContext:
    """The settings and the objects built from them, shared by one run's commands."""

    def __init__(self, settings: Settings, verbosity: int = 0,
                 providers: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.verbosity = verbosity
        self.providers = dict(providers or {})
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

    def provide(self, name: str) -> Any:
        """What the package named for `name` in `providers` makes from this context."""
        target = self.providers.get(name)
        if target is None:
            raise TransitError(f"nothing in this installation provides {name!r}")
        module, _, attr = target.partition(":")
        return self.once(f"provided:{name}",
                         lambda: getattr(importlib.import_module(module), attr)(self))

    def fare_terms(self) -> FareTerms:
        """The currency and business calendar of the fare policy in use."""
        terms = self.provide("fare_terms")
        assert isinstance(terms, FareTerms)
        return terms

    def close(self) -> None:
        """End what was built, newest first."""
        while self._closers:
            self._closers.pop()()


pass_transit = click.make_pass_decorator(CommandContext)
"""Decorator handing a command the run's `CommandContext` as its first argument."""
