"""The harness's ports: below the ephemeral range, a block per worker, taken ports skipped."""

from __future__ import annotations

import errno
import socket
from pathlib import Path

import pytest

from testbed.ports import (
    BLOCK_SIZE,
    FLOOR,
    LINUX_EPHEMERAL_LOW,
    PortAllocator,
    PortInUse,
    ephemeral_low,
    free_port,
    port_block,
    port_is_free,
    retry_on_taken_port,
    says_port_in_use,
    worker_index,
)

# -- where the ports come from -------------------------------------------------------------


def test_the_ephemeral_range_is_read_from_the_kernel(tmp_path: Path) -> None:
    range_file = tmp_path / "ip_local_port_range"
    range_file.write_text("40000\t60999\n")
    assert ephemeral_low(range_file) == 40000


def test_an_unreadable_range_means_the_linux_default(tmp_path: Path) -> None:
    assert ephemeral_low(tmp_path / "missing") == LINUX_EPHEMERAL_LOW
    garbled = tmp_path / "garbled"
    garbled.write_text("not a range\n")
    assert ephemeral_low(garbled) == LINUX_EPHEMERAL_LOW


@pytest.mark.parametrize("name, expected", [("gw0", 0), ("gw3", 3), ("gw12", 12),
                                            ("", None), ("master", None), ("gwx", None)])
def test_the_worker_is_named_by_pytest_xdist(name: str, expected: int | None) -> None:
    assert worker_index({"PYTEST_XDIST_WORKER": name}) == expected


def test_outside_xdist_there_is_no_worker() -> None:
    assert worker_index({}) is None


def test_a_run_without_workers_has_the_first_block() -> None:
    assert port_block(None, 32768) == range(FLOOR, FLOOR + BLOCK_SIZE)


def test_every_worker_has_a_block_of_its_own_below_the_ephemeral_range() -> None:
    low = 32768
    blocks = [port_block(None, low)] + [port_block(w, low) for w in range(11)]
    ports = [p for block in blocks for p in block]
    assert len(ports) == len(set(ports)), "two blocks overlap"
    assert min(ports) >= FLOOR
    assert max(ports) < low


def test_more_workers_than_blocks_wrap_round_but_never_onto_the_first_block() -> None:
    low = 32768
    count = (low - FLOOR) // BLOCK_SIZE  # blocks that fit: 12
    first = port_block(None, low)
    for worker in range(3 * count):
        block = port_block(worker, low)
        assert block != first
        assert block.stop <= low
    assert port_block(count - 1, low) == port_block(0, low)


def test_a_low_ephemeral_range_shrinks_the_blocks_below_it() -> None:
    block = port_block(2, 10000)
    assert block.start >= 1024
    assert block.stop <= 10000
    assert port_block(None, 10000).stop <= block.start


def test_with_no_room_below_the_ephemeral_range_it_says_what_to_change() -> None:
    with pytest.raises(RuntimeError, match="ip_local_port_range"):
        port_block(0, 1100)


# -- handing ports out -----------------------------------------------------------------


def test_ports_are_handed_out_in_turn_and_never_twice_in_a_pass() -> None:
    allocator = PortAllocator(range(21000, 21010), start=0, is_free=lambda _port: True)
    assert [allocator.take() for _ in range(10)] == list(range(21000, 21010))
    assert allocator.take() == 21000  # a new pass, from the start of the block


def test_each_process_starts_at_a_place_of_its_own_in_the_block() -> None:
    allocator = PortAllocator(range(21000, 21010), start=27, is_free=lambda _port: True)
    assert allocator.take() == 21007


def test_ports_in_use_are_skipped() -> None:
    busy = {21001, 21002, 21004}
    allocator = PortAllocator(range(21000, 21010), start=1, is_free=lambda p: p not in busy)
    assert [allocator.take() for _ in range(3)] == [21003, 21005, 21006]


def test_a_run_of_consecutive_ports_is_free_throughout_and_stays_in_the_block() -> None:
    busy = {21003}
    allocator = PortAllocator(range(21000, 21010), start=2, is_free=lambda p: p not in busy)
    assert allocator.take(2) == 21004
    assert allocator.take(2) == 21006
    assert allocator.take(3) == 21000  # 21008-21010 would leave the block


