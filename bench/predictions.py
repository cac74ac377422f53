"""Accuracy of arrival predictions and of occupancy from taps, on simulated days of the
real Transjakarta network.

    python bench/predictions.py [--days 8] [--routes 14] [--seed 1] [--quick] [--json FILE]

`hardware_sim.city_day` runs `--days` days of buses and riders on `--routes` lines of
the shared Transjakarta feed (imported into a temporary SQLite database; or `--db` a
copy with it imported), each line with a timetable of its own. The first days are
learned exactly as the gateway learns them (`tracking.learn.passages` on each trip's
positions, `SegmentStats`, then `tracking.predict.LearnedTimes`); on the last day,
every minute, every running bus predicts its arrival at each stop ahead:

- ours: `predict_arrivals` over the learned times, with the bus's `recent_pace`
  (and, to show what the pace adds, without it);
- constant speed: the route's mean speed over the learned days, along the shape;
- timetable: the scheduled time at each stop plus the bus's delay now (the scheduled
  time at its place along the pattern against the clock), carried forward.

Errors are against the true arrival at the stop, by how far ahead it was (0-5, 5-10,
10-20 minutes): the median and the 90th percentile of the absolute error, and the
count. Goal: at 5-10 minutes, 30 % less median error than the better baseline.

Occupancy, at the same instants: `tracking.occupancy.riders_aboard` from the bus's taps
on its trip so far, its ride-length curve learned from the previous day's taps by
next-boarding inference (`rides_of`) and, on lines where riders tap out, the line's
tap-out share learned from the same day (`TapOutShares`), as the gateway does, against
the true load: the mean absolute error in riders, beside the naive boardings minus
tap-outs, and on tap-out lines beside shares of 1 and 0.
"""

from __future__ import annotations

import argparse
import bisect
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.results import write_figures  # noqa: E402
from hardware_sim.city_day import City, CityConfig, Day, plan_city, simulate_day  # noqa: E402
from tracking import occupancy  # noqa: E402
from tracking.learn import SegmentStats, passages  # noqa: E402
from tracking.predict import (  # noqa: E402
    ConstantSpeed,
    LearnedTimes,
    predict_arrivals,
    recent_pace,
)
from tracking.schedule import Pattern, Schedule  # noqa: E402

FEED = Path(os.environ.get("TRANSIT_GTFS_FEED", "/work/shared/data/gtfs/transjakarta-2021.zip"))
BUCKETS = ((0, 5), (5, 10), (10, 20))  # minutes ahead
GOAL = 0.30  # less error than the better baseline, at 5-10 minutes
GOAL_BUCKET = "5-10"
PROGRESS_MS = 10 * 60_000  # the progress a bus's record keeps for its pace
METHODS = ("ours", "ours_no_pace", "constant_speed", "timetable")
BREAKDOWN_AFTER_MS = 15 * 60_000


def load_schedule(db: str | None) -> Schedule:
    """The Transjakarta schedule: from a database with the feed imported, or the feed
    imported into a temporary SQLite database."""
    from ledger.adapters.db import make_engine, session_factory
    from tracking.schedule_load import read_schedule

    with tempfile.TemporaryDirectory(prefix="transit-bench-pred-") as tmp:
        path = Path(tmp) / "tj.db"
        if db:
            shutil.copy(db, path)  # never write to the caller's file
        engine = make_engine(f"sqlite:///{path}")
        sessions = session_factory(engine)
        if not db:
            from fare_gateway.schema import upgrade
            from tracking.gtfs import import_feed

            upgrade(engine)
            with sessions.begin() as s:
                import_feed(s, FEED)
        with sessions() as s:
            schedule = read_schedule(s)
        engine.dispose()
    return schedule


# -- learning ----------------------------------------------------------------------------

