"""The gateway's Flask application: wires each feature's blueprint, the one error
format, the protective headers and the API description. No view lives here."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from flask import Flask, g
from prometheus_client import Gauge

from fare_gateway.cards import CardOffice
from fare_gateway.fares.policy import FarePolicy
from fare_gateway.finance.office import FinanceOffice
from fare_gateway.fleet import FleetRecords
from fare_gateway.health import check_health
from fare_gateway.http.audit import audit_blueprint
from fare_gateway.http.auth import Authenticator, AuthFailures, current_actor, install, require
from fare_gateway.http.cards import cards_blueprint
from fare_gateway.http.disputes import disputes_blueprint
from fare_gateway.http.errors import register_error_handlers
from fare_gateway.http.finance import finance_blueprint
from fare_gateway.http.headers import protective_headers
from fare_gateway.http.health import health_blueprint
from fare_gateway.http.inputs import json_object
from fare_gateway.http.openapi import openapi_blueprint
from fare_gateway.http.operations import operation
from fare_gateway.http.ops import ops_blueprint
from fare_gateway.http.pages import pages_blueprint
from fare_gateway.http.riders import riders_blueprint
from fare_gateway.http.settlements import settlements_blueprint
from fare_gateway.http.statements import statements_blueprint
from fare_gateway.http.taps import taps_blueprint
from fare_gateway.metrics import Metrics
from fare_gateway.ops import OpsOffice
from fare_gateway.riders import evidence
from fare_gateway.riders.accounts import FailureLimits, RiderOffice
from fare_gateway.riders.dispute_office import DisputeOffice
from fare_gateway.tokens import principal_for
from ledger.adapters.db import Sessions
from ledger.services import Ledger
from ledger.settlement import BusinessCalendar, Settler, settle_day
from tracking.occupancy import Occupancy
from tracking.schedule import Schedule
from tracking.store import TrackingStore
from tracking.streams import StreamSlots
from transit.settings import Settings

MAX_BODY_BYTES = 64 * 1024


@dataclass
class ApiDeps:
    """What the API needs, built once by the entry point."""

    sessions: Sessions  # handed to the services; no view opens one
    ledger: Ledger
    policy: FarePolicy
    metrics: Metrics
    broker_ok: Callable[[], bool]
    tracking: TrackingStore | None = None  # adds the vehicles, validators and map endpoints
    tile_url: str = ""
    stopping: threading.Event = field(default_factory=threading.Event)  # ends open streams
    auth_failures: AuthFailures | None = None
    # The vehicle streams served at once, in all and per token (TRANSIT_HTTP_STREAMS,
    # TRANSIT_STREAMS_PER_TOKEN).
    streams: StreamSlots = field(default_factory=lambda: StreamSlots(
        Settings.http_streams, Settings.streams_per_token))
    gateway_id: str = ""  # in /healthz, so a caller knows which gateway answered
    # Riders' wrong passwords and check codes, counted in Redis by every gateway
    # (`RiderLimits.shared`); without it, in this process (TRANSIT_RIDER_FAILURES' default).
    rider_limits: FailureLimits | None = None
    rider_token_hours: int = Settings.rider_token_hours
    secret_key: bytes | None = None  # opens device secrets: a disputed tap's signature
    validator_silent_s: float = Settings.validator_silent_s  # TRANSIT_VALIDATOR_SILENT_S
    # The schedule the gateway shares (`tracking.schedule_load.ScheduleSource`); without
    # it, the trip updates read one of their own.
    schedule: Callable[[], Schedule] | None = None
    # Each vehicle's occupancy from its taps (`tracking.occupancy_live.LiveOccupancy`).
    occupancy: Callable[[str], Occupancy | None] | None = None


def create_app(deps: ApiDeps) -> Flask:
    """Build the Flask application around already-wired services."""
    # No static folder of Flask's own: the map's files are tracking's, under /static/map.
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False  # type: ignore[attr-defined]
    register_error_handlers(app, MAX_BODY_BYTES)
    app.after_request(protective_headers)
    install(app, Authenticator(partial(principal_for, deps.sessions,
                                       fingerprints=deps.ledger.fingerprints),
                               deps.auth_failures or AuthFailures()))

    policy = deps.policy
    settler = Settler(BusinessCalendar(policy.timezone, policy.service_day_start_min),
                      policy.currency, fingerprints=deps.ledger.fingerprints)
    cards = CardOffice(deps.sessions, deps.ledger, policy)
    app.register_blueprint(health_blueprint(partial(check_health, deps.sessions,
                                                    deps.broker_ok), deps.metrics,
                                            deps.gateway_id))
    app.register_blueprint(cards_blueprint(cards))
    app.register_blueprint(taps_blueprint(cards))
    rider_limits = deps.rider_limits
    if rider_limits is None:
        # Imported here: the limits build on this package's count of failed sign-ins.
        from fare_gateway.riders.limits import RiderLimits

        rider_limits = RiderLimits(Settings.rider_failures)
    app.register_blueprint(riders_blueprint(RiderOffice(
        deps.sessions, deps.ledger, policy, rider_limits, deps.rider_token_hours)))
    # A disputed tap's positions: those its vehicle's taps carry, and with tracking the
    # vehicle's recent GPS trail too.
    track = None if deps.tracking is None else evidence.MergedTrack(
        [evidence.InboxTrack(deps.sessions), evidence.TrailTrack(deps.tracking)])
    disputes = DisputeOffice(deps.sessions, deps.ledger, policy, key=deps.secret_key,
                             track=track)
    deps.metrics.watch_disputes(disputes.backlog)
    app.register_blueprint(disputes_blueprint(disputes))
    app.register_blueprint(settlements_blueprint(partial(settle_day, deps.sessions, settler)))
    app.register_blueprint(statements_blueprint(deps.sessions, policy))
    app.register_blueprint(audit_blueprint(deps.sessions, deps.ledger.fingerprints))
    app.register_blueprint(finance_blueprint(FinanceOffice(deps.sessions, deps.ledger, policy)))
    # The operators' alerts tell bunched buses from the headways (with tracking only).
    headways = None
    bunching = None
    if deps.tracking is not None:
        from fare_gateway.ops.alerts import bunching_alerts
        from tracking.headways_http import HeadwayOffice
        from tracking.learn import SegmentDays
        from tracking.predict import LearnedSource
        from tracking.schedule_load import ScheduleSource

        # One schedule and one set of learned times for the predictions and the headways.
        schedule = deps.schedule or ScheduleSource(deps.sessions)
        learned = LearnedSource(SegmentDays(deps.sessions), schedule)
        headways = HeadwayOffice(deps.sessions, deps.tracking, schedule, learned,
                                 fingerprints=deps.ledger.fingerprints)
        bunching = partial(lambda office, now, vehicles: bunching_alerts(
            office.bunched(now, vehicles)),
                           headways)
    app.register_blueprint(ops_blueprint(OpsOffice(deps.sessions, deps.tracking, disputes,
                                                   deps.validator_silent_s,
                                                   bunching=bunching)))
    if deps.tracking is not None:
        from tracking.alerts_http import AlertsDeps, alerts_blueprint
        from tracking.feed_ids import FeedIds
        from tracking.http import TrackingDeps, tracking_blueprint
        from tracking.services import NetworkMap
        from tracking.tracks_http import TracksDeps, tracks_blueprint

        fleet = FleetRecords(deps.sessions)
        Gauge("transit_http_streams_open", "Vehicle streams open now",
              registry=deps.metrics.registry).set_function(deps.streams.open)
        app.register_blueprint(tracking_blueprint(TrackingDeps(
            network=NetworkMap(deps.sessions), store=deps.tracking, roster=fleet, taps=fleet,
            require=require, operation=operation, streams=deps.streams,
            holder=lambda: str(g.principal.token_id), tile_url=deps.tile_url,
            service_date=lambda ms: policy.service_date(ms).isoformat(),
            service_day_start=policy.service_day_start_ms,
            stopping=deps.stopping, silent_after_s=deps.validator_silent_s,
            known=FeedIds(deps.sessions), occupancy=deps.occupancy, schedule=schedule)))
        app.register_blueprint(tracks_blueprint(TracksDeps(deps.sessions, require, operation)))
        app.register_blueprint(alerts_blueprint(AlertsDeps(
            deps.sessions, deps.ledger.fingerprints, current_actor, require, operation,
            json_body=json_object)))
        from tracking.headways_http import HeadwaysDeps, headways_blueprint

        assert headways is not None
        app.register_blueprint(headways_blueprint(HeadwaysDeps(
            headways, current_actor, require, operation, json_body=json_object)))
        from tracking.predictions_http import PredictionsDeps, predictions_blueprint

        app.register_blueprint(predictions_blueprint(PredictionsDeps(
            deps.tracking, schedule, learned, operation)))
    app.register_blueprint(pages_blueprint())
    app.register_blueprint(openapi_blueprint())
    return app
