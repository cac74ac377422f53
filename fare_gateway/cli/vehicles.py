"""`transit vehicles`: what the back office knows of each vehicle beyond its validators.

`transit vehicles capacity V N` sets how many riders vehicle V carries (the occupancy
the map and the feeds show is a share of it; 80 when not set); each change
(`vehicle.capacity_set`) goes into the audit trail in its own transaction, as made by
whoever runs the command.
"""

from __future__ import annotations

import re
import time

import click

from fare_gateway.cli.core import core
from ledger import audit
from tracking.occupancy import DEFAULT_CAPACITY, MAX_CAPACITY
from transit.cli import Group
from transit.context import CommandContext, pass_transit

VEHICLE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")  # as the wire messages allow


def _vehicle_id(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    if not VEHICLE_ID.match(value):
        raise click.BadParameter("a vehicle id is 1 to 64 letters, digits, '.', '_' or '-'")
    return value


@click.group(cls=Group)
def vehicles() -> None:
    """Vehicles: how many riders each carries."""


@vehicles.command("capacity")
@click.argument("vehicle_id", callback=_vehicle_id)
@click.argument("riders", required=False, type=click.IntRange(1, MAX_CAPACITY))
@pass_transit
def vehicles_capacity(obj: CommandContext, vehicle_id: str, riders: int | None) -> None:
    """Set how many riders VEHICLE_ID carries (1 to 500), seated and standing; without
    RIDERS, print it."""
    from sqlalchemy import select

    from ledger.adapters.bulk import bulk_insert
    from tracking.adapters.models import VehicleCapacity

    the_core = core(obj)
    if riders is None:
        with the_core.sessions() as session:
            row = session.scalar(select(VehicleCapacity)
                                 .where(VehicleCapacity.vehicle_id == vehicle_id))
            shown = (f"{row.capacity}" if row is not None
                     else f"{DEFAULT_CAPACITY} (not set: the default)")
        click.echo(f"vehicle {vehicle_id} carries {shown} riders")
        return
    actor = audit.Actor.command()
    now = int(time.time() * 1000)
    with the_core.sessions.begin() as session:
        # Insert first, skipping a row that is there: two first commands at once would
        # both find no row to lock and the second insert would fail on the key. Here
        # the second waits for the first's commit, then updates its row.
        made = bulk_insert(session, VehicleCapacity.__table__, [{
            "vehicle_id": vehicle_id, "capacity": riders, "set_ms": now,
            "set_by": actor.name[:100]}], ignore_conflicts=True, returning=("vehicle_id",))
        was = None
        if not made:
            row = session.get(VehicleCapacity, vehicle_id, with_for_update=True)
            assert row is not None  # it conflicted: it is there, and rows stay
            was = row.capacity
            row.capacity, row.set_ms, row.set_by = riders, now, actor.name[:100]
            session.flush()
        if was != riders:
            audit.record(session, the_core.ledger.fingerprints, actor,
                         "vehicle.capacity_set", vehicle_id, {"from": was, "to": riders})
    click.echo(f"vehicle {vehicle_id} carries {riders} riders")
