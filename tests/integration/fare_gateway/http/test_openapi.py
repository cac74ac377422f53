"""The HTTP app from outside, on a live `transit gateway` (contract section 3): every
operation of its own `/openapi.json` answers with the contract's headers and error
format and, given real data, with bodies its description admits; and schemathesis,
driving every operation from the description, finds no 5xx and no answer that breaks
the description."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from tests.conftest import System
from tests.integration.tracking.test_positions import wait_until
from tests.support import raw_http
from tests.support.clients import make_tap
from transit.wire import Position, Receipt

CARD = "04A1B2C3D4E5F6"
VEHICLE = "SBY-0042"
CONFIG = Path(__file__).with_name("schemathesis.toml")


def fetch(system: System, method: str, path: str, token: str | None = None,
          body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request; a stream is closed once its first event has come."""
    host, port = system.gateway.base_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=20)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if body is not None:
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        if resp.getheader("Content-Type", "").startswith("text/event-stream"):
            payload = resp.readline()
        else:
            payload = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, payload
    finally:
        conn.close()


def seed(system: System, admin: str) -> None:
    """A charged tap on the card, the vehicle's position and its validator's status."""
    system.issue(CARD, 50_000)
    now = int(time.time() * 1000)
    peer = system.peer()
    try:
        peer.subscribe(system.receipt_topic())
        peer.publish(system.tap_topic(), make_tap(system.secret, system.device_id, 1, CARD,
                                                  ts=now - 60_000).encode())
        receipt = Receipt.parse(peer.wait_for(lambda m: len(m) >= 1)[0][1])
        assert receipt.status == "charged", receipt
        position = Position(device_id=system.device_id, vehicle_id=VEHICLE, route_id="R1",
                            ts=now - 1_000, lat_e6=-7257500, lon_e6=112752100,
                            speed_cms=1250, bearing_deg=90).signed(system.secret)
        peer.publish(f"{system.prefix}/dev/{system.device_id}/pos", position.encode())
        peer.publish(f"{system.prefix}/dev/{system.device_id}/status",
                     json.dumps({"online": True, "spool_depth": 0}).encode(), retain=True)
    finally:
        peer.close()

    def listed(path: str, key: str) -> bool:
        status, body = system.http.get(path, token=admin)
        return status == 200 and len(body[key]) == 1 and (
            key != "validators" or body[key][0]["spool_depth"] == 0)

    wait_until("the vehicle", lambda: listed("/api/v1/vehicles", "vehicles"))
    wait_until("the validator's status", lambda: listed("/api/v1/validators", "validators"))


def unseed(system: System) -> None:
    peer = system.peer()
    try:  # the broker is shared by the session: clear the retained status
        peer.publish(f"{system.prefix}/dev/{system.device_id}/status", b"", retain=True)
    finally:
        peer.close()


def assert_error(status: int, payload: bytes, where: str) -> None:
    body = json.loads(payload)
    assert set(body) == {"error"}, where
    assert set(body["error"]) == {"code", "message"}, where
    assert body["error"]["code"] and body["error"]["message"], where
    assert 400 <= status < 500, where


def test_every_operation_carries_the_contract_headers_and_its_described_body(
        system: System) -> None:
    admin = system.token("admin")
    seed(system, admin)
    try:
        status, headers, raw = fetch(system, "GET", "/openapi.json")
        assert status == 200 and headers["content-type"] == "application/json", headers
        assert headers["x-content-type-options"] == "nosniff"
        spec = json.loads(raw)
        assert spec["openapi"] == "3.1.0"
        today = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 7 * 3600 - 3 * 3600))
        values = {"card": CARD, "day": today, "vehicle_id": VEHICLE, "name": "map.js",
                  "dispute_id": "1", "adjustment_id": "1", "alert_id": "0" * 32,
                  "route_id": "R1"}
        seen = 0
        for template, item in spec["paths"].items():
            path = re.sub(r"{(\w+)}", lambda m: values[m.group(1)], template)
            for method, op in item.items():
                seen += 1
                check_operation(system, spec, method.upper(), path, op, admin)
        assert seen == sum(len(item) for item in spec["paths"].values()) >= 16
        # Errors outside any operation keep the format and the headers too.
        for method, path, want in (("GET", "/api/v1/nothing-here", 404),
                                   ("DELETE", f"/api/v1/cards/{CARD}", 405)):
            status, headers, payload = fetch(system, method, path, admin)
            assert status == want, (method, path, status)
            assert_error(status, payload, f"{method} {path}")
            assert headers["x-content-type-options"] == "nosniff"
            assert headers["cache-control"] == "no-store"
        # The gateway's records reach tracking's views through the wiring.
        status, vehicle = system.http.get(f"/api/v1/vehicles/{VEHICLE}", token=admin)
        assert status == 200 and vehicle["taps_today"] == 1, vehicle
        status, listed = system.http.get("/api/v1/validators", token=admin)
        assert [(v["device_id"], v["vehicle_id"], v["registration"], v["online"])
                for v in listed["validators"]] == [(system.device_id, VEHICLE, "active",
                                                    True)], listed
    finally:
        unseed(system)


