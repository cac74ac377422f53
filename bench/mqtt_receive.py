"""How fast one process can take messages off the broker: mosquitto_sub (C), paho, and
the gateway's lean client (`transit.mqtt_stream`), each alone in the same run.

    .venv/bin/python bench/mqtt_receive.py [-n 200000] [--qos 0]

`--publishers` `mosquitto_pub -l` processes publish N messages of 220 bytes on
`bench/dev/D{k}/pos` to a private Mosquitto with the project's policy; the receiver,
subscribed to `bench/dev/+/pos`, counts them. For each receiver: messages per second
from its first to its last message, and the CPU time of the receiving process per
message (from its subscription to its last message). mosquitto_sub is the limit: the
broker cannot deliver faster than it reads.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from testbed.broker import Broker  # noqa: E402

TOPIC = "bench/dev/+/pos"
PROBE = b"probe"
TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


# -- receivers run in a child process of their own ----------------------------------
def _receive_paho(port: int, n: int, protocol: str, qos: int) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    state = {"count": 0, "first": 0.0, "last": 0.0, "ready": False}
    done = threading.Event()

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.payload == PROBE:
            if not state["ready"]:
                state["ready"] = True
                state["cpu0"] = time.process_time()
                print("ready", flush=True)
            return
        if not state["count"]:
            state["first"] = time.monotonic()
        state["count"] += 1
        if state["count"] >= n:
            state["last"] = time.monotonic()
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-paho",
                         protocol=mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311)
    client.on_message = on_message
    client.on_connect = lambda c, *_a: c.subscribe(TOPIC, qos)
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    _report(state, done, n)


def _receive_stream(port: int, n: int, protocol: str, qos: int) -> None:
    from transit.mqtt_stream import Received, StreamClient
    from transit.settings import MqttEndpoint

    state = {"count": 0, "first": 0.0, "last": 0.0, "ready": False}
    done = threading.Event()

    def on_messages(batch: list[Received]) -> None:
        if not state["ready"]:
            if not any(m[1] == PROBE for m in batch):
                return
            state["ready"] = True
            state["cpu0"] = time.process_time()
            print("ready", flush=True)
            batch = [m for m in batch if m[1] != PROBE]
        if not batch:
            return
        if not state["count"]:
            state["first"] = time.monotonic()
        state["count"] += len(batch)
        if state["count"] >= n:
            state["last"] = time.monotonic()
            done.set()

    client = StreamClient(MqttEndpoint("127.0.0.1", port, False, protocol=protocol),
                          "bench-stream", subscriptions=[(TOPIC, qos)],
                          on_messages=on_messages)
    client.start()
    _report(state, done, n)


def _report(state: dict[str, float | int | bool], done: threading.Event, n: int) -> None:
    # Waits for all N, or for 10 s without a new one (QoS 0 messages may be dropped).
    seen = -1
    while not done.wait(10):
        if state["count"] == seen:
            state["last"] = time.monotonic()
            break
        seen = int(state["count"])
    cpu = time.process_time() - float(state.get("cpu0", 0.0))
    print(json.dumps({"count": state["count"], "wall_s": float(state["last"]) - float(
        state["first"]), "cpu_s": cpu}), flush=True)
    os._exit(0)


# -- the parent ---------------------------------------------------------------------
def _probe_until_ready(port: int, is_ready: threading.Event) -> None:
    while not is_ready.wait(0.2):
        subprocess.run(["mosquitto_pub", "-p", str(port), "-t", "bench/dev/probe/pos",
                        "-m", PROBE.decode()], check=True)


def _publish(port: int, files: list[Path], qos: int) -> None:
    procs = [subprocess.Popen(["mosquitto_pub", "-p", str(port), "-l", "-q", str(qos),
                               "-t", f"bench/dev/D{k}/pos"], stdin=f.open("rb"))
             for k, f in enumerate(files)]
    for p in procs:
        p.wait()


def run_mosquitto_sub(port: int, n: int, files: list[Path], protocol: str, qos: int
                      ) -> dict[str, float]:
    """mosquitto_sub's rate, its output read (and counted) by this process."""
    sub = subprocess.Popen(["mosquitto_sub", "-p", str(port), "-t", TOPIC, "-q", str(qos),
                            "-V", "5" if protocol == "5" else "311"],
                           stdout=subprocess.PIPE)
    assert sub.stdout is not None
    ready = threading.Event()
    threading.Thread(target=_probe_until_ready, args=(port, ready), daemon=True).start()
    for line in sub.stdout:
        if line.rstrip() == PROBE:
            ready.set()
            break
    cpu0 = _cpu_s(sub.pid)
    threading.Thread(target=_publish, args=(port, files, qos), daemon=True).start()
    count, first, last = 0, 0.0, 0.0
    timer = threading.Timer(60, sub.kill)
    timer.start()
    for line in sub.stdout:
        if line.rstrip() == PROBE:
            continue
        if not count:
            first = time.monotonic()
        count += 1
        last = time.monotonic()
        if count >= n:
            break
    cpu = _cpu_s(sub.pid) - cpu0
    timer.cancel()
    sub.kill()
    sub.wait()
    return {"count": count, "wall_s": last - first, "cpu_s": cpu}


