"""HTTP over raw sockets, for what a well-behaved client never does: stop half-way
through a request, hold a stream open, come from a chosen source address."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from typing import Any

HALF_SENT = b"GET /healthz HTTP/1.1\r\nHost: transit\r\nUser-Agent: slow"  # no end of headers


def connect(base_url: str, source: str | None = None, timeout: float = 30.0
            ) -> socket.socket:
    """A TCP connection to the gateway at `base_url`, from `source` (an address) if named."""
    host, port = base_url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=timeout,
                                    source_address=(source, 0) if source else None)


def half_sent(base_url: str) -> socket.socket:
    """A connection that sent a request line and part of its headers, then nothing."""
    sock = connect(base_url)
    sock.sendall(HALF_SENT)
    return sock


def still_open(sock: socket.socket) -> bool:
    """Whether the server has not closed this connection (nothing to read, no EOF)."""
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""  # b"": the server closed it
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


@dataclass
class Answer:
    """A response's status, headers (lower-case names) and what of its body was read."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(base_url: str, path: str, token: str | None = None, source: str | None = None,
            timeout: float = 30.0) -> Answer:
    """One GET on a fresh connection, read to its end (the server closes it)."""
    return send(base_url, _get(path, token, close=True), source, timeout)


def send(base_url: str, raw: bytes, source: str | None = None, timeout: float = 30.0
         ) -> Answer:
    """`raw` bytes on a fresh connection, and the answer, read until the server closes."""
    with connect(base_url, source, timeout) as sock:
        sock.sendall(raw)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    answer = _head(head, body)
    if answer.headers.get("transfer-encoding") == "chunked":
        answer.body = _unchunk(body)
    return answer


class Stream:
    """`GET /api/v1/vehicles/stream` held open on a socket of its own."""

    def __init__(self, base_url: str, token: str, timeout: float = 30.0) -> None:
        self.sock = connect(base_url, timeout=timeout)
        self.sock.sendall(_get("/api/v1/vehicles/stream", token))
        self._data = b""
        while b"\r\n\r\n" not in self._data:
            self._read()
        head, _, self._data = self._data.partition(b"\r\n\r\n")
        self.answer = _head(head, b"")

    @property
    def status(self) -> int:
        return self.answer.status

    def refusal(self) -> Any:
        """The JSON error of a refused stream (read to its end)."""
        length = int(self.answer.headers["content-length"])
        while len(self._data) < length:
            self._read()
        return json.loads(self._data[:length])

    def wait_for(self, text: bytes) -> None:
        """Read until `text` has come (e.g. the first event, `event: snapshot`)."""
        while text not in self._data:
            self._read()

    def ended(self, timeout: float) -> bool:
        """Whether the server closes the stream within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                if not self.sock.recv(65536):
                    return True
            except TimeoutError:
                return False
            except ConnectionResetError:
                return True
        return False

    def _read(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"the stream closed: {self._data[-300:]!r}")
        self._data += chunk

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _get(path: str, token: str | None, close: bool = False) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: transit"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _head(head: bytes, body: bytes) -> Answer:
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(status_line.split()[1]), headers, body)


def _unchunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, body = out + body[:size], body[size + 2:]
    return out
