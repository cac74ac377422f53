"""Run the commands that read package data from an installed wheel, far from the checkout.

An editable install finds its data files in the checkout, so a file missing from the
package data only shows once the project is installed for real. `.ci/run` builds the
wheel, installs it with the gateway and demo extras into a fresh venv, and runs this
script with that venv's Python in isolated mode (`python -I`, from a scratch folder), so
that nothing of the checkout is on `sys.path`. Each step prints one line; the first that
fails ends the run with a non-zero status and what it saw.

    python -I check_wheel.py CHECKOUT
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

PACKAGES = ("transit", "ledger", "tracking", "fare_gateway", "validator_agent", "hardware_sim")
NOT_SHIPPED = ("testbed", "tests", "bench")  # the harness, the tests and the benchmarks
DEVICE, VEHICLE = "WHEEL-0001-A", "WHEEL-0001"
START_S = 60.0


class CheckFailed(Exception):
    """A step's command did not do what an installed package must."""


def load_port_allocator(checkout: Path):  # type: ignore[no-untyped-def]
    """The harness's port allocator, loaded from its file so the checkout stays off sys.path."""
    spec = importlib.util.spec_from_file_location("wheel_check_ports",
                                                  checkout / "testbed" / "ports.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Check:
    """The steps, in a scratch folder, with the venv's own `transit`."""

    def __init__(self, checkout: Path, scratch: Path) -> None:
        self.checkout = checkout.resolve()
        self.scratch = scratch
        self.transit = str(Path(sys.executable).parent / "transit")
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("TRANSIT_", "PYTHON", "VIRTUAL_ENV"))}
        self.env.update(TRANSIT_DATABASE_URL=f"sqlite:///{scratch}/transit.db",
                        TRANSIT_LOG_LEVEL="WARNING")
        self.ports = load_port_allocator(checkout)

    def run(self, *args: str) -> str:
        done = subprocess.run([self.transit, *args], cwd=self.scratch, env=self.env,
                              capture_output=True, text=True, timeout=120)
        output = done.stdout + done.stderr
        if done.returncode != 0 or "Traceback" in output:
            raise CheckFailed(f"transit {' '.join(args)} exited {done.returncode}:\n{output}")
        return done.stdout

    def installed_apart(self) -> str:
        for name in PACKAGES:
            spec = importlib.util.find_spec(name)
            origin = Path(spec.origin).resolve() if spec and spec.origin else None
            if origin is None or origin.is_relative_to(self.checkout):
                raise CheckFailed(f"{name} is not imported from the installed wheel: {origin}")
        for name in NOT_SHIPPED:
            if importlib.util.find_spec(name) is not None:
                raise CheckFailed(f"the wheel installs {name}, which stays in the checkout")
        return f"packages imported from {Path(spec.origin).parents[1]}"

    def help(self) -> str:
        out = self.run("--help")
        for command in ("gateway", "db", "broker", "fares"):
            if not re.search(rf"^\s+{command}\b", out, re.MULTILINE):
                raise CheckFailed(f"transit --help does not list {command}:\n{out}")
        return "transit --help lists the commands"

    def fares(self) -> str:
        from importlib import resources

        policy = self.scratch / "surabaya.toml"
        policy.write_text(resources.files("fare_gateway.fares").joinpath("surabaya.toml")
                          .read_text("utf-8"))
        return self.run("fares", "check", str(policy)).strip()

    def database(self) -> str:
        self.run("db", "upgrade")
        self.run("devices", "add", DEVICE, "--vehicle", VEHICLE)
        return "transit db upgrade migrated a fresh SQLite database; a device is registered"

    def broker_config(self) -> str:
        out_dir = self.scratch / "broker"
        self.run("broker", "config", "--out", str(out_dir))
        conf = (out_dir / "mosquitto.conf").read_text()
        acl = (out_dir / "acl").read_text()
        if "max_queued_messages 0" not in conf:
            raise CheckFailed(f"the broker policy is not in mosquitto.conf:\n{conf}")
        if f"user {DEVICE}" not in acl:
            raise CheckFailed(f"the registered device has no ACL entry:\n{acl}")
        return "transit broker config wrote the policy, passwords and ACL"

    def map_page(self) -> str:
        """A gateway from the wheel serves its pages (the map, the riders' page, the
        disputes queue) and every file each page loads."""
        broker_port, http_port = self.ports.free_port(), self.ports.free_port()
        conf = self.scratch / "mosquitto-plain.conf"
        conf.write_text(f"listener {broker_port} 127.0.0.1\nallow_anonymous true\n"
                        + ("user root\n" if os.geteuid() == 0 else ""))
        broker = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        log = (self.scratch / "gateway.log").open("wb")
        env = dict(self.env, TRANSIT_MQTT_URL=f"mqtt://127.0.0.1:{broker_port}",
                   TRANSIT_HTTP=f"127.0.0.1:{http_port}")
        self.ports.wait_port(broker_port, 10)
        gateway = subprocess.Popen([self.transit, "gateway"], cwd=self.scratch, env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{http_port}"
        try:
            self._wait_healthy(base, gateway)
            served = []
            for address in ("/", "/rider/", "/disputes/"):
                page = _get(f"{base}{address}").decode()
                assets = sorted(set(re.findall(r'(?:src|href)="(/[^"]+)"', page)))
                if not assets:
                    raise CheckFailed(f"the page {address} loads no files of the gateway's:"
                                      f"\n{page[:500]}")
                for path in assets:
                    if not _get(f"{base}{path}"):
                        raise CheckFailed(f"{path} is empty")
                served.append(f"{address} and its {len(assets)} files")
            return "the pages: " + "; ".join(served)
        except CheckFailed as exc:
            raise CheckFailed(f"{exc}\ngateway log:\n"
                              f"{(self.scratch / 'gateway.log').read_text()[-3000:]}") from None
        finally:
            for proc in (gateway, broker):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=30)
            log.close()

    def _wait_healthy(self, base: str, gateway: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + START_S
        while True:
            if gateway.poll() is not None:
                raise CheckFailed(f"transit gateway exited {gateway.returncode} at start")
            try:
                if _get(f"{base}/healthz"):
                    return
            except (OSError, CheckFailed):
                pass
            if time.monotonic() > deadline:
                raise CheckFailed(f"transit gateway not healthy within {START_S:.0f}s")
            time.sleep(0.2)


def _get(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return bytes(resp.read())
    except urllib.error.HTTPError as exc:
        raise CheckFailed(f"GET {url}: {exc.code} {exc.read()[:300]!r}") from None


def main(argv: list[str]) -> int:
    """Run every step; 0 when all passed."""
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="transit-wheel-") as folder:
        check = Check(Path(argv[0]), Path(folder))
        for step in (check.installed_apart, check.help, check.fares, check.database,
                     check.broker_config, check.map_page):
            try:
                print(f"wheel: {step()}", flush=True)
            except CheckFailed as exc:
                print(f"wheel: FAILED {step.__name__}: {exc}", file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
