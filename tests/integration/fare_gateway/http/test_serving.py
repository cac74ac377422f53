"""Slow, idle and many clients against a live `transit gateway`, over raw sockets
(contract section 10, last point; issue 14, point 5): connections held open half-sent
and live vehicle streams do not starve `/healthz` or the API; the streams are capped per
token and per gateway, free their slot when their client leaves, and end when the
gateway stops. And, on a server of its own, what waitress refuses itself is answered in
the API's error format on every address the host resolves to."""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from waitress.server import MultiSocketServer

from fare_gateway.http.serving import MAX_HEADER_BYTES, make_server
from testbed.ports import free_port
from tests.conftest import System
from tests.integration.fare_gateway.http.client import assert_error_shape
from tests.integration.tracking.test_positions import wait_until
from tests.support import raw_http
from tests.support.raw_http import Stream

CARD = "04A1B2C3D4E5F6"
HALF_SENT = 200
STREAMS = 50
HEALTH_LIMIT_S = 1.0  # contract section 10


@pytest.fixture
def db_url(pg_url: str) -> Iterator[str]:
    """Serving clients does not depend on the database: PostgreSQL alone is enough."""
    yield pg_url


def restart(system: System, **settings: str) -> None:
    system.gateway.stop()
    system.gateway.env = dict(system.env, **settings)
    system.gateway.start()


def open_streams(system: System, token: str, count: int, held: ExitStack) -> list[Stream]:
    """`count` live streams of `token`, each past its first event."""
    streams = []
    for _ in range(count):
        stream = held.enter_context(Stream(system.gateway.base_url, token))
        assert stream.status == 200, (stream.status, stream.refusal())
        stream.wait_for(b"event: snapshot")
        streams.append(stream)
    return streams


def refused(system: System, token: str, status: int) -> dict[str, object]:
    """Open one more stream of `token`; it must be refused at once with `status`."""
    stream = Stream(system.gateway.base_url, token)
    try:
        assert stream.status == status, stream.answer
        assert stream.answer.headers["content-type"] == "application/json"
        assert stream.answer.headers["x-content-type-options"] == "nosniff"
        body = stream.refusal()
        assert_error_shape(body)
        return body  # type: ignore[no-any-return]
    finally:
        stream.close()


def timed_get(system: System, path: str, token: str | None = None) -> tuple[int, float]:
    started = time.monotonic()
    answer = raw_http.request(system.gateway.base_url, path, token, timeout=30)
    return answer.status, time.monotonic() - started


def open_streams_now(system: System) -> int:
    """The gateway's own count of its open streams, from /metrics."""
    text = raw_http.request(system.gateway.base_url, "/metrics").body.decode()
    found = re.search(r"^transit_http_streams_open (\S+)$", text, re.MULTILINE)
    assert found, text[:2000]
    return int(float(found.group(1)))


