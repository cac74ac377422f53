"""`transit demo` as a new user runs it: no TRANSIT_*_URL settings, nothing else running
for it; the card it names for the riders' page links with the check code it prints;
within a minute buses are live, taps charged and receipted, the day settles and
reconciles, and Ctrl-C stops everything."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from fare_gateway.fares.policy import builtin_policy
from ledger.settlement import BusinessCalendar

TRANSIT = str(Path(sys.executable).parent / "transit")


def _get(url: str, token: str) -> dict:  # type: ignore[type-arg]
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


def _post(url: str, body: dict, token: str | None = None) -> dict:  # type: ignore[type-arg]
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


def test_the_demo_runs_end_to_end(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRANSIT_")}
    started = time.monotonic()
    proc = subprocess.Popen([TRANSIT, "demo"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = started + 60
        while len(lines) < 5 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert len(lines) >= 5, f"demo printed {lines}"
        assert re.fullmatch(r"map: http://127\.0\.0\.1:\d+/", lines[0]), lines[0]
        tokens = {}
        for line, role in zip(lines[1:4], ("admin", "ops", "finance"), strict=True):
            prefix = f"{role} token: "
            assert line.startswith(prefix), line
            tokens[role] = line[len(prefix):]
        base = lines[0].removeprefix("map: ").rstrip("/")
        db = tmp_path / "transit-demo" / "transit.db"
        assert db.exists()
        # The card it names links on the riders' page with the check code it prints.
        rider_line = re.fullmatch(rf"riders' page: {re.escape(base)}/rider/ \(sign up, then "
                                  r"link card ([0-9A-F]+) with check code (\d{8})\)", lines[4])
        assert rider_line, lines[4]
        demo_card, code = rider_line.groups()
        account = {"email": "warga@contoh.id", "password": "suroboyo-bus-2026"}
        _post(f"{base}/api/v1/rider/accounts", account)
        rider = _post(f"{base}/api/v1/rider/login", account)["token"]
        linked = _post(f"{base}/api/v1/rider/cards", {"card": demo_card, "check_code": code},
                       rider)
        assert linked["card"] == demo_card and linked["balance"] > 0, linked

        live = charged = receipted = False
        while time.monotonic() < deadline and not (live and charged and receipted):
            vehicles = _get(f"{base}/api/v1/vehicles", tokens["ops"])["vehicles"]
            live = any(v["state"] == "live" for v in vehicles)
            status = [ln for ln in lines if ln.startswith("status: ")]
            if status:
                m = re.search(r"(\d+) taps charged.*?(\d+) receipts at the buses", status[-1])
                assert m, status[-1]
                charged, receipted = int(m.group(1)) > 0, int(m.group(2)) > 0
            time.sleep(1)
        assert live and charged and receipted, (live, charged, receipted, lines[-3:])
        assert time.monotonic() - started < 60

        # The ledger holds those charges: settle today (still open: provisional) and
        # reconcile.
        cli_env = dict(env, TRANSIT_DATABASE_URL=f"sqlite:///{db}")
        policy = builtin_policy()
        today = BusinessCalendar(policy.timezone, policy.service_day_start_min).day_of(
            int(time.time() * 1000)).isoformat()
        settle = subprocess.run([TRANSIT, "settle", today, "--out", str(tmp_path / "out"),
                                 "--quiet"], env=cli_env, capture_output=True, text=True,
                                timeout=60)
        assert settle.returncode == 0, settle.stderr
        manifest = json.loads((tmp_path / "out" / f"settlement-{today}.json").read_text())
        assert manifest["totals"]["fare"] > 0 and manifest["entries"] > 0
        csv = (tmp_path / "out" / f"settlement-{today}.csv").read_text()
        assert ",fare," in csv and ",topup," in csv
        reconcile = subprocess.run([TRANSIT, "reconcile"], env=cli_env, capture_output=True,
                                   text=True, timeout=60)
        assert reconcile.returncode == 0, reconcile.stdout + reconcile.stderr
        assert "reconciled: no mismatch" in reconcile.stdout
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    reader.join(timeout=5)
    assert code == 0, proc.stderr.read() if proc.stderr else ""  # type: ignore[union-attr]
    assert lines[-1] == "demo stopped"
    # Everything it started has stopped: nobody answers on the map's port any more.
    try:
        urllib.request.urlopen(f"{base}/healthz", timeout=2)
        raise AssertionError("the gateway is still running after Ctrl-C")
    except OSError:
        pass
    stderr = proc.stderr.read() if proc.stderr else ""  # type: ignore[union-attr]
    assert "Traceback" not in stderr, stderr[-3000:]