def check_operation(system: System, spec: dict[str, Any], method: str, path: str,
                    op: dict[str, Any], admin: str) -> None:
    where = f"{method} {path}"
    body = b"{}" if "requestBody" in op else None
    if path.endswith("/topups"):
        body = json.dumps({"amount": 1000, "reference": "headers-1"}).encode()
    status, headers, payload = fetch(system, method, path, admin, body)
    assert status < 500, (where, status, payload[:300])
    assert str(status) in op["responses"], (where, status, payload[:300])
    assert headers.get("x-content-type-options") == "nosniff", (where, headers)
    assert headers.get("cache-control") == "no-store", (where, headers)
    if status >= 400:
        assert_error(status, payload, where)
    media = headers["content-type"].split(";")[0]
    response = op["responses"][str(status)]
    if "$ref" in response:
        response = spec["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    content = response.get("content", {})
    assert media in content, (where, media, list(content))
    schema = content[media]["schema"]
    if media == "application/json" and status < 300 and schema:
        Draft202012Validator({**schema, "components": spec["components"]}).validate(
            json.loads(payload))
    if op["security"]:
        status, headers, payload = fetch(system, method, path, None, body)
        assert status == 401, (where, status)
        assert_error(status, payload, where)
        assert headers.get("cache-control") == "no-store", (where, headers)
        assert headers.get("x-content-type-options") == "nosniff", (where, headers)
    else:
        status, headers, _ = fetch(system, method, path)
        assert headers.get("x-content-type-options") == "nosniff", (where, headers)


def test_schemathesis_finds_no_server_error_and_no_departure_from_the_description(
        system: System, tmp_path: Path) -> None:
    """Every operation, positive and negative inputs, with an admin token, and every
    check schemathesis has (its default); what they leave out, and why, is in
    schemathesis.toml beside this file."""
    admin = system.token("admin")
    seed(system, admin)
    try:
        spec = system.http.get("/openapi.json")[1]
        operations = sum(len(item) for item in spec["paths"].values())
        st = Path(sys.executable).with_name("st")
        command = [
            str(st), "--config-file", str(CONFIG), "run",
            f"{system.gateway.base_url}/openapi.json",
            "--header", f"Authorization: Bearer {admin}",
            "--max-examples", "25",
            "--request-timeout", "10",
            "--generation-database", "none",
            "--no-color",
        ]
        result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True,
                                timeout=300)
    finally:
        unseed(system)
    output = result.stdout + result.stderr
    print(output[-8000:])  # pytest shows it when the test fails
    assert result.returncode == 0, output[-12_000:]
    # Every operation but the description's own location, which schemathesis reads as
    # the schema rather than testing it (the test above covers it).
    assert re.search(rf"Tested: {operations - 1}\b", output), output[-3000:]
    assert re.search(r"\b\d+ generated, \d+ passed\b", output), output[-3000:]


def test_requests_refused_before_the_app_keep_the_error_format_and_headers(
        system: System) -> None:
    """What the HTTP server refuses itself, before any view runs: a request line that is
    not HTTP, headers or a body over their limits."""
    base = system.gateway.base_url
    refused = {
        "malformed": b"NOT HTTP AT ALL\r\n\r\n",
        "headers over 16 KiB": b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: "
                               + b"a" * 20_000 + b"\r\n\r\n",
        "body over 64 KiB": b"POST /api/v1/cards HTTP/1.1\r\nHost: t\r\n"
                            b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n",
    }
    for what, raw in refused.items():
        answer = raw_http.send(base, raw)
        assert answer.status == 400, (what, answer)
        assert answer.headers["content-type"] == "application/json", (what, answer)
        assert answer.headers["x-content-type-options"] == "nosniff", (what, answer)
        assert_error(answer.status, answer.body, what)
