"""Wiring in one place: build the gateway's clients and services from the settings."""

from __future__ import annotations

import gc
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from fare_gateway.devices import DeviceDirectory
from fare_gateway.fares.policy import FarePolicy, policy_from_setting
from fare_gateway.metrics import Metrics
from fare_gateway.routes import RouteDirectory
from ledger.adapters.db import make_engine, session_factory
from ledger.fingerprint import Fingerprints
from ledger.services import Ledger
from transit.errors import TransitError, cannot_listen, why_unreachable
from transit.settings import Settings
from transit.topics import Topics
from transit.window import EventWindow

log = logging.getLogger(__name__)


@dataclass
class Core:
    """The database-side services every gateway command uses."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    policy: FarePolicy
    ledger: Ledger
    metrics: Metrics = field(default_factory=Metrics)

    @classmethod
    def build(cls, settings: Settings) -> Core:
        policy = policy_from_setting(settings.fares)
        engine = make_engine(settings.database_url)
        return cls(settings, engine, session_factory(engine), policy,
                   Ledger(engine, policy.currency,
                          fingerprints=Fingerprints(settings.secret_key)))


def _wait_for_broker(settings: Settings, wait_connected: Callable[[float], bool]) -> None:
    """Wait up to `TRANSIT_BROKER_WAIT_S` for the broker; fail in one line if it is away.

    With a wait of 0 the gateway starts without the broker, says so once, and keeps
    reconnecting in the background (docs/operations.md).
    """
    endpoint = settings.mqtt
    if settings.broker_wait_s:
        log.info("waiting up to %g s for the broker at %s", settings.broker_wait_s,
                 endpoint.address)
    if wait_connected(settings.broker_wait_s):
        return
    cause = why_unreachable(endpoint.host, endpoint.port)
    if settings.broker_wait_s == 0:
        if cause is not None:
            log.warning("the broker at %s is not reachable (%s): serving HTTP, taps wait "
                        "at the broker and the validators; reconnecting in the background",
                        endpoint.address, cause)
        return
    why = cause or "it refused the MQTT connection: check the user, password and TLS files"
    raise TransitError(
        f"the broker at {endpoint.address} did not answer within {settings.broker_wait_s:g} s "
        f"({why}): start it or set TRANSIT_MQTT_URL (TRANSIT_BROKER_WAIT_S=0 starts the "
        "gateway without it)")


class _Shutdown(SystemExit):
    """Raised in the main thread by SIGTERM/SIGINT to leave the HTTP server's loop.

    A SystemExit, because the server's event loop swallows ordinary exceptions raised
    inside its handlers and would keep running.
    """


def run_gateway(settings: Settings) -> None:
    """`transit gateway`: the tap consumer and the HTTP API in one process until SIGTERM."""
    from fare_gateway.adapters.consumer import TapConsumer
    from fare_gateway.adapters.device_watch import device_watch
    from fare_gateway.denylist import DenyListPublisher, network_key
    from fare_gateway.fares.loaded import record_loaded
    from fare_gateway.fleet import FleetRecords
    from fare_gateway.http import ApiDeps, AuthFailures, create_app
    from fare_gateway.http.serving import make_server
    from fare_gateway.ingest_workers import IngestProcesses, SharedCounts
    from fare_gateway.riders.limits import RiderLimits
    from fare_gateway.schema import schema_problem
    from fare_gateway.taps import TapService
    from fare_gateway.taps.sql import sql_units
    from ledger.audit import Actor
    from tracking.adapters.consumer import PositionConsumer
    from tracking.adapters.status_consumer import StatusConsumer
    from tracking.heard import HeardLog
    from tracking.ingest import PositionIngest
    from tracking.learn import Learner
    from tracking.network import Network
    from tracking.occupancy_live import Capacities, LiveOccupancy, VehicleProgress
    from tracking.schedule_load import ScheduleSource
    from tracking.store import TrackingStore, redis_client
    from tracking.streams import StreamSlots
    from tracking.track import TrackWriter

    core = Core.build(settings)
    # Refuse a database without the current schema now, in one line, rather than with
    # the first query's error (or every tap's).
    problem = schema_problem(core.engine)
    if problem is not None:
        core.engine.dispose()
        raise TransitError(problem)
    # A deny-list key sealed under another TRANSIT_SECRET_KEY (or none) is refused now.
    network_key(core.sessions, settings.secret_key)
    # The fare policy in force goes into the audit trail when it is not the one the trail
    # recorded last (a restart with the same policy writes nothing).
    try:
        record_loaded(core.sessions, core.ledger.fingerprints,
                      Actor.system(settings.gateway_id), settings.fares, core.policy)
    except OSError as exc:  # the file went away since it was read a moment ago
        core.engine.dispose()
        raise TransitError(f"TRANSIT_FARES: cannot read {settings.fares}: {exc.strerror}"
                           ) from None
    topics = Topics(settings.topic_prefix)
    # One directory for taps and positions, told of every device change at once.
    devices = DeviceDirectory(core.sessions, key=settings.secret_key)
    watch = device_watch(core.engine, devices, core.metrics)
    devices.changes_heard = lambda: watch.hearing  # then the cache may keep devices long
    window = EventWindow(settings.tap_max_age_days)
    service = TapService(sql_units(core.sessions, core.ledger, core.policy), core.policy,
                         devices, RouteDirectory(core.sessions), topics, core.metrics,
                         window=window)
    store = TrackingStore(redis_client(settings.redis_url), settings.topic_prefix)
    heard = HeardLog(store)
    consumer = TapConsumer(settings, service, core.metrics,
                           heard=lambda ids: heard.note(ids, int(time.time() * 1000)))
    # One schedule for the gateway: trip assignment reads it per batch of positions.
    # Checked every 2 s, its stamp in Redis beside each ingest process's
    # (`TrackingStore.schedule_stamps`: what serves the import, for operators and tests).
    schedule = ScheduleSource(core.sessions, registry=core.metrics.registry,
                              on_stamp=lambda stamp: store.schedule_seen(
                                  settings.gateway_id, "gateway", stamp))
    children: IngestProcesses | None = None
    track: TrackWriter | None = None
    positions: PositionConsumer | StatusConsumer
    if settings.ingest_processes:
        # Positions go to ingest processes of their own (fare_gateway.ingest_workers):
        # this process keeps its interpreter for the taps and the HTTP API, and the
        # validators' statuses.
        children = IngestProcesses(settings, settings.ingest_processes)
        positions = StatusConsumer(settings, PositionIngest(
            store, devices, Network(core.sessions), topics, core.metrics.registry, window))
    else:
        track = TrackWriter(core.sessions, core.metrics.registry,
                            keep_days=settings.track_days)
        positions = PositionConsumer(settings, PositionIngest(
            store, devices, Network(core.sessions), topics, core.metrics.registry, window,
            track=track, schedule=schedule))
    # The positions' counts, as every ingest process sharing this Redis added them.
    core.metrics.registry.register(SharedCounts(store, track=children is not None))
    deps = ApiDeps(core.sessions, core.ledger, core.policy, core.metrics,
                   broker_ok=lambda: consumer.connected, tracking=store,
                   tile_url=settings.map_tiles, gateway_id=settings.gateway_id,
                   auth_failures=AuthFailures.shared(settings),
                   streams=StreamSlots(settings.http_streams, settings.streams_per_token),
                   rider_limits=RiderLimits.shared(settings),
                   rider_token_hours=settings.rider_token_hours,
                   secret_key=settings.secret_key,
                   validator_silent_s=settings.validator_silent_s)
    deps.schedule = schedule
    # How full each bus is, from the taps every gateway stores; riders tap out on the
    # routes priced by distance.
    occupancy = LiveOccupancy(
        FleetRecords(core.sessions), VehicleProgress(store), Capacities(core.sessions),
        schedule,
        taps_out=lambda route_id, ts: core.policy.rule_for(route_id, ts).distance
        is not None)
    deps.occupancy = occupancy.occupancy
    # Learns each closed service day's segment times from the tracks, at start and hourly,
    # in a child process off this one's GIL (PostgreSQL: one at a time, by an advisory
    # lock).
    learner = Learner()
    app = create_app(deps)
    host, port = settings.http_bind
    try:
        server = make_server(app, host, port, streams=settings.http_streams)
    except OSError as exc:
        core.engine.dispose()
        raise cannot_listen("TRANSIT_HTTP", host, port, exc) from None

    # Everything built so far lives as long as the process: keep it out of the cyclic
    # garbage collector's full passes, which otherwise walk it all and stall the tap
    # path for tens of milliseconds.
    gc.collect()
    gc.freeze()
    watch.start()
    consumer.start()
    try:
        _wait_for_broker(settings, consumer.wait_connected)
    except TransitError:
        consumer.stop()
        watch.stop()
        server.close()
        core.engine.dispose()
        raise

    # From here on a signal stops the gateway in order. Before, while it waits for the
    # broker and has received nothing, Ctrl-C just ends the start-up (exit 130).
    def _stop(signum: int, _frame: FrameType | None) -> None:
        # Open vehicle streams end within a second, before the server waits for its
        # threads to finish what they serve.
        deps.stopping.set()
        raise _Shutdown(signum)

    started: list[Callable[[], None]] = []  # the stops of what started, oldest first
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    # The try opens at once: a signal that comes before the server runs must still stop
    # what was started.
    try:
        heard.start()
        started.append(heard.stop)
        if track is not None:
            track.start()
            started.append(track.stop)  # stopped after the positions, so it writes theirs
        if children is not None:
            children.start()  # back once each has subscribed: no position is missed
            started.append(children.stop)
        schedule.watch()
        started.append(schedule.stop)
        learner.start()
        started.append(learner.stop)
        occupancy.start()
        started.append(occupancy.stop)
        positions.start()
        started.append(positions.stop)
        denylist = DenyListPublisher(core.sessions, consumer.client, topics,
                                     secret_key=settings.secret_key)
        denylist.start()
        started.append(denylist.stop)
        log.info("gateway %s: HTTP on http://%s:%d/, broker %s (%s)", settings.gateway_id,
                 host, port, settings.mqtt.address,
                 "connected" if consumer.connected else "retrying")
        server.run()
    except _Shutdown as exc:
        log.info("signal %d: stopping", exc.args[0])
    finally:
        # Taps in hand are committed and acknowledged before the broker connection
        # closes; the rest stay queued in the persistent session.
        deps.stopping.set()  # also when the server's loop ended on its own
        for stop in reversed(started):
            stop()
        consumer.stop()
        watch.stop()
        server.task_dispatcher.shutdown(timeout=5)
        server.close()
        core.engine.dispose()
        log.info("gateway stopped")
