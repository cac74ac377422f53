"""`transit broker`: the MQTT broker's access control, and retiring a gateway's session."""

from __future__ import annotations

import secrets
import threading
from pathlib import Path

import click

from fare_gateway.cli.core import core
from transit.cli import Group
from transit.context import CommandContext, pass_transit
from transit.errors import TransitError


def active_devices(obj: CommandContext) -> list[tuple[str, bytes]]:
    """(device_id, raw secret) of every active device in the run's database."""
    from sqlalchemy import select

    from fare_gateway.adapters.models import Device
    from fare_gateway.devices import DeviceDirectory

    sessions = core(obj).sessions
    with sessions() as session:
        ids = list(session.execute(select(Device.device_id)
                                   .where(Device.status == "active")
                                   .order_by(Device.device_id)).scalars())
    directory = DeviceDirectory(sessions, key=obj.settings.secret_key)
    out = []
    for device_id in ids:
        known = directory.get(device_id)
        if known is not None:
            out.append((device_id, known.secret))
    return out


@click.group(cls=Group)
def broker() -> None:
    """The MQTT broker's access control, and the sessions of retired gateways."""


@broker.command("config")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write passwords, acl, mosquitto.conf (and TLS files) into.")
@click.option("--gateway-password-file", type=click.Path(dir_okay=False, exists=True,
                                                         path_type=Path),
              help="Use this gateway password instead of generating one.")
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--tls-ca", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="CA file for the TLS listener (optional with --tls-cert).")
@click.option("--generate-tls", "generate", is_flag=True,
              help="Make a private CA and a server certificate for 127.0.0.1/localhost.")
@click.option("--port", default=1883, show_default=True, type=click.IntRange(1, 65535))
@click.option("--tls-port", default=8883, show_default=True, type=click.IntRange(1, 65535))
@pass_transit
def config(obj: CommandContext, out_dir: Path, gateway_password_file: Path | None,
           tls_cert: Path | None, tls_key: Path | None, tls_ca: Path | None, generate: bool,
           port: int, tls_port: int) -> None:
    """Write a Mosquitto configuration (passwords, ACL, listeners) for the registered devices."""
    from fare_gateway.broker_config import (
        GATEWAY_USER,
        acl_file,
        device_mqtt_password,
        generate_tls,
        mosquitto_conf,
        password_file,
        write_private,
    )

    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if generate and tls_cert is not None:
        raise click.UsageError("--generate-tls and --tls-cert exclude each other")
    devices = active_devices(obj)
    if any(d == GATEWAY_USER for d, _ in devices):
        raise TransitError(f"a device is named {GATEWAY_USER!r}, the gateway's account")
    out = out_dir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    if gateway_password_file is not None:
        gw_password = gateway_password_file.read_text().strip()
        if not gw_password:
            raise TransitError(f"{gateway_password_file} is empty")
    else:
        gw_password = secrets.token_urlsafe(32)
    write_private(out / "gateway.password", (gw_password + "\n").encode())
    accounts = [(GATEWAY_USER, gw_password)] + [
        (device_id, device_mqtt_password(secret)) for device_id, secret in devices]
    write_private(out / "passwords", password_file(accounts).encode())
    (out / "acl").write_text(acl_file(obj.settings.topic_prefix, [d for d, _ in devices]))
    tls: tuple[Path, Path, Path | None] | None = None
    if generate:
        tls = generate_tls(out)
    elif tls_cert is not None and tls_key is not None:
        tls = (tls_cert.resolve(), tls_key.resolve(), tls_ca.resolve() if tls_ca else None)
    (out / "mosquitto.conf").write_text(mosquitto_conf(out, port, tls, tls_port))
    click.echo(f"wrote {out}/mosquitto.conf for {len(devices)} device(s)"
               + (f", TLS on port {tls_port}" if tls else ""))


@broker.command("retire-gateway")
@click.argument("gateway_id")
@click.option("--timeout", default=10.0, show_default=True, type=click.FloatRange(0.5, 120),
              help="Seconds to wait for the broker.")
@pass_transit
def retire_gateway(obj: CommandContext, gateway_id: str, timeout: float) -> None:
    """End the broker session of a gateway that will not come back.

    A gateway's session is persistent, so that taps wait for it while it restarts; on a
    shared subscription the broker keeps giving that session its turn. When a gateway
    is gone for good (its host lost, or the pool made smaller), this ends the session:
    the taps it held are dropped by the broker and re-published by their validators,
    which keep every tap until a receipt comes, and the remaining gateways charge them.
    Run against a live gateway it only costs a reconnect: that gateway starts a new
    session and nothing is charged twice.
    """
    from transit.errors import why_unreachable
    from transit.mqtt import connect_async, make_client

    endpoint = obj.settings.mqtt
    client = make_client(endpoint, gateway_id, persistent=False)
    answered = threading.Event()
    refused: list[str] = []

    def on_connect(_c: object, _u: object, _f: object, reason: object, _p: object) -> None:
        if getattr(reason, "is_failure", False):
            refused.append(str(reason))
        answered.set()

    client.on_connect = on_connect
    # A clean start (MQTT 5: with no session expiry) under the gateway's client id: the
    # broker discards the old session, its subscriptions and its queue.
    connect_async(client, endpoint, persistent=False)
    client.loop_start()
    try:
        if not answered.wait(timeout):
            cause = why_unreachable(endpoint.host, endpoint.port) or "no MQTT answer"
            raise TransitError(f"the broker at {endpoint.address} did not answer in "
                               f"{timeout:g} s ({cause}): is it running, and is "
                               "TRANSIT_MQTT_URL right?")
        if refused:
            raise TransitError(f"the broker at {endpoint.address} refused the connection: "
                               f"{refused[0]}")
    finally:
        client.disconnect()
        client.loop_stop()
    click.echo(f"session of gateway {gateway_id!r} ended at {endpoint.address}")