def test_a_block_with_nothing_free_is_an_error_not_a_hang() -> None:
    allocator = PortAllocator(range(21000, 21010), start=0, is_free=lambda _port: False)
    with pytest.raises(RuntimeError, match="no 1 free"):
        allocator.take()
    with pytest.raises(ValueError):
        allocator.take(11)


def test_a_listening_port_is_not_free_and_is_again_once_closed() -> None:
    port = free_port()
    assert port_is_free(port)
    with socket.create_server(("127.0.0.1", port)):
        assert not port_is_free(port)
    assert port_is_free(port)


def test_this_process_gets_ports_of_its_worker_below_the_ephemeral_range() -> None:
    ports = {free_port() for _ in range(5)}
    assert len(ports) == 5
    block = port_block(worker_index(), ephemeral_low())
    assert all(p in block for p in ports)
    assert max(ports) < ephemeral_low()


# -- starting on a port that turned out taken -------------------------------------------------


@pytest.mark.parametrize("output", [
    "1764313202: Error: Address already in use",  # Mosquitto
    'LOG:  could not bind IPv4 address "127.0.0.1": Address already in use',  # PostgreSQL
    "OSError: [Errno 98] error while attempting to bind on address",  # Python
    "transit: error: 127.0.0.1:8080 is already in use; set TRANSIT_HTTP to a free port",
    "transit: error: cannot listen: port 8080 is in use",
])
def test_a_taken_port_is_recognised_in_what_a_server_says(output: str) -> None:
    assert says_port_in_use(output)


@pytest.mark.parametrize("output", [
    "connected; subscribed to transit/v1/dev/+/tap",
    "FATAL: database \"transit\" does not exist",
    "transit: error: no broker at 127.0.0.1:1883 (connection refused)",
])
def test_other_failures_are_not_taken_for_a_taken_port(output: str) -> None:
    assert not says_port_in_use(output)


class Server:
    """A stand-in for a server whose port is taken the first `taken` times it starts."""

    def __init__(self, taken: int, error: Exception | None = None) -> None:
        self.port = 21000
        self.taken = taken
        self.error = error or PortInUse("taken")
        self.starts = 0

    def start_once(self) -> None:
        self.starts += 1
        if self.starts <= self.taken:
            raise self.error

    def move(self) -> None:
        self.port += 1


def test_a_server_meeting_a_taken_port_moves_to_a_fresh_one() -> None:
    server = Server(taken=2)
    retry_on_taken_port(server.start_once, server.move)
    assert (server.starts, server.port) == (3, 21002)


def test_a_bind_error_counts_as_a_taken_port() -> None:
    server = Server(taken=1, error=OSError(errno.EADDRINUSE, "Address already in use"))
    retry_on_taken_port(server.start_once, server.move)
    assert server.port == 21001


def test_a_server_whose_port_is_fixed_does_not_move() -> None:
    server = Server(taken=1)
    with pytest.raises(PortInUse):
        retry_on_taken_port(server.start_once, None)
    assert (server.starts, server.port) == (1, 21000)


def test_other_failures_are_not_retried() -> None:
    server = Server(taken=1, error=OSError(errno.EACCES, "Permission denied"))
    with pytest.raises(OSError, match="Permission denied"):
        retry_on_taken_port(server.start_once, server.move)
    assert server.starts == 1


def test_retries_are_bounded() -> None:
    server = Server(taken=100)
    with pytest.raises(PortInUse):
        retry_on_taken_port(server.start_once, server.move, attempts=4)
    assert server.starts == 4


def test_a_real_listener_moves_off_a_port_someone_holds() -> None:
    holder = socket.create_server(("127.0.0.1", free_port()))
    port = holder.getsockname()[1]
    bound: list[socket.socket] = []
    where = {"port": port}

    def listen() -> None:
        bound.append(socket.create_server(("127.0.0.1", where["port"])))

    def move() -> None:
        where["port"] = free_port()

    try:
        retry_on_taken_port(listen, move)
        assert where["port"] != port
        assert bound[0].getsockname()[1] == where["port"]
    finally:
        holder.close()
        for sock in bound:
            sock.close()