def learn(city: City, days: Sequence[Day]) -> tuple[LearnedTimes, ConstantSpeed, int]:
    """The learned times of `days` (as the gateway's learner makes them) and the
    routes' mean speeds over the same days; and how many outliers were left out."""
    stats = SegmentStats()
    tt = city.timetable
    metres: dict[str, float] = defaultdict(float)
    secs: dict[str, float] = defaultdict(float)
    for day in days:
        label = f"day{day.index}"
        for run in day.runs:
            pattern = city.pattern(run.pattern_id)
            points = [(p.ts_ms, int(p.dist_m)) for p in day.positions(run)]
            passed = passages(pattern, points)
            stats.add_passages(pattern.pattern_id, passed, label, tt.local_hour)
            if len(passed) >= 2:
                (i0, t0), (i1, t1) = passed[0], passed[-1]
                metres[pattern.route_id] += pattern.stops[i1].dist_m - pattern.stops[i0].dist_m
                secs[pattern.route_id] += (t1 - t0) / 1000
    rows = stats.rows()
    speeds = ConstantSpeed({r: metres[r] / secs[r] for r in metres if secs[r] > 0})
    times = LearnedTimes.from_rows(rows, tt.patterns, fallback=speeds, timezone=tt.timezone)
    return times, speeds, stats.dropped


def ride_curve(city: City, day: Day
               ) -> tuple[occupancy.RideCurve, occupancy.TapOutShares]:
    """The ride-length curve of one day's taps, by next-boarding inference (and the
    tap-outs where riders tap out), and the routes' tap-out shares, as the live
    estimator learns them."""
    seen = [occupancy.TapSeen(t.card, t.kind, t.ts_ms, t.vehicle_id,
                              city.pattern(t.pattern_id).route_id, t.lat_e6, t.lon_e6)
            for t in day.taps]
    lengths = occupancy.rides_of(seen, lambda r: city.timetable.patterns_of(r))
    return occupancy.RideCurve.learned(lengths), occupancy.TapOutShares.learned(seen)


# -- scoring -----------------------------------------------------------------------------

@dataclass
class Errors:
    """Absolute and signed errors (s) per method and bucket."""

    abs_s: dict[tuple[str, str], list[float]] = field(default_factory=lambda: defaultdict(list))
    signed_s: dict[tuple[str, str], list[float]] = field(
        default_factory=lambda: defaultdict(list))

    def add(self, method: str, bucket: str, error_s: float) -> None:
        self.abs_s[(method, bucket)].append(abs(error_s))
        self.signed_s[(method, bucket)].append(error_s)


def bucket_of(ahead_ms: int) -> str | None:
    minutes = ahead_ms / 60_000
    for lo, hi in BUCKETS:
        if lo <= minutes < hi:
            return f"{lo}-{hi}"
    return None


def pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def timetable_arrivals(city: City, trip_id: str, pattern: Pattern, dist_m: float,
                       now_ms: int, day_ms: int) -> list[tuple[int, int]]:
    """The scheduled time at each stop ahead plus the delay now, never before now."""
    times = city.timetable.trips[trip_id].times
    stops = pattern.stops
    k = pattern.stop_index_after(dist_m)
    if k == 0:
        sched_here = float(times[0] or 0)
    elif k >= len(stops):
        return []
    else:
        a, b = stops[k - 1], stops[k]
        ta, tb = float(times[k - 1] or 0), float(times[k] or 0)
        f = (dist_m - a.dist_m) / (b.dist_m - a.dist_m) if b.dist_m > a.dist_m else 1.0
        sched_here = ta + max(0.0, min(1.0, f)) * (tb - ta)
    delay_ms = now_ms - (day_ms + sched_here * 1000)
    return [(i, max(now_ms, int(day_ms + (times[i] or 0) * 1000 + delay_ms)))
            for i in range(k, len(stops))]


@dataclass
class OccupancyErrors:
    estimate: list[float] = field(default_factory=list)
    naive: list[float] = field(default_factory=list)
    true_load: list[int] = field(default_factory=list)
    by_kind: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))


