"""What the gateway's subcommands share: the fare policy and the `Core`, built once per
run from the shared context; and the translator of the gateway's expected failures into
one line."""

from __future__ import annotations

from fare_gateway.cards import CardError
from fare_gateway.devices import DeviceError
from fare_gateway.fares.policy import FarePolicy, PolicyError, policy_from_setting
from fare_gateway.tokens import TokenError
from fare_gateway.wiring import Core
from ledger.cli import database_url
from transit.context import CommandContext
from transit.errors import TransitError


def policy(obj: CommandContext) -> FarePolicy:
    """The fare policy of `TRANSIT_FARES`, read once per run."""
    def load() -> FarePolicy:
        try:
            return policy_from_setting(obj.settings.fares)
        except PolicyError as exc:
            raise TransitError(f"TRANSIT_FARES: {exc}") from None

    return obj.once("fare_gateway.policy", load)


def core(obj: CommandContext, *, create: bool = False) -> Core:
    """The gateway's database-side services, built once per run and closed at its end."""
    policy(obj)  # a policy that cannot be used is named before the database is looked for
    database_url(obj, create=create)
    return obj.once("fare_gateway.core", lambda: Core.build(obj.settings),
                    close=lambda built: built.engine.dispose())


def explain(exc: BaseException) -> str | None:
    """One line for the gateway's refusals and its migrations' failures; None for others."""
    if isinstance(exc, (DeviceError, TokenError, CardError)):
        return str(exc)
    if isinstance(exc, PolicyError):
        return f"TRANSIT_FARES: {exc}"
    try:
        from alembic.util import CommandError
    except ImportError:  # no gateway extra: nothing of Alembic can have failed
        return None
    if isinstance(exc, CommandError):
        return f"database migration failed: {exc}"
    return None
