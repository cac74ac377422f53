"""`transit settle` and `transit reconcile`: the ledger's commands, built here with the
business calendar and currency of the fare policy in use (which the ledger does not read)."""

from __future__ import annotations

from fare_gateway.cli.core import policy
from ledger.cli import SettlementTerms, reconcile_command, settle_command
from ledger.settlement import BusinessCalendar
from transit.context import CommandContext


def settlement_terms(obj: CommandContext) -> SettlementTerms:
    """The business calendar and currency of the run's fare policy."""
    fares = policy(obj)
    return SettlementTerms(BusinessCalendar(fares.timezone, fares.service_day_start_min),
                           fares.currency)


settle = settle_command(settlement_terms)
reconcile = reconcile_command(settlement_terms)