def score(city: City, day: Day, times: LearnedTimes, speeds: ConstantSpeed,
          curve: occupancy.RideCurve, every_s: int, shares: occupancy.TapOutShares,
          true_curve: occupancy.RideCurve | None = None
          ) -> tuple[Errors, OccupancyErrors, int]:
    """Every `every_s`, every running bus of `day`: predictions and occupancy scored."""
    errors = Errors()
    occ = OccupancyErrors()
    taps_by_trip: dict[str, list[Any]] = defaultdict(list)
    for t in day.taps:
        taps_by_trip[t.trip_id].append(t)
    samples = 0
    step = every_s * 1000
    for run in day.runs:
        pattern = city.pattern(run.pattern_id)
        line = city.line_of(run.pattern_id)
        fixes = [(p.ts_ms, int(p.dist_m)) for p in day.positions(run)]
        fix_ts = [ts for ts, _ in fixes]
        taps = taps_by_trip[run.trip_id]
        tap_ts = [t.ts_ms for t in taps]
        placed: dict[int, float | None] = {}
        now = (run.start_ms // step + 1) * step
        while now < run.end_ms:
            k = bisect.bisect_right(fix_ts, now)
            if k == 0:
                now += step
                continue
            samples += 1
            _ts, dist = fixes[k - 1]
            progress = fixes[bisect.bisect_left(fix_ts, now - PROGRESS_MS):k]
            pace = recent_pace(pattern, progress, times)
            made = {
                "ours": predict_arrivals(pattern, dist, now, times, pace),
                "ours_no_pace": predict_arrivals(pattern, dist, now, times),
                "constant_speed": predict_arrivals(pattern, dist, now, speeds),
                "timetable": timetable_arrivals(city, run.trip_id, pattern, dist, now,
                                                day.day_start_ms),
            }
            # A bus standing broken down, or within 15 minutes of starting again.
            stood = run.breakdown is not None and \
                run.breakdown[0] <= now <= run.breakdown[1] + BREAKDOWN_AFTER_MS
            for method, arrivals in made.items():
                for index, at in arrivals:
                    truth = run.arrivals_ms[index]
                    if truth <= now:
                        continue
                    bucket = bucket_of(truth - now)
                    if bucket is None:
                        if truth - now >= BUCKETS[-1][1] * 60_000:
                            break
                        continue
                    errors.add(method, bucket, (at - truth) / 1000)
                    if stood:
                        errors.add(f"{method}@breakdown", bucket, (at - truth) / 1000)
                    if method == "ours":
                        # A passage is dated when the bus leaves the stop (learn.LEFT_M).
                        errors.add("ours_vs_departure", bucket,
                                   (at - run.departures_ms[index]) / 1000)
            # Occupancy from the taps made on this trip so far.
            j = bisect.bisect_right(tap_ts, now)
            boardings, exits = [], []
            for i in range(j):
                t = taps[i]
                if t.kind == "entry":
                    if i not in placed:
                        placed[i] = occupancy.place(pattern, t.lat_e6, t.lon_e6,
                                                    near_m=run.dist_at(t.ts_ms))
                    boardings.append(occupancy.Boarding(t.card, placed[i], t.ts_ms))
                else:
                    exits.append(occupancy.Exit(t.card, t.ts_ms))
            # As the gateway does: the route's learned share where riders tap out.
            share = shares.share(line.route_id) if line.tap_out else 0.0
            est = occupancy.riders_aboard(boardings, exits, float(dist), curve,
                                          tap_out_share=share)
            true = day.load_at(run.trip_id, now)
            occ.estimate.append(abs(est - true))
            occ.naive.append(abs(len(boardings) - len(exits) - true))
            occ.true_load.append(true)
            occ.by_kind["tap_out" if line.tap_out else "no_tap_out"].append(abs(est - true))
            if not line.tap_out and true_curve is not None:
                # What a perfect ride-length curve would give: the limit of the method.
                best = occupancy.riders_aboard(boardings, exits, float(dist), true_curve)
                occ.by_kind["no_tap_out_true_curve"].append(abs(best - true))
            if line.tap_out:
                # The same riders counted aboard until they tap out (share 1), and with
                # the curve alone (share 0): what the share adds.
                for kind, other in (("tap_out_share_1", 1.0), ("tap_out_share_0", 0.0)):
                    occ.by_kind[kind].append(abs(occupancy.riders_aboard(
                        boardings, exits, float(dist), curve, tap_out_share=other) - true))
            now += step
    return errors, occ, samples


# -- the run -----------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--days", type=int, default=8,
                    help="days simulated: all but the last learned, the last one scored")
    ap.add_argument("--routes", type=int, default=14, help="lines (two patterns each)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--every", type=int, default=60, metavar="S",
                    help="seconds between the instants scored")
    ap.add_argument("--db", help="a SQLite file with the feed imported (copied, not written)")
    ap.add_argument("--quick", action="store_true",
                    help="3 days of 4 lines, scored every 3 minutes: a smoke check")
    ap.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    args = ap.parse_args(argv)
    if args.quick:
        args.days, args.routes, args.every = 3, 4, 180
    if args.days < 2:
        ap.error("--days must be 2 or more (days to learn, then one to score)")
    load = round(os.getloadavg()[0], 2)
    t0 = time.monotonic()
    schedule = load_schedule(args.db)
    city = plan_city(schedule, CityConfig(routes=args.routes, seed=args.seed))
    n_trips = len(city.timetable.trips)
    print(f"network: {len(schedule.patterns)} patterns of the Transjakarta feed; "
          f"{len(city.lines)} lines simulated ({n_trips:,} trips a day, "
          f"{sum(ln.tap_out for ln in city.lines)} lines where riders tap out)")
    days = [simulate_day(city, n) for n in range(args.days)]
    learned_days, test = days[:-1], days[-1]
    broke = sum(1 for r in test.runs if r.breakdown)
    print(f"simulated {args.days} days in {time.monotonic() - t0:.0f} s; the scored day: "
          f"{len(test.runs):,} trips, {len({r.vehicle_id for r in test.runs})} buses, "
          f"{broke} breakdowns, {sum(t.kind == 'entry' for t in test.taps):,} boardings, "
          f"{sum(t.kind == 'exit' for t in test.taps):,} tap-outs")
    t1 = time.monotonic()
    times, speeds, dropped = learn(city, learned_days)
    curve, shares = ride_curve(city, learned_days[-1])
    print(f"learned {len(learned_days)} days in {time.monotonic() - t1:.0f} s: "
          f"{len(times.cells):,} (segment, hour) cells, {dropped:,} outliers left out; "
          f"ride-length curve from {curve.samples:,} rides of the last learned day")
    t2 = time.monotonic()
    true_curve = occupancy.RideCurve.learned(
        city.pattern(learned_days[-1].run(r.trip_id).pattern_id).stops[r.alight].dist_m
        - city.pattern(learned_days[-1].run(r.trip_id).pattern_id).stops[r.board].dist_m
        for r in learned_days[-1].rides)
    errors, occ, samples = score(city, test, times, speeds, curve, args.every, shares,
                                 true_curve)
    print(f"scored {samples:,} instants (every {args.every} s per running bus) in "
          f"{time.monotonic() - t2:.0f} s")

    figures: dict[str, Any] = {
        "days": args.days, "routes": len(city.lines), "seed": args.seed,
        "trips_per_day": n_trips, "instants": samples, "breakdowns_scored_day": broke,
        "load_average_at_start": load}
    print()
    head = f"{'minutes ahead':<14}" + "".join(f"{m:>26}" for m in METHODS)
    print(head)
    print(f"{'':<14}" + "".join(f"{'median / p90 s (n)':>26}" for _ in METHODS))
    for lo, hi in BUCKETS:
        b = f"{lo}-{hi}"
        cells = []
        for m in METHODS:
            values = errors.abs_s[(m, b)]
            med, p90 = pct(values, 50), pct(values, 90)
            bias = statistics.fmean(errors.signed_s[(m, b)]) if values else math.nan
            figures[f"{m}_{lo}_{hi}"] = {"median_s": round(med, 1), "p90_s": round(p90, 1),
                                         "n": len(values), "mean_signed_s": round(bias, 1)}
            cells.append(f"{med:6.0f} / {p90:5.0f} ({len(values):>7,})")
        print(f"{b:<14}" + "".join(f"{c:>26}" for c in cells))
    print(f"{'mean signed':<14}" + "".join(
        f"{figures[f'{m}_5_10']['mean_signed_s']:>+25.0f}s" for m in METHODS)
        + "   (5-10 min; late > 0)")
    dep = errors.abs_s[("ours_vs_departure", GOAL_BUCKET)]
    figures["ours_vs_departure_5_10"] = {"median_s": round(pct(dep, 50), 1),
                                         "p90_s": round(pct(dep, 90), 1),
                                         "mean_signed_s": round(statistics.fmean(
                                             errors.signed_s[("ours_vs_departure",
                                                              GOAL_BUCKET)]), 1)}
    print(f"ours against the true departure from the stop (5-10 min): median "
          f"{pct(dep, 50):.0f} s, p90 {pct(dep, 90):.0f} s, mean signed "
          f"{figures['ours_vs_departure_5_10']['mean_signed_s']:+.0f} s")
    stood = {m: errors.abs_s[(f"{m}@breakdown", GOAL_BUCKET)] for m in METHODS}
    if stood["ours"]:
        figures["breakdown_5_10"] = {m: {"median_s": round(pct(v, 50), 1),
                                         "p90_s": round(pct(v, 90), 1), "n": len(v)}
                                     for m, v in stood.items()}
        print("buses broken down or within 15 min of moving again (5-10 min): " + ", ".join(
            f"{m} {pct(v, 50):.0f} / {pct(v, 90):.0f} s" for m, v in stood.items())
            + f" (median / p90, n {len(stood['ours']):,})")
    base = {m: figures[f"{m}_5_10"]["median_s"] for m in ("constant_speed", "timetable")}
    better = min(base, key=lambda m: base[m])
    ours = figures["ours_5_10"]["median_s"]
    gain = 1 - ours / base[better] if base[better] else math.nan
    met = gain >= GOAL
    figures.update(better_baseline=better, gain_5_10=round(gain, 3), goal=GOAL, goal_met=met)
    print(f"\ngoal: at 5-10 minutes ahead, {GOAL:.0%} less median error than the better "
          f"baseline ({better.replace('_', ' ')}, {base[better]:.0f} s): ours {ours:.0f} s, "
          f"{gain:+.0%} -> {'met' if met else 'NOT met'}")
    p90_gain = 1 - figures["ours_5_10"]["p90_s"] / figures[f"{better}_5_10"]["p90_s"]
    figures["gain_5_10_p90"] = round(p90_gain, 3)
    print(f"      at the 90th percentile: {p90_gain:+.0%}")

    mae = statistics.fmean(occ.estimate)
    naive = statistics.fmean(occ.naive)
    mean_load = statistics.fmean(occ.true_load)
    figures.update(occupancy_mae=round(mae, 2), occupancy_naive_mae=round(naive, 2),
                   occupancy_mean_true_load=round(mean_load, 1),
                   occupancy_curve_rides=curve.samples,
                   **{f"occupancy_mae_{k}": round(statistics.fmean(v), 2)
                      for k, v in occ.by_kind.items()})
    kinds = ", ".join(f"{k.replace('_', ' ')} lines {statistics.fmean(v):.1f}"
                      for k, v in sorted(occ.by_kind.items()) if k in ("tap_out",
                                                                        "no_tap_out"))
    if occ.by_kind.get("tap_out_share_1"):
        tapping = [c[2] / c[1] for c in shares.counts if c[1] and c[2]]
        kinds += (f"; on tap-out lines (learned share "
                  f"{min(tapping, default=math.nan):.2f}-{max(tapping, default=math.nan):.2f})"
                  f" counting riders aboard until they tap out "
                  f"{statistics.fmean(occ.by_kind['tap_out_share_1']):.1f}, the curve alone "
                  f"{statistics.fmean(occ.by_kind['tap_out_share_0']):.1f}")
    if occ.by_kind.get("no_tap_out_true_curve"):
        kinds += (f"; on lines without tap-outs with the true curve of every ride "
                  f"{statistics.fmean(occ.by_kind['no_tap_out_true_curve']):.1f}")
    print(f"\noccupancy ({len(occ.estimate):,} instants, true load {mean_load:.1f} riders on "
          f"average): estimate MAE {mae:.1f} riders ({kinds}); boardings minus tap-outs "
          f"MAE {naive:.1f}")
    print(f"load average at the start (1 min): {load:.2f} on {os.cpu_count()} cores; "
          f"{time.monotonic() - t0:.0f} s in all")
    write_figures(args.json, "predictions", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
