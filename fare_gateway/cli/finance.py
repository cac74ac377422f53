"""`transit settle` and `transit reconcile`: the ledger's commands, built here with the
business calendar and currency of the fare policy in use (which the ledger does not read),
and, for reconcile, the checks of the gateway's own tables that decide money."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from fare_gateway.cli.core import policy
from ledger.cli import SettlementTerms, reconcile_command, settle_command
from ledger.settlement import BusinessCalendar
from transit.context import CommandContext

if TYPE_CHECKING:
    from ledger.reconcile import Check


def settlement_terms(obj: CommandContext) -> SettlementTerms:
    """The business calendar and currency of the run's fare policy."""
    fares = policy(obj)
    return SettlementTerms(BusinessCalendar(fares.timezone, fares.service_day_start_min),
                           fares.currency)


def gateway_checks(obj: CommandContext) -> Sequence[Check]:
    """The checks of taps, the quarantine, the deny list (judged by the run's fare policy),
    routes, tokens and adjustments."""
    # Imported when reconcile runs: the checks read every table the gateway has.
    from fare_gateway.fares.loaded import policy_sha256
    from fare_gateway.integrity import gateway_checks as checks

    return checks(policy(obj), policy_sha256(obj.settings.fares))


settle = settle_command(settlement_terms)
reconcile = reconcile_command(settlement_terms, gateway_checks)