def run_python(kind: str, port: int, n: int, files: list[Path], protocol: str, qos: int
               ) -> dict[str, float]:
    """A Python receiver (`paho` or `stream`) in a child process."""
    child = subprocess.Popen([sys.executable, __file__, "--receiver", kind, "--port",
                              str(port), "-n", str(n), "--protocol", protocol, "--qos",
                              str(qos)], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    ready = threading.Event()
    threading.Thread(target=_probe_until_ready, args=(port, ready), daemon=True).start()
    line = child.stdout.readline()
    if line.strip() != "ready":
        raise RuntimeError(f"{kind} receiver did not start: {line!r}")
    ready.set()
    threading.Thread(target=_publish, args=(port, files, qos), daemon=True).start()
    result = json.loads(child.stdout.readline())
    child.wait(timeout=30)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=200_000, help="messages per receiver")
    ap.add_argument("--publishers", type=int, default=2)
    ap.add_argument("--qos", type=int, default=0, choices=(0, 1))
    ap.add_argument("--protocol", default="5", choices=("5", "3.1.1"))
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    ap.add_argument("--receiver", choices=("paho", "stream"), help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.receiver:
        recv = _receive_paho if args.receiver == "paho" else _receive_stream
        recv(args.port, args.n, args.protocol, args.qos)
        return

    workdir = Path(tempfile.mkdtemp(prefix="bench-mqtt-"))
    broker = Broker(workdir / "mosquitto").start()
    try:
        per = args.n // args.publishers
        n = per * args.publishers
        files = []
        for k in range(args.publishers):
            f = workdir / f"pub{k}.txt"
            line = (b'{"v":1,"device_id":"D%d","seq":%%08d,"pad":"' % k)
            with f.open("wb") as out:
                for i in range(per):
                    head = line % i
                    out.write(head + b"x" * (217 - len(head)) + b'"}\n')  # 220 B a message
            files.append(f)
        results: dict[str, dict[str, float]] = {}
        results["mosquitto_sub"] = run_mosquitto_sub(broker.port, n, files, args.protocol,
                                                     args.qos)
        results["paho"] = run_python("paho", broker.port, n, files, args.protocol, args.qos)
        results["stream"] = run_python("stream", broker.port, n, files, args.protocol,
                                       args.qos)
    finally:
        broker.stop()
    limit = results["mosquitto_sub"]
    limit_rate = limit["count"] / limit["wall_s"] if limit["wall_s"] else float("nan")
    print(f"{n} messages of 220 B, QoS {args.qos}, MQTT {args.protocol}, "
          f"{args.publishers} mosquitto_pub -l publishers")
    print(f"{'receiver':<15}{'received':>10}{'msgs/s':>11}{'CPU us/msg':>12}"
          f"{'vs mosquitto_sub':>18}")
    figures: dict[str, float] = {}
    for name, r in results.items():
        rate = r["count"] / r["wall_s"] if r["wall_s"] > 0 else float("nan")
        cpu_us = r["cpu_s"] / r["count"] * 1e6 if r["count"] else float("nan")
        figures[f"{name}_msgs_per_s"] = rate
        figures[f"{name}_cpu_us_per_msg"] = cpu_us
        print(f"{name:<15}{int(r['count']):>10}{rate:>11,.0f}{cpu_us:>12.2f}"
              f"{rate / limit_rate:>17.2f}x")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
