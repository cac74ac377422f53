"""`transit agent`: the on-bus validator. Needs only the `agent` extra: it imports
nothing of the back office (the simulated reader and GPS are its own adapters)."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import click

from transit.context import CommandContext, pass_transit
from transit.errors import TransitError

log = logging.getLogger(__name__)


def _read_hex_file(path: str, what: str, size: int) -> bytes:
    try:
        raw = bytes.fromhex(Path(path).read_text().strip())
    except OSError as exc:
        raise TransitError(f"{what}: cannot read {path}: {exc.strerror}") from None
    except ValueError:
        raise TransitError(f"{what}: {path} does not hold hexadecimal") from None
    if len(raw) != size:
        raise TransitError(f"{what}: expected {size} bytes, {path} holds {len(raw)}")
    return raw


@click.command()
@click.option("--device", "device_id", required=True, help="This validator's device id.")
@click.option("--vehicle", "vehicle_id", required=True, help="The vehicle it is mounted in.")
@click.option("--route", "route_id", required=True, help="The route the vehicle serves.")
@click.option("--trip", "trip_id", default=None, help="The GTFS trip, when known.")
@click.option("--secret-file", required=True, type=click.Path(dir_okay=False),
              help="File holding the device secret (64 hex digits).")
@click.option("--denylist-key-file", type=click.Path(dir_okay=False), default=None,
              help="File holding the network's deny-list public key (64 hex digits), "
                   "from 'transit denylist key'.")
@click.option("--reader", type=click.Choice(["pcsc", "sim"]), default="pcsc", show_default=True,
              help="pcsc: every PC/SC reader; sim: card UIDs read from standard input.")
@click.option("--gps", default="none", show_default=True,
              help="gpsd[:HOST:PORT] | nmea:DEVICE | sim[:LAT,LON] | sim:SHAPE.json | "
                   "sim:PLAN.json | none")
@click.option("--sim-time-scale", default=1.0, show_default=True,
              type=click.FloatRange(min=0.1, max=100),
              help="With --gps sim:SHAPE.json or sim:PLAN.json: how much faster than real time "
                   "the bus drives (a plan's timetable runs that much faster too).")
@click.option("--spool", "spool_path", default="spool.db", show_default=True,
              type=click.Path(dir_okay=False), help="The durable tap spool (SQLite).")
@click.option("--spool-capacity", default=100_000, show_default=True,
              type=click.IntRange(min=1), help="Most taps held while waiting for receipts.")
@click.option("--exit", "exit_validator", is_flag=True,
              help="An exit validator (distance-priced routes): taps are `exit` taps.")
@click.option("--retry-seconds", default=10.0, show_default=True,
              type=click.FloatRange(min=0.1),
              help="First wait for a receipt before a tap is published again (doubles "
                   "each time, up to 5 minutes).")
@click.option("--card-profile", type=click.Choice(["uid", "secure", "any"]), default="uid",
              show_default=True,
              help="uid: plain UID cards; secure: only cards that pass AES authentication "
                   "(others refused as not_authentic); any: authenticate the cards that "
                   "hold the secure application, accept plain UID cards.")
@click.option("--master-key-file", type=click.Path(dir_okay=False), default=None,
              help="Key store file holding the card master key (32 hex digits, AES-128), "
                   "for --card-profile secure|any.")
@click.option("--repeat-tap-seconds", type=click.IntRange(0, 86_400), default=None,
              help="An entry of the same card within this many seconds is a repeat tap "
                   "(default: repeat_tap_seconds of the TRANSIT_FARES file, else 120).")
@pass_transit
def agent(obj: CommandContext, device_id: str, vehicle_id: str, route_id: str,
          trip_id: str | None, secret_file: str, denylist_key_file: str | None, reader: str,
          gps: str, spool_path: str, spool_capacity: int, exit_validator: bool,
          retry_seconds: float, sim_time_scale: float, card_profile: str = "uid",
          master_key_file: str | None = None, repeat_tap_seconds: int | None = None) -> None:
    """Run the validator agent on a bus (the broker from TRANSIT_MQTT_URL)."""
    from transit.topics import ID_PATTERN, Topics
    from validator_agent.adapters.fare_file import repeat_tap_seconds as policy_seconds
    from validator_agent.agent import DRILL_OFFLINE_S, Agent, AgentConfig
    from validator_agent.feedback import ConsoleFeedback
    from validator_agent.spool import Spool, SpoolUnusable

    for name, value in (("--device", device_id), ("--vehicle", vehicle_id),
                        ("--route", route_id)):
        if not ID_PATTERN.fullmatch(value):
            raise click.BadParameter("1-64 characters of A-Z a-z 0-9 . _ -",
                                     param_hint=f"'{name}'")
    settings = obj.settings
    if repeat_tap_seconds is None:
        repeat_tap_seconds = policy_seconds(settings.fares)
    secret = _read_hex_file(secret_file, "--secret-file", 32)
    denylist_key = (_read_hex_file(denylist_key_file, "--denylist-key-file", 32)
                    if denylist_key_file else None)
    card_check = _card_check(card_profile, reader, master_key_file)
    # Everything that can refuse to start is checked before anything starts: a reader
    # whose package is missing fails here, not after the broker connection is up.
    source_class = _card_source_class(reader)
    feed = _gps_feed(gps, sim_time_scale)
    config = AgentConfig(device_id=device_id, vehicle_id=vehicle_id, route_id=route_id,
                         secret=secret, mqtt=settings.mqtt,
                         topics=Topics(settings.topic_prefix),
                         repeat_tap_seconds=repeat_tap_seconds,
                         denylist_key=denylist_key, trip_id=trip_id,
                         kind="exit" if exit_validator else "entry")
    try:
        spool = Spool(spool_path, spool_capacity, int(retry_seconds * 1000))
    except SpoolUnusable as exc:
        raise TransitError(f"--spool: {exc}") from None
    the_agent = Agent(config, spool, ConsoleFeedback(), feed)
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    # SIGUSR1: lose the network for a minute, as in a tunnel (for drills and the demo).
    signal.signal(signal.SIGUSR1, lambda _s, _f: the_agent.go_offline(DRILL_OFFLINE_S))
    if feed is not None:
        feed.start()
    the_agent.start()
    if reader == "pcsc":
        def _card(uid: str | None, seen: float, _reader: str,
                  authentic: bool | None = None) -> None:
            the_agent.card_presented(uid, seen, authentic)

        source = source_class(_card, check=card_check)
    else:
        source = source_class(sys.stdin, the_agent.card_presented)
    source.start()
    log.info("agent %s on %s (route %s): reader %s, cards %s, gps %s, spool %s "
             "(%d waiting), repeat taps within %d s", device_id, vehicle_id, route_id, reader,
             card_profile, gps, spool_path, spool.depth, repeat_tap_seconds)
    while not stop.wait(0.5):
        pass
    source.stop()
    the_agent.stop()
    if feed is not None:
        feed.stop()
    spool.close()


def _card_check(card_profile: str, reader: str, master_key_file: str | None) -> Any:
    """The card-authentication check of `--card-profile`, or None for plain UID cards."""
    if card_profile == "uid":
        return None
    if reader != "pcsc":
        raise TransitError(f"--card-profile {card_profile} needs --reader pcsc")
    if not master_key_file:
        raise TransitError(f"--card-profile {card_profile} needs --master-key-file")
    from validator_agent.secure_card import SecureCardCheck, load_master_key

    try:
        return SecureCardCheck(load_master_key(master_key_file), card_profile)
    except ValueError as exc:
        raise TransitError(f"--master-key-file: {exc}") from None


def _card_source_class(reader: str) -> Any:
    """The card source of `--reader` (importing pyscard for pcsc, so a missing one shows)."""
    if reader == "pcsc":
        from validator_agent.adapters.pcsc import PcscCardSource

        return PcscCardSource
    from validator_agent.adapters.sim_reader import LineCardSource

    return LineCardSource


def _gps_feed(spec: str, time_scale: float = 1.0):  # type: ignore[no-untyped-def]
    from validator_agent.gps import FixFeed, gpsd_fixes, nmea_fixes

    kind, _, arg = spec.partition(":")
    if kind == "none":
        return None
    if kind == "gpsd":
        host, _, port = (arg or "127.0.0.1:2947").partition(":")
        if port and not port.isdigit():
            raise TransitError(f"--gps gpsd:HOST:PORT needs a port number, got {port!r}")
        return FixFeed(lambda: gpsd_fixes(host or "127.0.0.1", int(port or 2947)))
    if kind == "nmea":
        if not arg:
            raise TransitError("--gps nmea:DEVICE needs a device path")
        return FixFeed(lambda: nmea_fixes(arg))
    if kind == "sim" and arg.endswith(".json"):
        import json

        from validator_agent.adapters.sim_gps import drive, follow, plan_of

        try:
            data = json.loads(Path(arg).read_text())
        except (OSError, ValueError) as exc:
            raise TransitError(f"--gps sim:{arg}: not a JSON list of [lat, lon] or a "
                               f"plan: {exc}") from None
        if isinstance(data, dict):  # a bus on a timetable
            try:
                plan = plan_of(data)
            except ValueError as exc:
                raise TransitError(f"--gps sim:{arg}: not a plan: {exc}") from None
            return FixFeed(lambda: follow(plan, time_scale=time_scale), max_age_s=30)
        try:
            shape = [tuple(p) for p in data]
        except TypeError as exc:
            raise TransitError(f"--gps sim:{arg}: not a JSON list of [lat, lon]: "
                               f"{exc}") from None
        if len(shape) < 2:
            raise TransitError(f"--gps sim:{arg}: a shape needs at least two points")
        return FixFeed(lambda: drive(shape, time_scale=time_scale), max_age_s=30)
    if kind == "sim":
        from validator_agent.adapters.sim_gps import standing

        lat, _, lon = (arg or "-7.2575,112.7521").partition(",")
        try:
            point = (float(lat), float(lon))
        except ValueError:
            raise TransitError("--gps sim:LAT,LON needs two numbers") from None
        return FixFeed(lambda: standing(*point))
    raise TransitError(f"--gps: unknown source {spec!r} (gpsd[:HOST:PORT], nmea:DEVICE, "
                       "sim[:LAT,LON], sim:SHAPE.json, sim:PLAN.json or none)")
