"""`transit demo` as a new user runs it: no TRANSIT_*_URL settings, nothing else running
for it; the card it names for the riders' page links with the check code it prints;
finance finds the history the README's walk-through reads (yesterday settled with its
fares, late-tap correction and top-ups; today's refund, transfer and four-eyes
adjustment; the float of both days chaining); within a minute buses are live, taps
charged and receipted, the day settles and reconciles, and Ctrl-C stops everything."""

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
from datetime import date, timedelta
from pathlib import Path

from fare_gateway.fares.policy import builtin_policy
from hardware_sim.history import Api, play_today
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


def _lines_csv(base: str, day: str, token: str) -> str:
    req = urllib.request.Request(f"{base}/api/v1/settlements/{day}/lines.csv",
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.read().decode()  # type: ignore[no-any-return]


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
        while len(lines) < 11 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert len(lines) >= 11, f"demo printed {lines}"
        assert re.fullmatch(r"map: http://127\.0\.0\.1:\d+/", lines[0]), lines[0]
        # No TRANSIT_MAP_TILES: it says so, and how to set one.
        assert lines[1].startswith("map tiles: none, ") and "TRANSIT_MAP_TILES=https://" in (
            lines[1]), lines[1]
        tokens = {}
        holders = ("admin", "ops", "finance", "Sari Wulandari", "Budi Santoso")
        prefixes = ("admin token: ", "ops token: ", "finance token: ",
                    "finance token (Sari Wulandari): ", "finance token (Budi Santoso): ")
        for line, holder, prefix in zip(lines[2:7], holders, prefixes, strict=True):
            assert line.startswith(prefix), line
            tokens[holder] = line[len(prefix):]
        base = lines[0].removeprefix("map: ").rstrip("/")
        db = tmp_path / "transit-demo" / "transit.db"
        assert db.exists()
        # The card it names links on the riders' page with the check code it prints.
        rider_line = re.fullmatch(rf"riders' page: {re.escape(base)}/rider/ \(sign up, then "
                                  r"link card ([0-9A-F]+) with check code (\d{8})\)", lines[7])
        assert rider_line, lines[7]
        policy = builtin_policy()
        calendar = BusinessCalendar(policy.timezone, policy.service_day_start_min)
        today = calendar.day_of(int(time.time() * 1000)).isoformat()
        closed = (date.fromisoformat(today) - timedelta(days=1)).isoformat()
        assert lines[9] == (f"finance: settled day {closed}, float {base}/api/v1/finance/"
                            f"float/{closed} (README: Finance on the demo)"), lines[9]
        assert lines[10].startswith("drill: "), lines[10]
        sari = tokens["Sari Wulandari"]

        # Yesterday is closed and settled: the history's fares, the correction its late
        # tap caused and the kiosks' top-ups, as worked out by hand in hardware_sim/history.py.
        settled = _get(f"{base}/api/v1/settlements/{closed}", sari)
        assert settled["status"] == "final", settled
        assert settled["totals"] == {"fare": 27500, "correction": -5000, "topup": 125000,
                                     "refund": 0, "transfer": 0, "adjustment": 0}, settled
        assert _lines_csv(base, closed, sari).splitlines()[1:] == [
            f"{closed},{line},IDR" for line in (
                f"correction,{closed},SBY,R1,regular,1,-5000",
                f"fare,{closed},SBY,R1,regular,2,10000",
                f"fare,{closed},SBY,R1,student,1,1000",
                f"fare,{closed},SBY,R2,regular,2,5000",
                f"fare,{closed},SBY,R2,student,1,2500",
                f"fare,{closed},TSS,TS1,regular,1,5000",
                f"fare,{closed},TSS,TS1,senior,1,0",
                f"fare,{closed},TSS,TS1,student,2,4000",
                f"topup,{closed},,,,5,125000")]
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
                m = re.search(r"(\d+) taps charged.*?; validators \d+ online, \d+ silent.*?"
                              r"(\d+) receipts at the buses", status[-1])
                assert m, status[-1]
                charged, receipted = int(m.group(1)) > 0, int(m.group(2)) > 0
            time.sleep(1)
        assert live and charged and receipted, (live, charged, receipted, lines[-3:])
        assert time.monotonic() - started < 60

        # Today (played by the demo beside its buses, through the API): the refund of
        # Dewi's K1 fare of yesterday, her lost card's balance moved to the new one, the
        # adjustment Sari asked for and Budi approved.
        pending: list[dict] = []  # type: ignore[type-arg]
        while not pending and time.monotonic() < deadline:  # Budi's ask is its last step
            pending = _get(f"{base}/api/v1/adjustments?status=pending", sari)["adjustments"]
            time.sleep(0.3)
        assert [(a["amount"], a["requested_by"]["name"]) for a in pending] == [
            (5000, "Budi Santoso")], pending  # left for the README's reader to approve
        today_lines = _lines_csv(base, today, sari).splitlines()
        for line in (f"{today},refund,{closed},TSS,TS1,regular,1,-5000,IDR",
                     f"{today},transfer,{today},,,,1,45000,IDR"):
            assert line in today_lines, (line, today_lines)
        assert [ln for ln in today_lines if ",adjustment," in ln] == [
            f"{today},adjustment,{today},,,,1,20000,IDR"], today_lines
        # The float of the two days chains: today opens where yesterday closed.
        before = _get(f"{base}/api/v1/finance/float/{closed}", sari)
        assert (before["opening"], before["topups"], before["fares"], before["corrections"],
                before["closing"], before["cards_total"]) == (
            0, 125000, -27500, 5000, 102500, 102500), before
        now = _get(f"{base}/api/v1/finance/float/{today}", sari)
        assert now["opening"] == before["closing"] and now["closing"] == now["cards_total"]
        assert (now["refunds"], now["transfers"], now["adjustments"]) == (5000, 0, 20000), now
        # Played again (as a restarted demo does), today's history does nothing twice: it
        # needs no check code, since nothing is left to link or replace.
        assert play_today(Api(base), {n: tokens[n] for n in holders[3:]}, {},
                          date.fromisoformat(closed)) == []
        assert [ln for ln in _lines_csv(base, today, sari).splitlines()
                if ",refund," in ln or ",transfer," in ln or ",adjustment," in ln] == [
            ln for ln in today_lines if ",refund," in ln or ",transfer," in ln
            or ",adjustment," in ln]
        # The ledger holds those charges: settle today (still open: provisional) and
        # reconcile.
        cli_env = dict(env, TRANSIT_DATABASE_URL=f"sqlite:///{db}")
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
    assert "history is incomplete" not in stderr, stderr[-3000:]
