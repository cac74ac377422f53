"""How the gateway serves its HTTP app: waitress, set up so that slow, idle or many
clients cannot starve it (contract section 10; docs/operations.md, "Serving many
clients", has the figures).

Waitress reads every request in full on its one event loop before a thread sees it, so
a half-sent request costs a socket, not a thread: what must be large enough is the
number of sockets it keeps (its default of 100 let about 100 half-sent requests stop it
from accepting anything else for 120 s), and what must be small is how long a silent
one is kept. Only a vehicle stream holds a thread for long, so there is a thread for
each stream slot (`TRANSIT_HTTP_STREAMS`) beside those of the rest of the API.
"""

from __future__ import annotations

import json
import logging
import resource
from typing import Any

from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, MultiSocketServer, create_server
from waitress.task import ErrorTask

from fare_gateway.http.app import MAX_BODY_BYTES

log = logging.getLogger(__name__)

# The threads left for everything but the streams: what served the whole API, streams
# included, before the streams had threads of their own. A thread costs little: 152
# instead of 24 added 2 MiB to the gateway's memory.
API_THREADS = 24
# Sockets kept open at once: ten times the half-sent requests of section 10, and cheap.
# With poll() (select() cannot watch a descriptor numbered past 1,024) /healthz took
# 2-3 ms beside 200 half-sent requests, 12-24 ms beside 1,900.
CONNECTION_LIMIT = 2000
# A connection silent this long between requests, or in the middle of one, is closed;
# the check runs every CLEANUP_S, so one lives IDLE_S to IDLE_S + CLEANUP_S.
IDLE_S = 15
CLEANUP_S = 5
# Every socket buffers at most this much of a request before it is refused: bounded
# memory however many there are (2,000 x 80 KiB is 160 MiB at worst).
MAX_HEADER_BYTES = 16 * 1024
# Files besides the HTTP sockets: the database pool, Redis, the broker, the logs (each
# stream's own Redis subscription is counted apart).
FILES_BESIDE_SOCKETS = 256
# The app's name for a body over its limit, for waitress's refusal of the same.
TOO_LARGE = {413: "too_large"}


class _JsonErrorTask(ErrorTask):  # type: ignore[misc]
    """A request waitress refuses itself (malformed, headers or body over their limits),
    answered in the API's error format, as a 400 like all bad input (contract section
    3), with the header every response carries."""

    def execute(self) -> None:
        error = self.request.error
        code = TOO_LARGE.get(error.code) or error.reason.lower().replace(" ", "_")
        body = json.dumps({"error": {"code": code,
                                     "message": f"{error.reason}: {error.body}"}}).encode()
        self.status = ("400 Bad Request" if 400 <= error.code < 500
                       else f"{error.code} {error.reason}")
        self.response_headers.extend([("Content-Type", "application/json"),
                                      ("X-Content-Type-Options", "nosniff")])
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class _Channel(HTTPChannel):  # type: ignore[misc]
    error_task_class = _JsonErrorTask


def make_server(app: Any, host: str, port: int, streams: int
                ) -> BaseWSGIServer | MultiSocketServer:
    """A waitress server for `app` on `host:port` with room for `streams` live streams
    beside the API; raises OSError when it cannot listen."""
    server = create_server(
        app, host=host, port=port, ident="transit",
        threads=streams + API_THREADS,
        connection_limit=_connection_limit(streams),
        asyncore_use_poll=True,
        channel_timeout=IDLE_S,
        cleanup_interval=CLEANUP_S,
        # Keeps a connection read while its request is served, so that a stream notices
        # at once that its client left (`waitress.client_disconnected`) and frees its slot.
        channel_request_lookahead=1,
        max_request_header_size=MAX_HEADER_BYTES,
        # The app refuses a larger body with a 400; waitress need not read one past it.
        max_request_body_size=MAX_BODY_BYTES + 1,  # waitress refuses a body of this size
    )
    # A host that resolves to several addresses (`localhost` to 127.0.0.1 and ::1) gets
    # a listening server per address, which create_server hands back wrapped in a
    # MultiSocketServer: each of them accepts connections with its own channel class.
    # (Its map also holds the event loop's wake-up triggers.)
    dispatchers = list(server.map.values()) if isinstance(server, MultiSocketServer) \
        else [server]
    for listener in dispatchers:
        if isinstance(listener, BaseWSGIServer):
            listener.channel_class = _Channel
    return server


def _connection_limit(streams: int) -> int:
    """CONNECTION_LIMIT, or fewer where the process may not open that many files.

    The soft limit on open files is raised as far as the hard one allows (often 1,024
    soft, far more hard); a host whose hard limit is lower gets a smaller connection
    limit, said once in the log, rather than a server that fails to accept.
    """
    wanted = CONNECTION_LIMIT + streams + FILES_BESIDE_SOCKETS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    limit = CONNECTION_LIMIT if soft == resource.RLIM_INFINITY else min(
        CONNECTION_LIMIT, soft - streams - FILES_BESIDE_SOCKETS)
    if limit < CONNECTION_LIMIT:
        log.warning("open files are limited to %d: serving at most %d HTTP connections "
                    "(raise the limit, e.g. LimitNOFILE=%d)", soft, limit, wanted)
    return max(limit, 1)
