"""Chained tables: records numbered without gaps, each fingerprinted together with the
one before it, up to a head that holds the newest link.

Used where a record removed must be noticed, and where records are few enough to be
written one transaction at a time: the audit trail, the quarantine. Appending locks the
chain's head row until the transaction ends, so concurrent writers take turns, and a
rolled-back transaction leaves no gap (its numbers were never committed). The head is
fingerprinted too: a record removed from the middle breaks the link after it, and the
newest records cut off no longer reach the head.

(Ledger entries are chained per card instead, `ledger.services`: the card is locked
when it is charged anyway, so that chain costs the tap path no lock of its own.)
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger.adapters.models import ChainHead
from ledger.adapters.sql import insert_ignore
from ledger.fingerprint import GENESIS, Fingerprints

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Link:
    """A record's place in its chain: its number, the fingerprint of the record before it
    and its own."""

    seq: int
    prev_mac: str
    mac: str


def link_mac(fingerprints: Fingerprints, chain: str, seq: int, prev_mac: str,
             payload: Sequence[object]) -> str:
    """The fingerprint of record `seq` of `chain`, holding `payload`, after `prev_mac`."""
    return fingerprints.of(f"chain:{chain}", seq, prev_mac, list(payload))


def head_mac(fingerprints: Fingerprints, chain: str, seq: int, last_mac: str) -> str:
    """The fingerprint of a chain's head: how many records, and the newest's fingerprint."""
    return fingerprints.of("chain_heads", chain, seq, last_mac)


def append(session: Session, fingerprints: Fingerprints, chain: str,
           payloads: Sequence[Sequence[object]]) -> list[Link]:
    """Number these records on from the chain's head and move the head past them.

    Locks the head row until the caller's transaction ends; call it last in the
    transaction, so that the lock is held for as short a time as possible. A head that
    does not match its fingerprint is never signed again (`_moved_head`).
    """
    if not payloads:
        return []
    table = ChainHead.__table__
    locked = (select(table.c.seq, table.c.last_mac, table.c.mac)
              .where(table.c.name == chain).with_for_update())
    head = session.execute(locked).first()
    if head is None:
        # The chain's first record makes its head; a concurrent first append waits on the
        # row's key, and then finds the head the other one made.
        session.execute(insert_ignore(session, table).values(
            name=chain, seq=0, last_mac=GENESIS,
            mac=head_mac(fingerprints, chain, 0, GENESIS)))
        head = session.execute(locked).one()
    seq, last = head.seq, head.last_mac
    links = []
    for payload in payloads:
        seq += 1
        mac = link_mac(fingerprints, chain, seq, last, payload)
        links.append(Link(seq, last, mac))
        last = mac
    session.execute(table.update().where(table.c.name == chain).values(
        seq=seq, last_mac=last,
        mac=_moved_head(fingerprints, chain, head.seq, head.last_mac, head.mac, seq, last)))
    return links


# Chains this process has already warned about.
_WARNED: set[str] = set()


def _moved_head(fingerprints: Fingerprints, chain: str, seq: int, last_mac: str,
                mac: str, new_seq: int, new_last: str) -> str:
    """The fingerprint of a head moved from (`seq`, `last_mac`) to (`new_seq`,
    `new_last`).

    A head whose fingerprint does not match was changed behind the application's back
    (moved back over records cut off the chain's end): signing it anew would make the
    cut look whole, so it keeps the fingerprint it has, which goes on failing, and
    `verify` goes on naming the head. The records are still appended: refusing them
    would let whoever can write the database stop every audited change.
    """
    if fingerprints.matches(mac, "chain_heads", chain, seq, last_mac):
        return head_mac(fingerprints, chain, new_seq, new_last)
    if chain not in _WARNED:
        _WARNED.add(chain)
        log.warning("the head of chain %s does not match its fingerprint (changed behind "
                    "the application's back?): it is not signed again; run transit "
                    "reconcile", chain)
    return mac


def verify(session: Session, fingerprints: Fingerprints, chain: str,
           records: Iterable[tuple[int, str, str, Sequence[object]]],
           what: str) -> list[str]:
    """Problems with a whole chain: `records` are (seq, prev_mac, mac, payload) in seq
    order; `what` names a record in the messages (`audit record`)."""
    problems: list[str] = []
    expected_seq, last = 1, GENESIS
    for seq, prev_mac, mac, payload in records:
        if seq != expected_seq:
            problems.append(f"{what}s {expected_seq} to {seq - 1} are missing"
                            if seq > expected_seq else f"{what} {seq} is out of order")
        elif prev_mac != last:
            problems.append(f"{what} {seq} does not follow the record before it "
                            "(a record was removed or replaced)")
        if not fingerprints.matches(mac, f"chain:{chain}", seq, prev_mac, list(payload)):
            problems.append(f"{what} {seq} was changed after it was written "
                            "(its fingerprint does not match)")
        expected_seq, last = seq + 1, mac
    head = session.execute(select(ChainHead.seq, ChainHead.last_mac, ChainHead.mac)
                           .where(ChainHead.name == chain)).first()
    count = expected_seq - 1
    if head is None:
        if count:
            problems.append(f"the {what}s' chain has no head: it was removed")
        return problems
    if not fingerprints.matches(head.mac, "chain_heads", chain, head.seq, head.last_mac):
        problems.append(f"the head of the {what}s' chain was changed")
    elif head.seq != count or head.last_mac != last:
        problems.append(f"the {what}s' chain ends at {count}, its head at {head.seq}: "
                        f"{what}s were removed from its end" if head.seq > count else
                        f"the {what}s' chain goes past its head ({count} against "
                        f"{head.seq})")
    return problems
