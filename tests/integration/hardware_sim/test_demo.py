"""A second `transit demo` while one runs (real commands, as a new user tries them):
it fails before printing anything, saying why, instead of printing the map address and
tokens of the other one; and the demo knows its own gateway from another's by its id."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from fare_gateway.schema import upgrade
from hardware_sim.demo import PortTaken, _start_gateway
from ledger.adapters.db import make_engine
from testbed.broker import Broker
from testbed.environment import REDIS_URL
from testbed.gateway import transit, transit_exe
from testbed.ports import free_port
from tests.integration.commands import clean_env, failed
from transit.settings import Settings


def test_a_second_demo_fails_and_says_why(tmp_path: Path) -> None:
    env = clean_env()
    data = tmp_path / "transit-demo"
    first = subprocess.Popen([transit_exe(), "demo", "--buses", "1", "--data-dir", str(data)],
                             cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    lines: list[str] = []

    def read() -> None:
        assert first.stdout is not None
        for line in first.stdout:
            lines.append(line.rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()
    try:
        deadline = time.monotonic() + 90
        while not lines and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert lines and lines[0].startswith("map: "), (lines, first.poll())
        address = re.fullmatch(r"map: http://(127\.0\.0\.1:\d+)/", lines[0])
        assert address, lines[0]

        # The same data folder: its database, Redis and spools are the first demo's.
        same = transit("demo", "--buses", "1", "--data-dir", str(data), env=env, check=False)
        assert same.returncode == 1
        failed(same, f"another transit demo (pid {first.pid}) is running in {data}",
               "--data-dir")
        assert same.stdout == ""

        # A folder of its own, but the first demo's HTTP address.
        taken = transit("demo", "--buses", "1", "--data-dir", str(tmp_path / "second"),
                        env=dict(env, TRANSIT_HTTP=address.group(1)), check=False)
        assert taken.returncode == 1
        failed(taken, f"TRANSIT_HTTP {address.group(1)} is already in use")
        assert taken.stdout == ""
        assert first.poll() is None, "the first demo must be left running"
    finally:
        first.send_signal(signal.SIGINT)
        first.wait(timeout=60)


class ForeignHealth(BaseHTTPRequestHandler):
    """Another gateway's /healthz (another demo's): healthy, but not ours."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = json.dumps({"status": "ok", "gateway": "someone-else", "database": "ok",
                           "broker": "ok"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


def test_the_demo_s_gateway_is_known_by_its_own_id(tmp_path: Path) -> None:
    """The port the demo chose is taken, before its gateway binds it, by a gateway that
    answers /healthz: the demo must not take that answer for its own gateway's."""
    folder = tmp_path / "transit-demo"
    folder.mkdir()
    broker = Broker(tmp_path / "mosquitto").start()
    foreign = ThreadingHTTPServer(("127.0.0.1", free_port()), ForeignHealth)
    threading.Thread(target=foreign.serve_forever, daemon=True).start()
    taken = f"127.0.0.1:{foreign.server_address[1]}"
    run = Settings.from_env({
        "TRANSIT_DATABASE_URL": f"sqlite:///{folder}/transit.db", "TRANSIT_REDIS_URL": REDIS_URL,
        "TRANSIT_MQTT_URL": broker.url, "TRANSIT_HTTP": taken,
        "TRANSIT_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:10]}/v1",
        "TRANSIT_GATEWAY_ID": f"demo-{uuid.uuid4().hex[:8]}", "TRANSIT_LOG_LEVEL": "WARNING"})
    engine = make_engine(run.database_url)
    upgrade(engine)
    engine.dispose()
    gateway = None
    try:
        # An address the user gave is not changed: the demo fails, saying why.
        with pytest.raises(PortTaken, match=f"TRANSIT_HTTP {taken} is already in use"):
            _start_gateway(run, folder, http_chosen=False)
        # One it chose is chosen again, and the gateway found is this run's.
        gateway, started = _start_gateway(run, folder, http_chosen=True)
        assert started.http != taken
        with urllib.request.urlopen(f"http://{started.http}/healthz", timeout=5) as resp:
            assert json.loads(resp.read())["gateway"] == run.gateway_id
    finally:
        if gateway is not None:
            gateway.send_signal(signal.SIGTERM)
            gateway.wait(timeout=60)
        foreign.shutdown()
        foreign.server_close()
        broker.stop()
