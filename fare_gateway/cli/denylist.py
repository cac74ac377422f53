"""`transit denylist`: the deny list validators enforce."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click
from sqlalchemy.orm import Session, sessionmaker

from fare_gateway.cli.core import core
from transit.cli import Group
from transit.context import CommandContext, pass_transit


class _Audited:
    """Sessions whose transaction also writes one audit record, last, before it commits:
    `rotate_network_key` opens its own transaction, and the rotation must be recorded in
    that one (a rotation that fails records nothing)."""

    def __init__(self, sessions: sessionmaker[Session],
                 record: Callable[[Session], object]) -> None:
        self._sessions = sessions
        self._record = record

    @contextmanager
    def begin(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session
            self._record(session)


@click.group(cls=Group)
def denylist() -> None:
    """The deny list validators enforce, and the key they verify it with."""


@denylist.command("key")
@click.option("--id", "show_id", is_flag=True,
              help="Print the key's id (as deny-list messages name it) instead.")
@pass_transit
def denylist_key(obj: CommandContext, show_id: bool) -> None:
    """Print the network's public key (hex) that validators verify the deny list with.

    The output is a key file for `transit agent --denylist-key-file`.
    """
    from fare_gateway.denylist import network_key
    from transit.denylist import key_id

    public = network_key(core(obj).sessions, obj.settings.secret_key)[1]
    if show_id:
        click.echo(key_id(public))
        return
    click.echo(public.hex())


@denylist.command("rotate-key")
@pass_transit
def denylist_rotate_key(obj: CommandContext) -> None:
    """Replace the network's signing key and print the new public key (hex).

    The old private key is destroyed. Running gateways publish the list signed with the
    new key within seconds; each validator needs the new public key (its
    --denylist-key-file) and a restart, and then stops trusting the version of a list
    built under the old key: it keeps refusing that list's cards until the list signed
    with the new key arrives.
    """
    from fare_gateway.adapters.models import SigningKey
    from fare_gateway.denylist import KEY_NAME, rotate_network_key
    from ledger import audit
    from transit.denylist import key_id

    the_core = core(obj)

    def record(session: Session) -> None:
        # The row as the rotation left it in this transaction: the new key's.
        row = session.get(SigningKey, KEY_NAME)
        detail = {} if row is None else {"key_id": key_id(bytes.fromhex(row.public_hex))}
        audit.record(session, the_core.ledger.fingerprints, audit.Actor.command(),
                     "denylist.key_rotated", "denylist", detail)

    public = rotate_network_key(_Audited(the_core.sessions, record),  # type: ignore[arg-type]
                                obj.settings.secret_key)
    click.echo(public.hex())
    click.echo(f"new deny-list key {key_id(public)}: give validators this public key and "
               "restart them", err=True)


@denylist.command("show")
@pass_transit
def denylist_show(obj: CommandContext) -> None:
    """List the cards on the deny list, with why."""
    from sqlalchemy import select

    from fare_gateway.adapters.models import DenyEntry

    with core(obj).sessions() as session:
        for card, reason, version in session.execute(
                select(DenyEntry.card, DenyEntry.reason, DenyEntry.version)
                .order_by(DenyEntry.card)).all():
            click.echo(f"{card}\t{reason}\t{version}")
