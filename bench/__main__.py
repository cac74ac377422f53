"""Run every benchmark, each in a process of its own, and print one table of the results.

    .venv/bin/python -m bench [--quick] [--only NAME,...] [--out FILE]

In order: tap_throughput (one gateway, then two), positions, settlement, finance_export,
repricing, statement, predictions, reader_latency (when pcscd and the vpcd reader driver are
installed), memory and mixed (taps, positions, map streams and readers at once; 30
minutes, `--mixed-minutes N`). Each benchmark's own output is shown as it runs; its key
figures are read from the JSON file it writes with `--json FILE`, or, for a script
without that option, from its printed lines. The table gives, for each figure, the
limit it approaches measured in the same run, the ratio figure / limit (one per limit
named, in their order: 0.17 / 0.30 is 17 % of the first limit and 30 % of the second),
the goal, and whether the goal is met.

`--quick` runs small sizes (a few minutes in all; mixed runs 2 minutes): a check that
everything works end to end, not figures to quote.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
Figures = dict[str, Any]


@dataclass(frozen=True)
class Row:
    """One line of the combined table."""

    benchmark: str
    figure: str
    limit: str
    goal: str
    verdict: str  # met | not met | - (no goal) | not run | failed
    ratio: str = "-"  # figure / limit, one per limit named (in their order), or -


@dataclass(frozen=True)
class Bench:
    """How to run one benchmark and read its figures."""

    name: str  # what --only selects
    label: str
    module: str
    args: list[str]
    quick_args: list[str]
    rows: Callable[[str, Figures], list[Row]]
    parse_stdout: Callable[[str], Figures] | None = None
    missing: Callable[[], str | None] = lambda: None  # why it cannot run here, if it cannot
    timeout_s: float = 3600


@dataclass
class Result:
    name: str
    label: str
    argv: list[str]
    status: str = "not run"  # ok | failed | not run
    reason: str = ""
    returncode: int | None = None
    seconds: float = 0.0
    figures_from: str = ""  # json | stdout
    figures: Figures = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)


def met(ok: bool) -> str:
    return "met" if ok else "not met"


def mib(kib: float) -> str:
    return f"{kib / 1024:.0f} MiB"


def ratio(*pairs: tuple[float | None, float | None]) -> str:
    """figure / limit for each (figure, limit) pair, joined by ` / `; `-` where either is
    missing (a limit not measured, a figure of nothing)."""
    out = []
    for figure, limit in pairs:
        ok = (isinstance(figure, int | float) and isinstance(limit, int | float)
              and limit == limit and figure == figure and limit > 0)
        out.append(_ratio(figure / limit) if ok else "-")  # type: ignore[operator]
    return " / ".join(out) if any(o != "-" for o in out) else "-"


def _ratio(x: float) -> str:
    return f"{x:.2f}" if x < 10 else f"{x:,.0f}"


# -- tap_throughput ------------------------------------------------------------------------------
# The script prints its figures; these are the names its `--json FILE` is to use as well.

TAP_PATTERNS = {
    "raw_mqtt_msg_s": r"raw Mosquitto[^:]*:\s*([\d,.]+|nan) msg/s",
    "db_insert_taps_s": r"database, [^:]*:\s*([\d,.]+|nan) taps/s",
    "gateways": r"end to end, (\d+) gateway",
    "end_to_end_taps_s": r"end to end, \d+ gateway\(s\):\s*([\d,.]+) taps/s",
    "taps": r"end to end, .*?taps/s \((\d+) taps",
    "publish_s": r"publishing took ([\d.]+)\s*s",
}
LATENCY_LINE = re.compile(
    r"tap-to-receipt at ([\d,]+) taps/s for (\d+)\s*s:\s*p50 ([\d.]+) ms, p99 ([\d.]+) ms, "
    r"max ([\d.]+) ms(?:, mean ([\d.]+) ms)?")
MISSING_LINE = re.compile(r"WARNING: (\d+) receipts missing")
RAW_LATENCY_LINE = re.compile(
    r"raw Mosquitto publish->subscribe at ([\d,]+) msg/s:\s*p50 ([\d.]+) ms, p99 ([\d.]+) ms, "
    r"max ([\d.]+) ms")


def _number(text: str) -> float | int:
    text = text.replace(",", "")
    return float(text) if "." in text or text == "nan" else int(text)


def parse_tap_throughput(out: str) -> Figures:
    """The figures of bench/tap_throughput.py from its printed lines.

    Same names as its `--json FILE` is to write: the runner reads either the same way.
    A "receipts missing" warning belongs to the latency run printed after it.
    """
    figures: Figures = {}
    for key, pattern in TAP_PATTERNS.items():
        m = re.search(pattern, out)
        if m:
            figures[key] = _number(m.group(1))
    latency: list[Figures] = []
    raw_latency: list[Figures] = []
    missing = 0
    for line in out.splitlines():
        if m := RAW_LATENCY_LINE.search(line):
            rate, p50, p99, top = m.groups()
            raw_latency.append({"rate_taps_s": _number(rate), "p50_ms": float(p50),
                                "p99_ms": float(p99), "max_ms": float(top)})
        elif m := MISSING_LINE.search(line):
            missing += int(m.group(1))
        elif m := LATENCY_LINE.search(line):
            rate, seconds, p50, p99, top, mean = m.groups()
            latency.append({"rate_taps_s": _number(rate), "seconds": int(seconds),
                            "p50_ms": float(p50), "p99_ms": float(p99), "max_ms": float(top),
                            "mean_ms": float(mean) if mean else None,
                            "receipts_missing": missing})
            missing = 0
    figures["latency"] = latency
    figures["raw_latency"] = raw_latency
    if "end_to_end_taps_s" not in figures:
        raise ValueError("no end-to-end figure in its output")
    return figures


def tap_rows(label: str, f: Figures) -> list[Row]:
    gws = int(f.get("gateways", 1))
    e2e = f.get("end_to_end_taps_s")
    pg = f.get("db_unnest_taps_s") or f.get("db_insert_taps_s")
    rows = [Row(label, f"end to end, {gws} gateway{'s' if gws > 1 else ''}: "
                       f"{_n(e2e)} taps/s",
                f"raw MQTT {_n(f.get('raw_mqtt_msg_s'))} msg/s; PostgreSQL "
                f"{_n(pg)} taps/s",
                "10,000 taps/s", met(e2e is not None and e2e >= 10_000),
                ratio((e2e, f.get("raw_mqtt_msg_s")), (e2e, pg)))]
    raw_at = {r.get("rate_taps_s", r.get("rate")): r for r in f.get("raw_latency") or []}
    runs = f.get("latency") or []
    at_goal = [r for r in runs if r["rate_taps_s"] == 1000] or runs[-1:]
    if not at_goal:
        rows.append(Row(label, "tap -> receipt latency: not measured", "-",
                        "p99 < 50 ms at 1,000 taps/s", "not met"))
    for r in at_goal:
        lost = int(r.get("receipts_missing") or 0)
        raw = raw_at.get(r["rate_taps_s"])
        rows.append(Row(label, f"tap -> receipt at {r['rate_taps_s']:,} taps/s: p50 "
                               f"{r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms"
                               + (f"; {lost} receipts missing" if lost else ""),
                        f"raw MQTT at the same rate: p99 {raw['p99_ms']:.1f} ms" if raw
                        else "-", "p99 < 50 ms at 1,000 taps/s, none lost",
                        met(r["rate_taps_s"] >= 1000 and r["p99_ms"] < 50 and lost == 0),
                        ratio((r["p99_ms"], raw["p99_ms"])) if raw else "-"))
    return rows


# -- the others (they write --json) --------------------------------------------------------------

def positions_rows(label: str, f: Figures) -> list[Row]:
    e2e = f["end_to_end_positions_s"]
    lost = f["positions"] - f["ingested"]
    return [Row(label, f"end to end, signed positions -> Redis: {e2e:,} positions/s"
                       + (f" ({lost:,} not ingested)" if lost else ""),
                f"raw MQTT {f['raw_mqtt_msg_s']:,} msg/s; Redis "
                f"{f['redis_position_s_1_conn']:,} positions/s (1 conn)",
                f"{f['goal_positions_s']:,} positions/s", met(e2e >= f["goal_positions_s"]),
                ratio((e2e, f["raw_mqtt_msg_s"]), (e2e, f["redis_position_s_1_conn"])))]


def settlement_rows(label: str, f: Figures) -> list[Row]:
    by_day = f["peak_rss_kib_by_day"]
    empty = min(by_day.values())
    return [
        Row(label, f"transit settle, {f['entries']:,} entries: {f['settle_s']:.1f} s, "
                   f"{f['settle_entries_s']:,} entries/s",
            f"PostgreSQL COPY {f['copy_entries_s']:,} entries/s; psycopg cursor "
            f"{f['cursor_entries_s']:,} entries/s", "- (none set)", "-",
            ratio((f["settle_entries_s"], f["copy_entries_s"]),
                  (f["settle_entries_s"], f["cursor_entries_s"]))),
        Row(label, f"peak RSS of transit settle: {mib(f['settle_peak_rss_kib'])}",
            f"settling an empty day: {mib(empty)}", "does not grow with the day (< +10 %)",
            met(f["settle_peak_rss_kib"] <= 1.1 * empty),
            ratio((f["settle_peak_rss_kib"], empty))),
        Row(label, f"settled again: files identical: {f['files_identical']}; reconcile "
                   f"{f['reconcile_s']:.1f} s, exit {f['reconcile_exit']}",
            "-", "identical files, reconcile passes",
            met(bool(f["files_identical"]) and f["reconcile_exit"] == 0)),
    ]


def finance_export_rows(label: str, f: Figures) -> list[Row]:
    rss, empty = f["export_peak_rss_kib"], f["empty_export_peak_rss_kib"]
    return [
        Row(label, f"detail export, {f['rows']:,} entries: {f['export_s']:.1f} s, "
                   f"{f['export_rows_s']:,} rows/s",
            f"PostgreSQL COPY TO STDOUT {f['copy_rows_s']:,} rows/s; psycopg cursor "
            f"{f['cursor_rows_s']:,} rows/s", "- (none set)", "-",
            ratio((f["export_rows_s"], f["copy_rows_s"]),
                  (f["export_rows_s"], f["cursor_rows_s"]))),
        Row(label, f"peak RSS of the export: {mib(rss)}",
            f"exporting an empty day: {mib(empty)}", "does not grow with the day (< +10 %)",
            met(rss <= 1.1 * empty), ratio((rss, empty))),
        Row(label, f"float of the day on {f['ledger_entries']:,} entries: median "
                   f"{f['float_ms_median']:.0f} ms",
            "-", "ties out, days chain, lines = sums of their entries",
            met(bool(f["float_ties_out"]) and bool(f["floats_chain"])
                and bool(f["matches_settlement"]))),
    ]


def repricing_rows(label: str, f: Figures) -> list[Row]:
    budget = f["budget_us"]
    rows = []
    for key, what in (("flat", "flat fares"), ("distance", "distance route")):
        us = f[f"{key}_20_taps_us"]
        rows.append(Row(label, f"re-price a 20-tap day ({what}): {us:.1f} us per tap",
                        f"parse + verify a tap {f['parse_verify_us']:.1f} us",
                        f"< {budget:.0f} us (a tap at 10,000 taps/s)",
                        met(us < budget), ratio((us, f["parse_verify_us"]))))
        if f"card_{key}_100_in_order_reprice_us" in f:
            alone = f[f"card_{key}_100_in_order_reprice_us"]
            plan = f[f"card_{key}_100_in_order_us"]
            rows.append(Row(label, f"one more tap, 100 taps in its month ({what}): "
                            f"re-pricing {alone:.1f} us, whole plan {plan:.1f} us",
                            f"a 20-tap day: price_day {us:.1f} us, whole plan "
                            f"{f[f'card_{key}_20_in_one_day_us']:.1f} us",
                            "no more than a 20-tap day", met(f[f"goal_{key}_100_in_order_met"]),
                            ratio((alone, us),
                                  (plan, f[f"card_{key}_20_in_one_day_us"]))))
    return rows


def statement_rows(label: str, f: Figures) -> list[Row]:
    rows = []
    for db in ("postgresql", "sqlite"):
        for window, w in sorted((f.get(db) or {}).items()):
            if not isinstance(w, dict) or "p50_ms" not in w:
                continue
            rows.append(Row(f"{label}, {db}",
                            f"{window} window ({w['items']:,} lines): p50 {w['p50_ms']:.1f} ms, "
                            f"p95 {w['p95_ms']:.1f} ms",
                            f"the database alone p50 {w['db_fetch_p50_ms']:.1f} ms",
                            "< 100 ms", met(w["p50_ms"] < 100),
                            ratio((w["p50_ms"], w["db_fetch_p50_ms"]))))
    return rows


def predictions_rows(label: str, f: Figures) -> list[Row]:
    ours, base = f["ours_5_10"], f[f"{f['better_baseline']}_5_10"]
    return [
        Row(label, f"arrivals 5-10 min ahead: median {ours['median_s']:.0f} s, p90 "
                   f"{ours['p90_s']:.0f} s ({f['gain_5_10']:+.0%} against the better baseline)",
            f"{f['better_baseline'].replace('_', ' ')}: median {base['median_s']:.0f} s, "
            f"p90 {base['p90_s']:.0f} s", f"{f['goal']:.0%} less error", met(f["goal_met"]),
            ratio((ours["median_s"], base["median_s"]))),
        Row(label, f"occupancy: MAE {f['occupancy_mae']:.1f} riders (mean load "
                   f"{f['occupancy_mean_true_load']:.0f})",
            f"boardings minus tap-outs: MAE {f['occupancy_naive_mae']:.1f}", "-", "-",
            ratio((f["occupancy_mae"], f["occupancy_naive_mae"]))),
    ]


def reader_rows(label: str, f: Figures) -> list[Row]:
    p99 = f["end_to_end_p99_ms"]
    return [Row(label, f"card present -> feedback: p50 {f['end_to_end_p50_ms']:.0f} ms, "
                       f"p99 {p99:.0f} ms",
                f"agent's part p99 {f['agent_p99_ms']:.1f} ms; pcscd noticing the card p99 "
                f"{f['pcscd_p99_ms']:.0f} ms", f"<= {f['limit_ms']:.0f} ms",
                met(p99 <= f["limit_ms"]), ratio((p99, f["pcscd_p99_ms"])))]


def memory_rows(label: str, f: Figures) -> list[Row]:
    return [
        Row(label, f"gateway RSS {mib(f['start_rss_kib'])} -> {mib(f['end_rss_kib'])} "
                   f"({f['growth_kib']:+,} KiB) over {f['minutes']:g} min; second half "
                   f"{f['slope_second_half_kib_per_min']:+.0f} KiB/min",
            f"noise {f['threshold_kib_per_min']:.0f} KiB/min (1 % of RSS over the run)",
            "no growth", met(str(f["verdict"]).startswith("no growth")),
            ratio((f["slope_second_half_kib_per_min"], f["threshold_kib_per_min"]))),
        Row(label, f"taps receipted: {f['receipts']:,} of {f['taps_sent']:,} "
                   f"(lost {f['lost']})", "-", "all receipted", met(f["lost"] == 0)),
    ]


def mixed_rows(label: str, f: Figures) -> list[Row]:
    lat, raw = f["latency"], f["raw_latency"]
    at_goal = (f["tap_rate"] >= 1000 and f["position_rate"] >= 2000 and f["streams"] >= 10)
    load = (f"{f['tap_rate']:,.0f} taps/s + {f['position_rate']:,.0f} positions/s, "
            f"{f['streams']} streams, {f['gateways']} gateway{'s' if f['gateways'] > 1 else ''}"
            f", {f['minutes']:g} min")
    p99 = lat["p99_ms"]
    ledger = f["ledger"]
    lost = f["receipts_missing"]
    streams = f["map_streams"]
    memory = f["memory"]
    slope = memory["slope_second_half_mib_per_10min"]
    gateway_cpu = sum(c["percent_of_core"] for k, c in f["cpu"].items()
                      if k.startswith("gateway"))
    rows = [
        Row(label, f"tap -> receipt under {load}: p50 {_ms(lat['p50_ms'])}, p99 "
                   f"{_ms(p99)}, max {_ms(lat['max_ms'])}",
            f"raw MQTT at {f['tap_rate']:,.0f} msg/s: p99 {_ms(raw['p99_ms'])}",
            "p99 < 50 ms at 1,000 taps/s + 2,000 positions/s, 10 streams",
            met(at_goal and p99 is not None and p99 < f["goal_p99_ms"]),
            ratio((p99, raw["p99_ms"]))),
        Row(label, f"taps: {f['receipts']:,} of {f['taps_sent']:,} receipted ({lost} missing);"
                   f" charged exactly once in the ledger: {ledger['charged_exactly_once']}",
            "-", "none lost", met(lost == 0 and bool(ledger["charged_exactly_once"]))),
        Row(label, f"positions: {f['positions_counted']:,} of {f['positions_sent']:,} counted "
                   f"by the gateway(s) ({f['positions_by_outcome'].get('accepted', 0):,} "
                   f"accepted)", f"offered: {f['positions_sent']:,}", "none lost",
            met(f["positions_not_counted"] == 0),
            ratio((f["positions_counted"], f["positions_sent"]))),
        Row(label, f"map streams: the least a stream read {streams['events_per_stream_min']:,}"
                   f" events; age of a position on arrival p99 "
                   f"{_ms(streams['position_age']['p99_ms'])}",
            f"accepted positions {f['positions_by_outcome'].get('accepted', 0):,}", "-", "-",
            ratio((streams["events_per_stream_min"],
                   f["positions_by_outcome"].get("accepted", 0)))),
        Row(label, f"gateway RSS (with children) {mib(memory['start_rss_kib'])} -> "
                   f"{mib(memory['end_rss_kib'])}; second half "
                   + ("?" if slope is None else f"{slope:+.1f}") + " MiB/10 min",
            f"flat: under {memory['flat_limit_mib_per_10min']:g} MiB/10 min",
            "flat over 30 min",
            (met(bool(memory["flat"])) if memory["judged"] and f["minutes"] >= 30 else
             "- (run too short)"), ratio((slope, memory["flat_limit_mib_per_10min"]))),
        Row(label, f"CPU: gateway{'s' if f['gateways'] > 1 else ''} {gateway_cpu:.0f} % of a "
                   "core", "2 cores", "-", "-", ratio((gateway_cpu, 200.0))),
    ]
    return rows


def _ms(value: float | None) -> str:
    return "?" if value is None else f"{value:,.1f} ms" if value < 100 else f"{value:,.0f} ms"


def _n(value: float | None) -> str:
    return "?" if value is None else f"{value:,.0f}"


def reader_missing() -> str | None:
    """Why reader_latency cannot run on this machine (pcscd with vpcd), or None."""
    try:
        from testbed.pcsc import VPCD_DRIVER
    except ImportError as exc:
        return f"the PC/SC harness cannot be imported ({exc})"
    if not (shutil.which("pcscd") or Path("/usr/sbin/pcscd").exists()):
        return "pcscd is not installed (apt-get install pcscd)"
    if not VPCD_DRIVER.exists():
        return f"the vpcd reader driver is not installed ({VPCD_DRIVER}; " \
               "apt-get install vsmartcard-vpcd)"
    if importlib.util.find_spec("smartcard") is None:
        return "pyscard is not installed in this environment (pip install -e '.[agent]')"
    return None


def benches(memory_minutes: float | None, mixed_minutes: float = 30.0) -> list[Bench]:
    memory_full = [] if memory_minutes is None else ["--minutes", f"{memory_minutes:g}"]
    return [
        Bench("tap_throughput", "tap_throughput, 1 gateway", "bench.tap_throughput",
              ["--gateways", "1"], ["--gateways", "1", "--taps", "3000",
                                    "--latency-seconds", "3"],
              tap_rows, parse_tap_throughput, timeout_s=1800),
        Bench("tap_throughput", "tap_throughput, 2 gateways", "bench.tap_throughput",
              ["--gateways", "2"], ["--gateways", "2", "--taps", "3000",
                                    "--latency-seconds", "3"],
              tap_rows, parse_tap_throughput, timeout_s=1800),
        Bench("positions", "positions", "bench.positions", [],
              ["--positions", "4000", "--vehicles", "400", "--redis-requests", "20000"],
              positions_rows, timeout_s=1800),
        Bench("settlement", "settlement", "bench.settlement", [],
              ["--taps", "50000", "--cards", "5000"], settlement_rows, timeout_s=3600),
        Bench("finance_export", "finance_export", "bench.finance_export", ["--million"],
              ["--taps", "20000", "--cards", "5000", "--runs", "3"], finance_export_rows,
              timeout_s=3600),
        Bench("repricing", "repricing", "bench.repricing", [], [], repricing_rows,
              timeout_s=600),
        Bench("statement", "statement", "bench.statement", ["--sqlite"],
              ["--days", "60", "--others", "200", "--runs", "20", "--sqlite"],
              statement_rows, timeout_s=1800),
        Bench("predictions", "predictions", "bench.predictions", [], ["--quick"],
              predictions_rows, timeout_s=1800),
        Bench("reader_latency", "reader_latency", "bench.reader_latency", [], ["--taps", "5"],
              reader_rows, missing=reader_missing, timeout_s=900),
        Bench("memory", "memory", "bench.memory", memory_full,
              ["--minutes", "1", "--warmup", "15", "--interval", "5", "--cards", "1000"],
              memory_rows, timeout_s=3600 + 60 * (memory_minutes or 10)),
        Bench("mixed", "mixed", "bench.mixed", ["--minutes", f"{mixed_minutes:g}"],
              ["--minutes", "2"], mixed_rows, timeout_s=1800 + 60 * max(mixed_minutes, 2)),
    ]


# -- running -------------------------------------------------------------------------------------

_accepts_json: dict[str, bool] = {}


def accepts_json(module: str, env: dict[str, str]) -> bool:
    """Whether `python -m MODULE --help` lists a `--json` option."""
    if module not in _accepts_json:
        out = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
        _accepts_json[module] = out.returncode == 0 and bool(
            re.search(r"^\s*--json\b", out.stdout, re.M))
    return _accepts_json[module]


def run(bench: Bench, quick: bool, workdir: Path) -> Result:
    """Run one benchmark as a child process, its output shown as it comes; read its figures."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    argv = [sys.executable, "-m", bench.module, *(bench.quick_args if quick else bench.args)]
    result = Result(bench.name, bench.label, argv[1:])
    why = bench.missing()
    if why:
        result.reason = why
        result.rows = [Row(bench.label, f"not run: {why}", "-", "-", "not run")]
        print(f"\n=== {bench.label}: NOT RUN: {why}", flush=True)
        return result
    json_path = workdir / f"{bench.label.replace(' ', '_').replace(',', '')}.json"
    if accepts_json(bench.module, env):
        argv += ["--json", str(json_path)]
    result.argv = argv[1:]
    print(f"\n=== {bench.label}: {' '.join(['python', *argv[1:]])}", flush=True)
    t0 = time.monotonic()
    lines: list[str] = []
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err,
                                text=True, bufsize=1)
        timer = threading.Timer(bench.timeout_s, _interrupt, args=(proc,))
        timer.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                print(f"  | {line}", end="", flush=True)
            proc.wait()
        except KeyboardInterrupt:
            # The terminal sent the benchmark the same SIGINT: let its cleanup finish.
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
        finally:
            timer.cancel()
        err.seek(0)
        stderr = err.read()
    result.seconds = time.monotonic() - t0
    result.returncode = proc.returncode
    if proc.returncode != 0:
        tail = " / ".join(stderr.strip().splitlines()[-3:]) or "no error output"
        if result.seconds >= bench.timeout_s:
            tail = f"stopped after {bench.timeout_s:.0f} s; {tail}"
        result.status, result.reason = "failed", f"exit {proc.returncode}: {tail}"
        result.rows = [Row(bench.label, f"FAILED ({result.reason[:160]})", "-", "-", "failed")]
        print(f"=== {bench.label}: FAILED, exit {proc.returncode}\n{stderr[-3000:]}", flush=True)
        return result
    try:
        if json_path.exists():
            result.figures_from = "json"
            result.figures = json.loads(json_path.read_text())
        elif bench.parse_stdout is not None:
            result.figures_from = "stdout"
            result.figures = bench.parse_stdout("".join(lines))
        else:
            raise ValueError("it wrote no --json file")
        result.rows = bench.rows(bench.label, result.figures)
        result.status = "ok"
    except (KeyError, TypeError, ValueError) as exc:
        result.status = "failed"
        result.reason = f"its figures could not be read: {exc!r}"
        result.rows = [Row(bench.label, f"FAILED ({result.reason})", "-", "-", "failed")]
    print(f"=== {bench.label}: done in {result.seconds:.0f} s", flush=True)
    return result


