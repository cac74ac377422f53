"""The gateway's HTTP API as these tests call it: every answer is checked for "never a
500" and every 4xx for the contract's `{"error": {"code", "message"}}` shape."""

from __future__ import annotations

from typing import Any

from tests.support.clients import Http

CARD_FIELDS = {"card", "category", "status", "balance", "currency"}


class Api:
    """`Http` that asserts what holds for every response: no 5xx (the gateway is healthy
    throughout), and every 4xx carries the contract's error object."""

    def __init__(self, http: Http) -> None:
        self.http = http

    def request(self, method: str, path: str, body: Any = None, token: str | None = None,
                raw: bytes | None = None, headers: dict[str, str] | None = None
                ) -> tuple[int, Any]:
        status, payload = self.http.request(method, path, body=body, token=token, raw=raw,
                                            headers=headers)
        where = f"{method} {path} body={body!r:.200} raw={raw!r:.80} -> {status} {payload!r:.300}"
        assert status < 500, f"server error: {where}"
        if status >= 400:
            assert_error_shape(payload, where)
        return status, payload

    def get(self, path: str, token: str | None = None) -> tuple[int, Any]:
        return self.request("GET", path, token=token)

    def post(self, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        return self.request("POST", path, body={} if body is None else body, token=token)


def assert_error_shape(payload: Any, where: str = "") -> None:
    assert isinstance(payload, dict), f"error body is not a JSON object: {where}"
    assert set(payload) == {"error"}, f"error body has other keys: {where}"
    err = payload["error"]
    assert isinstance(err, dict), where
    assert isinstance(err.get("code"), str) and err["code"], where
    assert isinstance(err.get("message"), str) and err["message"], where


def expect(result: tuple[int, Any], status: int, what: str = "") -> Any:
    got, payload = result
    assert got == status, f"{what}: expected {status}, got {got} {payload!r:.300}"
    return payload


def assert_card(payload: Any, card: str, *, category: str = "regular", status: str = "active",
                balance: int | None = None) -> None:
    assert isinstance(payload, dict)
    assert CARD_FIELDS <= set(payload), payload
    assert payload["card"] == card
    assert payload["category"] == category
    assert payload["status"] == status
    assert payload["currency"] == "IDR"
    assert isinstance(payload["balance"], int) and not isinstance(payload["balance"], bool)
    if balance is not None:
        assert payload["balance"] == balance, payload


def balance_of(api: Api, token: str, card: str) -> int:
    return int(expect(api.get(f"/api/v1/cards/{card}", token), 200, "balance")["balance"])