def test_half_sent_connections_and_live_streams_do_not_starve_the_server(
        system: System, record_property: pytest.RecordProperty) -> None:
    restart(system, TRANSIT_HTTP_STREAMS=str(STREAMS), TRANSIT_STREAMS_PER_TOKEN="25")
    ops = [system.token("ops") for _ in range(3)]  # two fill the gateway, one is left out
    admin = system.token("admin")
    system.issue(CARD, 10_000)
    base = system.gateway.base_url

    with ExitStack() as held:
        for token in ops[:2]:
            open_streams(system, token, STREAMS // 2, held)
        slow = [held.enter_context(raw_http.half_sent(base)) for _ in range(HALF_SENT)]

        # The caps answer at once, in the error format: the token's (429), the gateway's
        # (503) for a token that holds none.
        assert refused(system, ops[0], 429)["error"]["code"] == "too_many_streams"
        assert refused(system, ops[2], 503)["error"]["code"] == "streams_full"

        health = [timed_get(system, "/healthz") for _ in range(5)]
        card = timed_get(system, f"/api/v1/cards/{CARD}", admin)
        fleet = timed_get(system, "/api/v1/vehicles", ops[2])
        figures = (f"/healthz with {HALF_SENT} half-sent connections and {STREAMS} streams: "
                   + ", ".join(f"{s * 1000:.0f} ms" for _, s in health)
                   + f"; GET a card {card[1] * 1000:.0f} ms, the fleet {fleet[1] * 1000:.0f} ms")
        print(figures)
        record_property("serving", figures)
        assert all(status == 200 for status, _ in health), health
        assert max(s for _, s in health) < HEALTH_LIMIT_S, figures
        assert card[0] == 200 and fleet[0] == 200, (card, fleet)
        # Measured while every slow connection was still held open by the server.
        assert sum(raw_http.still_open(s) for s in slow) == HALF_SENT

    # Their clients gone, the streams' slots are free again (each as soon as the server
    # notices its client left): the same tokens fill the gateway once more.
    wait_until("every stream slot to be free", lambda: open_streams_now(system) == 0,
               timeout=60)
    with ExitStack() as held:
        for token in ops[:2]:
            open_streams(system, token, STREAMS // 2, held)
        assert open_streams_now(system) == STREAMS
        assert refused(system, ops[2], 503)["error"]["code"] == "streams_full"
    assert timed_get(system, "/healthz")[0] == 200


def test_idle_half_sent_connections_are_closed_by_the_server(system: System) -> None:
    with ExitStack() as held:
        slow = [held.enter_context(raw_http.half_sent(system.gateway.base_url))
                for _ in range(20)]
        started = time.monotonic()
        wait_until("the server to drop idle half-sent requests",
                   lambda: not any(raw_http.still_open(s) for s in slow), timeout=90)
        print(f"idle half-sent connections closed after {time.monotonic() - started:.0f} s")
    assert timed_get(system, "/healthz")[0] == 200


def test_stream_caps_a_leaving_client_and_a_stopping_gateway(system: System) -> None:
    restart(system, TRANSIT_HTTP_STREAMS="3", TRANSIT_STREAMS_PER_TOKEN="2")
    first, second = system.token("ops"), system.token("ops")
    with ExitStack() as held:
        mine = open_streams(system, first, 2, held)
        body = refused(system, first, 429)  # the (cap+1)-th stream of a token
        assert "2" in body["error"]["message"], body  # type: ignore[operator]
        theirs = open_streams(system, second, 1, held)
        refused(system, second, 503)  # the gateway's cap, reached by two tokens
        # A client that goes away frees its slot.
        mine[0].close()
        wait_until("the left slot to be free", lambda: open_streams_now(system) == 2,
                   timeout=60)
        streams = [mine[1], *theirs, *open_streams(system, first, 1, held)]
        started = time.monotonic()
        system.gateway.stop()
        assert all(s.ended(timeout=15) for s in streams), "a stream outlived the gateway"
        print(f"gateway with open streams stopped in {time.monotonic() - started:.1f} s")



def _no_content(_environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """Any application: what is tested is what waitress answers before it is called."""
    start_response("204 No Content", [])
    return [b""]


@pytest.mark.parametrize(("host", "loopbacks"), [("127.0.0.1", ["127.0.0.1"]),
                                                 ("*", ["127.0.0.1", "::1"])])
def test_every_address_of_the_host_refuses_in_the_api_format(host: str,
                                                             loopbacks: list[str]) -> None:
    """A `TRANSIT_HTTP` host that resolves to several addresses (`*`: every IPv4 and IPv6
    one) gets a server per address; a request each of them refuses itself (headers over
    the limit) is answered like one the API refuses, with its JSON error and `nosniff`,
    on every address."""
    server = make_server(_no_content, host, free_port(), streams=1)
    runner = threading.Thread(target=server.run, daemon=True)
    runner.start()
    try:
        listening = server.effective_listen if isinstance(server, MultiSocketServer) \
            else [(server.effective_host, server.effective_port)]
        # Each address reached over its own family's loopback.
        assert sorted("::1" if ":" in address else "127.0.0.1"
                      for address, _port in listening) == loopbacks, listening
        port = listening[0][1]
        for loopback in loopbacks:
            client = http.client.HTTPConnection(loopback, port, timeout=30)
            client.request("GET", "/", headers={"X-Padding": "a" * (MAX_HEADER_BYTES + 1)})
            answer = client.getresponse()
            body = answer.read()
            client.close()
            assert (loopback, answer.status, answer.getheader("Content-Type"),
                    answer.getheader("X-Content-Type-Options")) == (
                loopback, 400, "application/json", "nosniff"), body
            assert_error_shape(json.loads(body))
    finally:
        server.close()
        runner.join(timeout=10)
