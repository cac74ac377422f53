"""Riders from outside: a gateway for a module's tests, and the rider's requests (sign up,
log in, link a card) as a passenger's phone makes them."""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from testbed.broker import Broker
from testbed.gateway import Gateway
from tests.conftest import System, gateway_test_settings
from tests.support import raw_http
from tests.support.commands import transit_here

DEVICE, VEHICLE = "SBY-0042-A", "SBY-0042"
PASSWORD = "naik-suroboyo-bus"


@contextmanager
def rider_system(db_url: str, broker: Broker, folder: Path, **settings: str
                 ) -> Iterator[System]:
    """A migrated database, a registered validator and a gateway, for one module's tests
    (a gateway per test would cost seconds each)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRANSIT_")}
    env.update(TRANSIT_DATABASE_URL=db_url, TRANSIT_MQTT_URL=broker.url,
               TRANSIT_TOPIC_PREFIX=f"t{uuid.uuid4().hex[:10]}/v1",
               TRANSIT_GATEWAY_ID=f"gw-{uuid.uuid4().hex[:8]}",
               **{**gateway_test_settings(), **settings})
    transit_here("db", "upgrade", env=env)
    secret = bytes.fromhex(transit_here("devices", "add", DEVICE, "--vehicle", VEHICLE,
                                        env=env).stdout.strip().splitlines()[-1])
    log = folder / "gateway.log"
    gateway = Gateway(env, log).start()
    try:
        yield System(env, gateway, DEVICE, secret, broker)
    finally:
        gateway.stop()
    text = log.read_text()
    assert "Traceback (most recent call last)" not in text, text[-4000:]


def send(system: System, method: str, path: str, body: Any = None, token: str | None = None,
         source: str = "127.0.0.1") -> raw_http.Answer:
    """One request from `source` (any 127.x.y.z), its whole answer."""
    data = b"" if body is None else json.dumps(body).encode()
    head = [f"{method} {path} HTTP/1.1", "Host: transit", "Connection: close",
            "Content-Type: application/json", f"Content-Length: {len(data)}"]
    if token:
        head.append(f"Authorization: Bearer {token}")
    return raw_http.send(system.gateway.base_url,
                         ("\r\n".join(head) + "\r\n\r\n").encode() + data, source)


def call(system: System, method: str, path: str, body: Any = None, token: str | None = None,
         source: str = "127.0.0.1") -> tuple[int, Any]:
    """One request from `source` (any 127.x.y.z), its status and JSON body (None if none)."""
    answer = send(system, method, path, body, token, source)
    return answer.status, answer.json() if answer.body else None


def phone() -> str:
    """An address of its own (sign-ups are limited per address, and a module's tests sign
    up more riders than one address may)."""
    n = uuid.uuid4().int
    return f"127.{200 + n % 50}.{n >> 8 & 255}.{1 + (n >> 16) % 254}"


def sign_up(system: System, email: str, password: str = PASSWORD) -> int:
    status, body = call(system, "POST", "/api/v1/rider/accounts",
                        {"email": email, "password": password}, source=phone())
    assert status == 201, body
    return int(body["account_id"])


def log_in(system: System, email: str, password: str = PASSWORD,
           source: str = "127.0.0.1") -> str:
    status, body = call(system, "POST", "/api/v1/rider/login",
                        {"email": email, "password": password}, source=source)
    assert status == 200, body
    return str(body["token"])


def rider(system: System) -> tuple[str, str]:
    """A new account's e-mail and a token of it."""
    email = f"r{uuid.uuid4().hex[:10]}@contoh.id"
    sign_up(system, email)
    return email, log_in(system, email)


def issue(system: System, admin: str, card: str, balance: int = 0) -> str:
    """Issue a card through the API; its check code."""
    status, body = call(system, "POST", "/api/v1/cards", {"card": card}, admin)
    assert status == 201 and re.fullmatch(r"[0-9]{8}", body["check_code"]), body
    if balance:
        status, _ = call(system, "POST", f"/api/v1/cards/{card}/topups",
                         {"amount": balance, "reference": f"init-{card}"}, admin)
        assert status == 201
    return str(body["check_code"])


def link(system: System, token: str, card: str, code: str, source: str = "127.0.0.1"
         ) -> tuple[int, Any]:
    return call(system, "POST", "/api/v1/rider/cards", {"card": card, "check_code": code},
                token, source)


def other_code(code: str) -> str:
    return f"{(int(code) + 1) % 10 ** 8:08d}"


# One flat fare at every hour, so that what taps cost does not depend on when a test
# runs: a full fare, then a transfer that costs the difference (nothing).
FLAT_FARES = """
currency = "IDR"
timezone = "Asia/Jakarta"
categories = ["regular"]
[[fares]]
routes = ["*"]
amount = { regular = 5000 }
[transfers]
window_minutes = 120
max_transfers = 2
"""
