"""Health and metrics, for load balancers and Prometheus; no token needed."""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, Response, jsonify

from fare_gateway.health import Health
from fare_gateway.http.operations import Schema, json_content, operation
from fare_gateway.metrics import Metrics

HEALTH: Schema = {
    "title": "Health",
    "type": "object",
    "required": ["status", "gateway", "database", "broker"],
    "properties": {
        "status": {"enum": ["ok", "unavailable"]},
        "gateway": {"type": "string", "description": "the answering gateway's "
                                                    "`TRANSIT_GATEWAY_ID`"},
        "database": {"type": "string", "description": "`ok`, or `unreachable: <cause>`"},
        "broker": {"enum": ["ok", "unreachable"]}},
}
PROMETHEUS_TEXT = "text/plain"


def health_blueprint(check: Callable[[], Health], metrics: Metrics,
                     gateway_id: str = "") -> Blueprint:
    """`/healthz` over `check` (`fare_gateway.health.check_health`), naming the gateway
    `gateway_id`, and `/metrics`."""
    bp = Blueprint("health", __name__)

    @bp.get("/healthz")
    @operation("Whether the gateway can work", tag="health",
               responses={200: json_content(HEALTH), 503: json_content(HEALTH)},
               description="200 when the database and the broker are reachable, else 503 "
                           "naming what is not.")
    def healthz() -> Response:
        health = check()
        resp = jsonify({"status": "ok" if health.ok else "unavailable",
                        "gateway": gateway_id, "database": health.database,
                        "broker": health.broker})
        resp.status_code = 200 if health.ok else 503
        return resp

    @bp.get("/metrics")
    @operation("Prometheus metrics", tag="health",
               responses={200: {PROMETHEUS_TEXT: {"type": "string"}}},
               description="The Prometheus text exposition format, version 0.0.4.")
    def prometheus() -> Response:
        # content_type, not mimetype: Werkzeug would add a second charset to the latter.
        return Response(metrics.render(),
                        content_type="text/plain; version=0.0.4; charset=utf-8")

    return bp
