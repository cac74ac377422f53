"""TCP ports for the servers a test or a benchmark starts, where no one else takes them.

Binding port 0 hands out a port of the kernel's ephemeral range, the same range every
outgoing connection takes its local port from: between the moment a test learns such a
port and the moment its server binds it, a client connection elsewhere on the machine
may hold it, and the server fails with "Address already in use". So ports are handed
out *below* the ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`), where the
kernel never picks one on its own, from a block per pytest-xdist worker (`gw0`, `gw1`,
...; a run without workers, such as a benchmark, has the first block), so that workers
never hand out the same port. A port something already listens on is skipped. Two
processes without a worker share a block: each starts at a place of its own in it, and
a server that still meets a taken port is started again on a fresh one
(`retry_on_taken_port`).
"""

from __future__ import annotations

import errno
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LINUX_EPHEMERAL_LOW = 32768  # the kernel's default low end, where the file cannot be read
FLOOR = 20000  # above the ports local services listen on (PostgreSQL, Redis, MQTT, HTTP)
BLOCK_SIZE = 1000  # ports per worker: a worker's servers at any one time fit many times over
MIN_BLOCK_SIZE = 50
START_ATTEMPTS = 5

# How a server says its port was taken: the errno text (Mosquitto, PostgreSQL, Python's
# OSError) or a one-line error naming the port or address (`transit gateway`).
_IN_USE = re.compile(
    r"address already in use|EADDRINUSE|errno 98|(\bport\b|:\d+\b)[^\n]*\bin use\b", re.IGNORECASE)


class PortInUse(RuntimeError):
    """A server could not listen because its port was taken."""


def ephemeral_low(path: Path = EPHEMERAL_RANGE_FILE) -> int:
    """The lowest port the kernel hands to outgoing connections and to bind(port 0)."""
    try:
        low, _high = (int(part) for part in path.read_text().split())
    except (OSError, ValueError):
        return LINUX_EPHEMERAL_LOW
    return low


def worker_index(env: Mapping[str, str] | None = None) -> int | None:
    """This process's pytest-xdist worker number (`gw3` -> 3), or None outside xdist."""
    name = (os.environ if env is None else env).get("PYTEST_XDIST_WORKER", "")
    match = re.fullmatch(r"gw(\d+)", name)
    return int(match.group(1)) if match else None


def port_block(worker: int | None, low: int, floor: int = FLOOR,
               size: int = BLOCK_SIZE) -> range:
    """The ports of `worker` (None: a process outside xdist), all below `low`.

    Block 0 belongs to processes without a worker; worker n has block n + 1, the blocks
    wrapping round where there are more workers than room below the ephemeral range.
    """
    if low - floor < 2 * size:
        # A machine whose ephemeral range starts low: use what room there is above the
        # privileged ports, in smaller blocks.
        floor = 1024
        size = min(size, (low - floor) // 2)
    if size < MIN_BLOCK_SIZE:
        raise RuntimeError(
            f"the ephemeral port range starts at {low}, leaving no room below it for the "
            "test servers' ports; raise its low end, e.g. "
            "sysctl -w net.ipv4.ip_local_port_range='32768 60999'")
    blocks = (low - floor) // size
    index = 0 if worker is None else 1 + worker % (blocks - 1)
    start = floor + index * size
    return range(start, start + size)


def port_is_free(port: int) -> bool:
    """Whether nothing holds `port` on any IPv4 address (a listener, a connection, TIME_WAIT)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            # No SO_REUSEADDR: the probe must fail wherever a server's bind could.
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


class PortAllocator:
    """Hands out the ports of one block in turn, skipping those in use."""

    def __init__(self, block: range, start: int | None = None,
                 is_free: Callable[[int], bool] = port_is_free) -> None:
        if not block:
            raise ValueError("an empty block of ports")
        self.block = block
        self._is_free = is_free
        offset = (os.getpid() if start is None else start) % len(block)
        self._cursor = block.start + offset
        self._lock = threading.Lock()

    def take(self, count: int = 1) -> int:
        """The first of `count` consecutive free ports, none handed out in this pass."""
        if not 1 <= count <= len(self.block):
            raise ValueError(f"cannot take {count} consecutive ports from {len(self.block)}")
        with self._lock:
            for _ in range(len(self.block)):
                first = self._cursor
                if first + count > self.block.stop:
                    self._cursor = self.block.start
                    continue
                self._cursor = first + count
                if self._cursor >= self.block.stop:
                    self._cursor = self.block.start
                if all(self._is_free(port) for port in range(first, first + count)):
                    return first
        raise RuntimeError(f"no {count} free consecutive port(s) in "
                           f"{self.block.start}-{self.block.stop - 1}")


_allocator: PortAllocator | None = None
_allocator_lock = threading.Lock()


def allocator() -> PortAllocator:
    """This process's allocator, on its worker's block (made on first use, not at import)."""
    global _allocator
    with _allocator_lock:
        if _allocator is None:
            _allocator = PortAllocator(port_block(worker_index(), ephemeral_low()))
        return _allocator


def free_port(count: int = 1) -> int:
    """A free port below the ephemeral range (the first of `count` consecutive ones)."""
    return allocator().take(count)


def says_port_in_use(text: str) -> bool:
    """Whether a server's output says it could not listen because its port was taken."""
    return bool(_IN_USE.search(text))


def is_port_in_use(exc: BaseException) -> bool:
    """Whether `exc` is a bind that met a taken port."""
    return isinstance(exc, PortInUse) or (
        isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE)


def retry_on_taken_port(start_once: Callable[[], object],
                        move: Callable[[], object] | None,
                        attempts: int = START_ATTEMPTS) -> None:
    """Run `start_once`; while its port turns out taken, `move` the server to a fresh port
    and try again (`move=None`: the port is fixed, a taken port is an error)."""
    for attempt in range(attempts):
        try:
            start_once()
            return
        except (PortInUse, OSError) as exc:
            if not is_port_in_use(exc) or move is None or attempt == attempts - 1:
                raise
            move()


def wait_port(port: int, timeout: float = 10.0) -> None:
    """Wait until something accepts connections on 127.0.0.1:`port`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout}s") \
                    from None
            time.sleep(0.05)
