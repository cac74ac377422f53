"""A gateway's device-change listener behind a network link that can drop every packet.

A TCP relay in this process cannot fake such a link: its own TCP stack acknowledges
whatever it is sent, so the sender never waits for an acknowledgement. Nor can a queue
that drops packets on the sender's own interface: TCP hears of a local drop at once and
takes other paths than for a packet lost on the way. So the link is a real one between
two network namespaces (`unshare`: no privileges needed, nothing of the host's network
touched):

    listener (near namespace) --veth, 10.200.0.1 -> 10.200.0.2--> relay (far namespace)
        --Unix socket (crosses namespaces)--> relay in the test process --> PostgreSQL

`drop` gives the far end's side of the link a queue of length 0 (`tc qdisc ... pfifo
limit 0`): the listener's packets still leave and arrive, but nothing comes back, not
even an acknowledgement, as on a radio link gone dead. `restore` takes the queue away.

The near process reports on standard output, one JSON object a line: `{"hearing": bool}`
whenever the listener's state changes, `{"forget": id}` and `{"clear": true}` as the
listener tells its directory, `{"done": command}` once a command took effect.
Tests use `LossyListener`; `python -m tests.support.lossy_link near|far ...` are the
processes in the namespaces.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from sqlalchemy.engine import make_url

_print_lock = threading.Lock()


def _say(**event: Any) -> None:
    with _print_lock:
        print(json.dumps(event), flush=True)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    """Copy bytes from `src` to `dst` until either side ends, then end both."""
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    for sock in (src, dst):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _relay(server: socket.socket, connect: Callable[[], socket.socket]) -> None:
    """Accept on `server` for ever; join each connection to a new one from `connect`."""
    while True:
        try:
            client, _addr = server.accept()
        except OSError:
            return  # the server was closed
        try:
            upstream = connect()
        except OSError:
            client.close()
            continue
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pump, args=(a, b), daemon=True).start()


class _Recorder:
    """The directory the listener tells: each call reported on standard output."""

    def forget(self, device_id: str) -> None:
        _say(forget=device_id)

    def clear(self) -> None:
        _say(clear=True)


NEAR, FAR = "10.200.0.1", "10.200.0.2"  # the two ends of the private link


def far(socket_path: str) -> None:
    """In the far namespace, once the link's end is in it: the relay to the Unix socket,
    and the commands (from the near process) that drop and restore the link."""
    # Running, so `unshare` has made this namespace: the link's end can be moved in.
    # (Moved before, it would land in the namespace `unshare` was started from, and
    # this one would have no `far`: a busy machine showed that race.)
    _say(ready=True)
    sys.stdin.readline()  # "go": the near process has moved the link's end in here
    for setup in (["ip", "link", "set", "lo", "up"], ["ip", "addr", "add", f"{FAR}/24",
                  "dev", "far"], ["ip", "link", "set", "far", "up"]):
        subprocess.run(setup, check=True)
    server = socket.create_server((FAR, 0))  # a namespace of its own: no one else here

    def to_unix() -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(socket_path)
        return sock

    threading.Thread(target=_relay, args=(server, to_unix), daemon=True).start()
    _say(port=server.getsockname()[1])
    for line in sys.stdin:
        command = line.strip()
        if command == "drop":
            subprocess.run(["tc", "qdisc", "add", "dev", "far", "root", "pfifo", "limit", "0"],
                           check=True)
        elif command == "restore":
            subprocess.run(["tc", "qdisc", "del", "dev", "far", "root"], check=True)
        _say(done=command)


def near(socket_path: str, url: str) -> None:
    """In the near namespace: the link, the far process, the listener, the commands."""
    from fare_gateway.adapters.device_watch import PostgresListener
    from ledger.adapters.db import make_engine

    subprocess.run(["ip", "link", "add", "near", "type", "veth", "peer", "name", "far"],
                   check=True)
    far_end = subprocess.Popen(["unshare", "--net", "--", sys.executable, "-m",
                                "tests.support.lossy_link", "far", socket_path],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               bufsize=1)
    assert far_end.stdin is not None and far_end.stdout is not None
    far_end.stdout.readline()  # {"ready": true}: its namespace exists
    # `unshare` runs the program in the process it made the namespace in: this pid.
    subprocess.run(["ip", "link", "set", "far", "netns", str(far_end.pid)], check=True)
    for setup in (["ip", "addr", "add", f"{NEAR}/24", "dev", "near"],
                  ["ip", "link", "set", "near", "up"]):
        subprocess.run(setup, check=True)
    far_end.stdin.write("go\n")
    far_end.stdin.flush()
    port = json.loads(far_end.stdout.readline())["port"]
    engine = make_engine(make_url(url).set(host=FAR, port=port)
                         .render_as_string(hide_password=False))
    # A ping every second, so that the loss meets a query waiting for its answer.
    listener = PostgresListener(engine, _Recorder(), ping_s=1.0)

    def report() -> None:
        hearing = None
        while True:
            if listener.hearing != hearing:
                hearing = listener.hearing
                _say(hearing=hearing)
            time.sleep(0.02)

    threading.Thread(target=report, daemon=True).start()
    listener.start(wait_s=0)
    for line in sys.stdin:
        far_end.stdin.write(line)
        far_end.stdin.flush()
        _say(**json.loads(far_end.stdout.readline()))
    far_end.kill()
    os._exit(0)  # the listener may be stuck in a query: do not wait for it


def main() -> None:
    role, *args = sys.argv[1:]
    (near if role == "near" else far)(*args)


class LossyListener:
    """The listener of a gateway on database `url`, behind a link `send("drop")` kills."""

    def __init__(self, url: str) -> None:
        self.url = url
        # A Unix socket's path is limited to 107 bytes: a short directory of its own.
        self._dir = Path(tempfile.mkdtemp(prefix="lossy", dir="/tmp"))
        self.socket_path = str(self._dir / "pg.sock")
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(self.socket_path)
        self._server.listen()
        upstream = make_url(url)
        address = (upstream.host or "127.0.0.1", upstream.port or 5432)

        def to_postgres() -> socket.socket:
            sock = socket.create_connection(address, timeout=10)
            sock.settimeout(None)  # the timeout was for connecting: an idle link is fine
            return sock

        threading.Thread(target=_relay, args=(self._server, to_postgres), daemon=True).start()
        self.events: list[dict[str, Any]] = []
        self.log: list[str] = []  # the process's standard error
        self._cv = threading.Condition()
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> LossyListener:
        self.proc = subprocess.Popen(
            ["unshare", "--map-root-user", "--net", "--", sys.executable, "-m",
             "tests.support.lossy_link", "near", self.socket_path, self.url],
            cwd=Path(__file__).resolve().parents[2], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()
        threading.Thread(target=self._keep_log, args=(self.proc.stderr,), daemon=True).start()
        return self

    def _read(self, out: IO[str]) -> None:
        for line in out:
            with self._cv:
                self.events.append(dict(json.loads(line), _t=time.monotonic()))
                self._cv.notify_all()

    def _keep_log(self, err: IO[str]) -> None:
        for line in err:
            self.log.append(line.rstrip())

    def wait(self, check: Callable[[dict[str, Any]], bool], since: int, timeout: float,
             what: str) -> dict[str, Any]:
        """The first event from index `since` on for which `check` holds."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                for event in self.events[since:]:
                    if check(event):
                        return event
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"listener: {what} not seen in {timeout:.0f} s; "
                                         f"events {self.events[-10:]}; log "
                                         f"{self.log[-20:]}")
                self._cv.wait(min(left, 0.5))

    def send(self, command: str) -> None:
        """`drop` or `restore`; returns once the namespace's link has changed."""
        assert self.proc is not None and self.proc.stdin is not None
        since = len(self.events)
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        self.wait(lambda e: e.get("done") == command, since, 30, f"{command} done")

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._server.close()
        shutil.rmtree(self._dir, ignore_errors=True)


if __name__ == "__main__":
    main()
