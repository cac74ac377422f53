"""Cost of re-pricing a card's service day, per new tap, beside the per-tap budget.

    python bench/repricing.py [--json FILE]

Every accepted tap re-prices its card's whole service day (fare_gateway/fares/engine.py).
This measures that for days of 1, 20 and 50 taps, on flat-fare and distance routes, and
prints it beside two figures from the same run: the time to parse and verify one signed
tap (work every tap costs anyway), and the 100 us a tap may take in all at the goal of
10,000 taps/s on one core.
"""

from __future__ import annotations

import argparse
import sys
import time
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.results import write_figures  # noqa: E402
from fare_gateway.fares.engine import PricedTap, price_day  # noqa: E402
from fare_gateway.fares.policy import builtin_policy, parse_policy  # noqa: E402
from transit.wire import Tap  # noqa: E402

T0 = 1764313202123
DISTANCE = parse_policy(tomllib.loads("""
categories = ["regular"]
[[fares]]
routes = ["KRL"]
amount = { regular = 3000 }
max = { regular = 13000 }
distance = { base_km = 25, step_km = 10, step = 1000 }
[[fares]]
routes = ["*"]
amount = { regular = 5000 }
[transfers]
window_minutes = 120
max_transfers = 2
[caps]
daily = { regular = 50000 }
"""))


def day(n: int, distance: bool) -> list[PricedTap]:
    taps = []
    for i in range(n):
        ts = T0 + i * 17 * 60_000
        kind = "exit" if distance and i % 2 else "entry"
        taps.append(PricedTap(f"D:{i}", "D", i, ts, f"V{i // 2 if distance else i}",
                              "KRL" if distance else "R1", kind,
                              -6_200_000 - (i % 2) * 300_000, 106_800_000))
    return taps


def per_call_us(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(repeat):
            fn()
        best = min(best, (time.perf_counter() - t0) / repeat)
    return best * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    args = ap.parse_args()
    secret = b"k" * 32
    payload = Tap(device_id="D", seq=1, vehicle_id="V", route_id="R1", card="04A1B2C3D4",
                  kind="entry", accepted=True, ts=T0, lat_e6=0, lon_e6=0).signed(secret).encode()
    floor = per_call_us(lambda: Tap.parse(payload).verify(secret), 5000)
    print(f"parse + verify one signed tap: {floor:.1f} us (work every tap costs)")
    print("budget per tap at 10,000 taps/s on one core: 100.0 us")
    flat = builtin_policy()
    figures: dict[str, float] = {"parse_verify_us": round(floor, 2), "budget_us": 100.0}
    for label, key, policy, distance in (("flat fares", "flat", flat, False),
                                         ("distance route, entry/exit pairs", "distance",
                                          DISTANCE, True)):
        for n in (1, 20, 50):
            taps = day(n, distance)
            us = per_call_us(lambda p=policy, t=taps: price_day(p, "regular", t),
                             max(20, 2000 // n))
            figures[f"{key}_{n}_taps_us"] = round(us, 2)
            print(f"re-price a day of {n:>2} taps ({label}): {us:8.1f} us per new tap "
                  f"= {us / floor:4.1f}x parse+verify, {us / 100:4.0%} of the budget")
    write_figures(args.json, "repricing", figures)


if __name__ == "__main__":
    main()
