"""A rider as the audit trail names one: by account number, never by e-mail."""

from __future__ import annotations

from ledger.audit import Actor


def rider_actor(account_id: int, source: str) -> Actor:
    """The rider of account `account_id`, acting from `source` (an address).

    The e-mail is left out on purpose: deleting an account erases it, and a chained
    record could not be edited to erase it later.
    """
    return Actor("rider", f"account:{account_id}", "", "rider", source[:100])