def _interrupt(proc: subprocess.Popen[str]) -> None:
    """Ask a benchmark to stop (its cleanup runs on SIGINT), and kill it if it does not."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


def table(rows: list[Row]) -> str:
    head = Row("benchmark", "figure", "limit in the same run", "goal", "met?",
               "figure / limit")
    cols = list(zip(*[astuple(r) for r in [head, *rows]], strict=True))
    widths = [max(len(c) for c in col) for col in cols]
    out = []
    for i, r in enumerate([head, *rows]):
        out.append("  ".join(v.ljust(w) for v, w in zip(astuple(r), widths, strict=True))
                   .rstrip())
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def astuple(row: Row) -> tuple[str, ...]:
    return (row.benchmark, row.figure, row.limit, row.ratio, row.goal, row.verdict)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="small sizes, a few minutes in all: a smoke check, not figures")
    ap.add_argument("--only", metavar="NAME,...",
                    help="run only these (tap_throughput, positions, settlement, "
                         "finance_export, repricing, statement, predictions, "
                         "reader_latency, memory, mixed)")
    ap.add_argument("--memory-minutes", type=float, metavar="N",
                    help="length of the memory run (default: the benchmark's own, 10)")
    ap.add_argument("--mixed-minutes", type=float, default=30.0, metavar="N",
                    help="length of the mixed run (default 30; --quick: 2)")
    ap.add_argument("--out", metavar="FILE", help="write the combined results to FILE as JSON")
    args = ap.parse_args(argv)

    all_benches = benches(args.memory_minutes, args.mixed_minutes)
    names = list(dict.fromkeys(b.name for b in all_benches))
    chosen = names
    if args.only:
        chosen = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(chosen) - set(names))
        if unknown:
            ap.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(names)}")
    started = datetime.now(UTC)
    load = os.getloadavg()
    print(f"benchmarks{' (quick: small sizes, not figures to quote)' if args.quick else ''}: "
          f"{', '.join(n for n in names if n in chosen)}")
    print(f"machine: {platform.node()}, {os.cpu_count()} cores, load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {started:%Y-%m-%d %H:%M} UTC")
    results = []
    with tempfile.TemporaryDirectory(prefix="transit-bench-all-") as tmp:
        for bench in all_benches:
            if bench.name in chosen:
                results.append(run(bench, args.quick, Path(tmp)))

    rows = [r for res in results for r in res.rows]
    print("\n" + table(rows))
    from_stdout = [r.label for r in results if r.figures_from == "stdout"]
    if from_stdout:
        print(f"\nread from printed output (no --json option): {'; '.join(from_stdout)}")
    failed = [r for r in results if r.status == "failed"]
    skipped = [r for r in results if r.status == "not run"]
    for r in skipped:
        print(f"not run: {r.label}: {r.reason}")
    for r in failed:
        print(f"FAILED: {r.label}: {r.reason}")
    if args.out:
        Path(args.out).write_text(json.dumps({
            "started": started.isoformat(timespec="seconds"), "quick": args.quick,
            "machine": {"node": platform.node(), "cpus": os.cpu_count(),
                        "load_average_at_start": [round(x, 2) for x in load]},
            "results": [asdict(r) for r in results]}, indent=2) + "\n")
        print(f"results written to {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
