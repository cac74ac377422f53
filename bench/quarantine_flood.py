"""A flood of refused messages: how fast gateways keep them, now that the quarantine is
chained (each batch with a refused message locks the chain's head until its commit).

    python -m bench.quarantine_flood [--messages 20000] [--gateways 1]

Every message is a well-formed tap signed with a key its device does not hold
(`bad_signature`): each is kept in the quarantine and answered by nothing, so the clock
runs from the first write into the publishers until the quarantine holds them all
(polled every 50 ms). Then, as a reference in the same run, the same number of good taps
end to end (receipts counted, as `bench.tap_throughput` does).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from bench.common import Stack, now
from bench.tap_throughput import TS0, Publishers, make_payloads, timed_burst
from transit.wire import Tap


def forged_payloads(stack: Stack, n: int) -> list[tuple[str, bytes]]:
    """`n` taps signed with a wrong key, devices taken in turn."""
    devices = list(stack.devices)
    out = []
    for i in range(n):
        device_id = devices[i % len(devices)]
        tap = Tap(device_id=device_id, seq=1 + i // len(devices),
                  vehicle_id=f"BUS-{device_id[-4:]}", route_id="R1",
                  card=stack.cards[i % len(stack.cards)], kind="entry", accepted=True,
                  ts=TS0 + i, lat_e6=-7257500, lon_e6=112752100).signed(b"\x01" * 32)
        out.append((device_id, tap.encode()))
    return out


def quarantined(stack: Stack) -> int:
    from sqlalchemy import func, select

    from fare_gateway.adapters.models import QuarantineRecord
    from ledger.adapters.db import make_engine

    engine = make_engine(stack.db_url)
    try:
        with engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(QuarantineRecord)) or 0)
    finally:
        engine.dispose()


def flood(stack: Stack, payloads: list[tuple[str, bytes]], timeout_s: float = 1800
          ) -> float:
    """Publish the refused messages at once; messages kept per second."""
    pubs = Publishers(stack.broker.port, {d: f"transit/v1/dev/{d}/tap" for d in stack.devices})
    t0 = now()
    pubs.send_all(payloads)
    pubs.close()
    deadline = time.monotonic() + timeout_s
    while (kept := quarantined(stack)) < len(payloads):
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {kept} of {len(payloads)} messages were quarantined")
        time.sleep(0.05)
    return len(payloads) / (now() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--gateways", type=int, default=1)
    ap.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    args = ap.parse_args()
    stack = Stack.create("postgresql")
    figures: dict[str, Any] = {"gateways": args.gateways, "messages": args.messages}
    try:
        gateways = [stack.gateway(f"gw{i}") for i in range(args.gateways)]
        rate = flood(stack, forged_payloads(stack, args.messages))
        figures["quarantined_msg_s"] = round(rate)
        print(f"refused messages kept, {args.gateways} gateway(s): {rate:,.0f} msg/s "
              f"({args.messages} bad signatures)")
        good, _ = timed_burst(stack, make_payloads(stack, args.messages), "transit/v1/dev",
                              "receipt")
        figures["charged_taps_s"] = round(good)
        print(f"reference, good taps end to end, same gateways: {good:,.0f} taps/s")
        for gateway in gateways:
            gateway.stop()
    finally:
        stack.close()
    if args.json:
        with open(args.json, "w") as out:
            json.dump(figures, out, indent=2)


if __name__ == "__main__":
    main()
