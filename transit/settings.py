"""One frozen settings object per program, read from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

DEFAULTS: dict[str, str] = {
    "TRANSIT_DATABASE_URL": "sqlite:///transit.db",
    "TRANSIT_MQTT_URL": "mqtt://127.0.0.1:1883",
    "TRANSIT_REDIS_URL": "redis://127.0.0.1:6379/0",
    "TRANSIT_HTTP": "127.0.0.1:8080",
    "TRANSIT_FARES": "",
    "TRANSIT_TOPIC_PREFIX": "transit/v1",
    "TRANSIT_GATEWAY_ID": "gateway-1",
    "TRANSIT_SHARE_GROUP": "",
    "TRANSIT_BATCH_SIZE": "500",
    # After the first tap of a batch, how long to wait for more. Taps that arrive while
    # a batch commits form the next one anyway, so a longer wait only adds latency:
    # 5 ms gave p50 14 ms at 1,000 taps/s, 1 ms gave 8 ms (docs/benchmarks.md).
    "TRANSIT_BATCH_WAIT_MS": "1",
    "TRANSIT_RECEIVE_MAXIMUM": "2000",
}


class SettingsError(ValueError):
    """A setting has a value that cannot be used."""


@dataclass(frozen=True)
class MqttEndpoint:
    """Where and how to reach the MQTT broker, parsed from `TRANSIT_MQTT_URL`."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None
    protocol: str = "5"  # "5" or "3.1.1" (TRANSIT_MQTT_PROTOCOL)

    @classmethod
    def parse(cls, url: str, protocol: str = "5") -> MqttEndpoint:
        """Parse `mqtt://` or `mqtts://` URLs with optional `user:password@`."""
        if protocol not in ("5", "3.1.1"):
            raise SettingsError(f"TRANSIT_MQTT_PROTOCOL: 5 or 3.1.1, got {protocol!r}")
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise SettingsError(f"TRANSIT_MQTT_URL: scheme must be mqtt or mqtts, got {url!r}")
        if not parts.hostname:
            raise SettingsError(f"TRANSIT_MQTT_URL: no host in {url!r}")
        tls = parts.scheme == "mqtts"
        try:
            port = parts.port
        except ValueError as exc:
            raise SettingsError(f"TRANSIT_MQTT_URL: bad port in {url!r}") from exc
        if port is None:
            port = 8883 if tls else 1883
        elif not 0 < port < 65536:
            raise SettingsError(f"TRANSIT_MQTT_URL: port must be 1-65535 in {url!r}")
        return cls(
            host=parts.hostname,
            port=port,
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            protocol=protocol,
        )


def _http_bind(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise SettingsError(f"TRANSIT_HTTP: expected HOST:PORT, got {value!r}")
    if not 0 < int(port) < 65536:
        raise SettingsError(f"TRANSIT_HTTP: port must be 1-65535, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _positive_int(env: Mapping[str, str], name: str) -> int:
    raw = env.get(name) or DEFAULTS[name]
    try:
        value = int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}: expected a whole number, got {raw!r}") from exc
    if value <= 0:
        raise SettingsError(f"{name}: must be positive, got {value}")
    return value


@dataclass(frozen=True)
class Settings:
    """Every setting a program needs; build it once with `Settings.from_env()`."""

    database_url: str = DEFAULTS["TRANSIT_DATABASE_URL"]
    mqtt_url: str = DEFAULTS["TRANSIT_MQTT_URL"]
    mqtt_protocol: str = "5"
    redis_url: str = DEFAULTS["TRANSIT_REDIS_URL"]
    http: str = DEFAULTS["TRANSIT_HTTP"]
    fares: str = DEFAULTS["TRANSIT_FARES"]
    topic_prefix: str = DEFAULTS["TRANSIT_TOPIC_PREFIX"]
    gateway_id: str = DEFAULTS["TRANSIT_GATEWAY_ID"]
    share_group: str = DEFAULTS["TRANSIT_SHARE_GROUP"]
    batch_size: int = 500
    batch_wait_ms: int = 1
    receive_maximum: int = 2000
    extra: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from the environment, with the contract's defaults."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str:
            return env.get(name) or DEFAULTS[name]

        settings = cls(
            database_url=get("TRANSIT_DATABASE_URL"),
            mqtt_url=get("TRANSIT_MQTT_URL"),
            mqtt_protocol=env.get("TRANSIT_MQTT_PROTOCOL") or "5",
            redis_url=get("TRANSIT_REDIS_URL"),
            http=get("TRANSIT_HTTP"),
            fares=env.get("TRANSIT_FARES", ""),
            topic_prefix=get("TRANSIT_TOPIC_PREFIX").rstrip("/"),
            gateway_id=get("TRANSIT_GATEWAY_ID"),
            share_group=env.get("TRANSIT_SHARE_GROUP", ""),
            batch_size=_positive_int(env, "TRANSIT_BATCH_SIZE"),
            batch_wait_ms=_positive_int(env, "TRANSIT_BATCH_WAIT_MS"),
            receive_maximum=min(_positive_int(env, "TRANSIT_RECEIVE_MAXIMUM"), 65535),
            extra={"map_tiles": env.get("TRANSIT_MAP_TILES", ""),
                   "auth_failures": env.get("TRANSIT_AUTH_FAILURES") or "20/60"},
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        """Fail early, with the variable's name, on a value that cannot work."""
        limit, _, window = str(self.extra.get("auth_failures", "20/60")).partition("/")
        if not limit.isdigit() or int(limit) < 1 or not (window or "60").isdigit():
            raise SettingsError("TRANSIT_AUTH_FAILURES: expected FAILURES/SECONDS, e.g. 20/60")
        MqttEndpoint.parse(self.mqtt_url, self.mqtt_protocol)
        _http_bind(self.http)

    @property
    def mqtt(self) -> MqttEndpoint:
        return MqttEndpoint.parse(self.mqtt_url, self.mqtt_protocol)

    @property
    def http_bind(self) -> tuple[str, int]:
        return _http_bind(self.http)
