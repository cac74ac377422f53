"""`transit devices`: validators and their secrets.

Each change (`device.added`, `device.moved`, `device.key_rotated`, `device.revoked`) is
written to the audit trail in the change's own transaction, after its writes, as made by
whoever runs the command; a secret never is, only whether it was generated here.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click
from sqlalchemy.orm import Session

from fare_gateway.cli.core import core
from fare_gateway.wiring import Core
from ledger import audit
from transit.cli import Group
from transit.context import CommandContext, pass_transit


def _audit(the_core: Core, session: Session, action: str, device_id: str,
           detail: dict[str, object]) -> None:
    """Record a change of a device, made by whoever runs this command."""
    audit.record(session, the_core.ledger.fingerprints, audit.Actor.command(), action,
                 device_id, detail)


@click.group(cls=Group)
def devices() -> None:
    """Validators and their secrets (sealed at rest with TRANSIT_SECRET_KEY)."""


@devices.command("add")
@click.argument("device_id")
@click.option("--vehicle", required=True, help="The vehicle the validator is mounted in.")
@click.option("--secret", default=None, help="The device secret as 64 hex digits (else generated).")
@pass_transit
def devices_add(obj: CommandContext, device_id: str, vehicle: str, secret: str | None) -> None:
    """Register a validator; prints its secret when one is generated."""
    from fare_gateway.devices import add_device

    the_core = core(obj)
    with the_core.sessions.begin() as session:
        row, generated = add_device(session, device_id, vehicle, secret,
                                    key=obj.settings.secret_key)
        secret_hex = row.plain_secret.hex()  # type: ignore[attr-defined]
        _audit(the_core, session, "device.added", device_id,
               {"vehicle_id": vehicle, "secret": "generated" if generated else "given",
                "sealed": obj.settings.secret_key is not None})
    if generated:
        click.echo(secret_hex)
    else:
        click.echo(f"device {device_id} registered", err=True)


@devices.command("rotate")
@click.argument("device_id")
@click.option("--secret", default=None, help="The new secret as 64 hex digits (else generated).")
@click.option("--grace-hours", type=click.FloatRange(min=0), default=24.0, show_default=True,
              help="How long the old secret keeps verifying.")
@pass_transit
def devices_rotate(obj: CommandContext, device_id: str, secret: str | None,
                   grace_hours: float) -> None:
    """Give a validator a new secret; prints it when one is generated."""
    from fare_gateway.devices import rotate_device

    the_core = core(obj)
    with the_core.sessions.begin() as session:
        new, generated = rotate_device(session, device_id, secret, grace_hours,
                                       key=obj.settings.secret_key)
        _audit(the_core, session, "device.key_rotated", device_id,
               {"secret": "generated" if generated else "given",
                "grace_hours": grace_hours})
    if generated:
        click.echo(new.hex())
    else:
        click.echo(f"device {device_id} rotated", err=True)
    click.echo(f"the previous secret keeps verifying for {grace_hours:g} h", err=True)


@devices.command("revoke")
@click.argument("device_id")
@pass_transit
def devices_revoke(obj: CommandContext, device_id: str) -> None:
    """Revoke a validator: every running gateway refuses its taps and positions within a
    second."""
    from fare_gateway.devices import revoke_device

    the_core = core(obj)
    with the_core.sessions.begin() as session:
        if revoke_device(session, device_id):  # revoked already: nothing to record
            _audit(the_core, session, "device.revoked", device_id, {})
    click.echo(f"device {device_id} revoked", err=True)


@devices.command("move")
@click.argument("device_id")
@click.option("--vehicle", required=True, help="The vehicle the validator now rides on.")
@pass_transit
def devices_move(obj: CommandContext, device_id: str, vehicle: str) -> None:
    """The validator rides on another vehicle from now on: taps and positions dated from
    now on must name it; those made on the old one before are still taken."""
    from fare_gateway.devices import move_device

    the_core = core(obj)
    with the_core.sessions.begin() as session:
        moved = move_device(session, device_id, vehicle)
        if moved is not None:
            _audit(the_core, session, "device.moved", device_id,
                   {"from": moved[0], "to": vehicle, "from_ms": moved[1]})
    if moved is None:
        click.echo(f"device {device_id} already rides on vehicle {vehicle}: nothing changed")
        return
    was, since = moved
    click.echo(f"device {device_id} moved from vehicle {was} to {vehicle} as of "
               f"{_when(since)}: its taps made on {was} before then are still charged")


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@devices.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
@pass_transit
def devices_list(obj: CommandContext, as_json: bool) -> None:
    """Registered validators (never their secrets)."""
    from fare_gateway.devices import list_devices

    with core(obj).sessions() as session:
        rows = list_devices(session)
    if as_json:
        for d in rows:
            click.echo(json.dumps({
                "device_id": d.device_id, "vehicle_id": d.vehicle_id, "status": d.status,
                "key_created": _when(d.key_created_ms), "previous_in_grace": d.previous_in_grace,
                "previous_valid_until": _when(d.previous_valid_until_ms),
                "encrypted": d.encrypted}))
        return
    click.echo(f"{'DEVICE':<24} {'VEHICLE':<16} {'STATUS':<8} {'KEY CREATED':<20} GRACE")
    for d in rows:
        grace = f"until {_when(d.previous_valid_until_ms)}" if d.previous_in_grace else "no"
        click.echo(f"{d.device_id:<24} {d.vehicle_id:<16} {d.status:<8} "
                   f"{_when(d.key_created_ms):<20} {grace}")
