"""Wiring in one place: build the gateway's clients and services from the settings."""

from __future__ import annotations

import gc
import logging
import signal
from dataclasses import dataclass, field
from types import FrameType

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from fare_gateway.devices import DeviceDirectory
from fare_gateway.fares.policy import FarePolicy, policy_from_setting
from fare_gateway.metrics import Metrics
from fare_gateway.routes import RouteDirectory
from ledger.adapters.db import make_engine, session_factory
from ledger.services import Ledger
from transit.settings import Settings
from transit.topics import Topics

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
                   Ledger(engine, policy.currency))


class _Shutdown(SystemExit):
    """Raised in the main thread by SIGTERM/SIGINT to leave the HTTP server's loop.

    A SystemExit, because the server's event loop swallows ordinary exceptions raised
    inside its handlers and would keep running.
    """


def run_gateway(settings: Settings) -> None:
    """`transit gateway`: the tap consumer and the HTTP API in one process until SIGTERM."""
    from waitress.server import create_server

    from fare_gateway.adapters.consumer import TapConsumer
    from fare_gateway.api import ApiDeps, AuthFailures, create_app
    from fare_gateway.denylist import DenyListPublisher
    from fare_gateway.taps import TapService
    from tracking.adapters.consumer import PositionConsumer
    from tracking.ingest import PositionIngest
    from tracking.network import Network
    from tracking.store import TrackingStore, redis_client

    core = Core.build(settings)
    topics = Topics(settings.topic_prefix)
    service = TapService(core.sessions, core.ledger, core.policy,
                         DeviceDirectory(core.sessions), RouteDirectory(core.sessions),
                         topics, core.metrics)
    consumer = TapConsumer(settings, service, core.metrics)
    store = TrackingStore(redis_client(settings.redis_url), settings.topic_prefix)
    positions = PositionConsumer(settings, PositionIngest(
        store, DeviceDirectory(core.sessions), Network(core.sessions), topics,
        core.metrics.registry))
    limit, _, window = settings.extra.get("auth_failures", "20/60").partition("/")
    deps = ApiDeps(core.sessions, core.ledger, core.policy, core.metrics,
                   broker_ok=lambda: consumer.connected, tracking=store,
                   tile_url=settings.extra.get("map_tiles", ""),
                   auth_failures=AuthFailures(int(limit), float(window or 60)))
    app = create_app(deps)
    host, port = settings.http_bind
    # Each open vehicle stream holds a thread; leave room for the API beside them.
    server = create_server(app, host=host, port=port, threads=24, ident="transit")

    def _stop(signum: int, _frame: FrameType | None) -> None:
        raise _Shutdown(signum)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    # Everything built so far lives as long as the process: keep it out of the cyclic
    # garbage collector's full passes, which otherwise walk it all and stall the tap
    # path for tens of milliseconds.
    gc.collect()
    gc.freeze()
    consumer.start()
    positions.start()
    denylist = DenyListPublisher(core.sessions, consumer.client, topics)
    denylist.start()
    log.info("gateway %s: HTTP on http://%s:%d/, broker %s", settings.gateway_id, host, port,
             settings.mqtt.host)
    try:
        server.run()
    except _Shutdown as exc:
        log.info("signal %d: stopping", exc.args[0])
    finally:
        # Taps in hand are committed and acknowledged before the broker connection
        # closes; the rest stay queued in the persistent session.
        deps.stopping.set()  # open vehicle streams end within a second
        denylist.stop()
        positions.stop()
        consumer.stop()
        server.task_dispatcher.shutdown(timeout=5)
        server.close()
        core.engine.dispose()
        log.info("gateway stopped")
