"""One frozen settings object per program, read from the environment.

`Settings.from_env` is the only place that reads `TRANSIT_*` variables: every program
builds the object once at start, and it is validated there, so that a value that cannot
work stops the program with the variable's name in the message.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from transit.errors import TransitError

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
    "TRANSIT_MQTT_PROTOCOL": "5",
    "TRANSIT_LOG_LEVEL": "INFO",
    "TRANSIT_AUTH_FAILURES": "20/60",
    # Long enough for a broker started beside the gateway (systemd, compose) to come up,
    # short enough that a wrong TRANSIT_MQTT_URL is reported while someone is watching.
    "TRANSIT_BROKER_WAIT_S": "10",
    # Contract section 10: a tap older than this is refused (ts_out_of_range).
    "TRANSIT_TAP_MAX_AGE_DAYS": "7",
    "TRANSIT_TRACK_DAYS": "30",
    "TRANSIT_INGEST_PROCESSES": "0",
    # Live vehicle streams one gateway serves at once, and one token may hold; each
    # holds a server thread (docs/operations.md, "Serving many clients").
    "TRANSIT_HTTP_STREAMS": "128",
    "TRANSIT_STREAMS_PER_TOKEN": "64",
    # A rider's login token lasts this long (contract section 7: tokens that expire).
    "TRANSIT_RIDER_TOKEN_HOURS": "24",
    # Wrong passwords for one e-mail, and wrong check codes for one card (each counted
    # also per address), allowed in a window of seconds before 429: eight digits behind
    # a slow hash and 5 tries per quarter hour take centuries to guess.
    "TRANSIT_RIDER_FAILURES": "5/900",
    # Contract section 8: a validator not heard from for this long is `silent`. A knob for
    # drills and tests, which cannot wait a minute and a half; keep 90 in service.
    "TRANSIT_VALIDATOR_SILENT_S": "90",
}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class SettingsError(TransitError, ValueError):
    """A setting has a value that cannot be used."""


@dataclass(frozen=True)
class MqttEndpoint:
    """Where and how to reach the MQTT broker, parsed from `TRANSIT_MQTT_URL`."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    protocol: str = "5"  # "5" or "3.1.1" (TRANSIT_MQTT_PROTOCOL)
    ca_file: str | None = None    # TRANSIT_MQTT_CA: None trusts the system's CAs
    cert_file: str | None = None  # TRANSIT_MQTT_CERT and _KEY: a client certificate
    key_file: str | None = None

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

    @property
    def address(self) -> str:
        """`host:port`, as messages about the broker name it."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class FailureLimit:
    """How many failed API logins one address may make in a window (`TRANSIT_AUTH_FAILURES`)."""

    limit: int = 20
    window_s: int = 60


def _http_bind(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise SettingsError(f"TRANSIT_HTTP: expected HOST:PORT, got {value!r}")
    if not 0 < int(port) < 65536:
        raise SettingsError(f"TRANSIT_HTTP: port must be 1-65535, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


REDIS_SCHEMES = ("redis", "rediss", "unix")


def _redis_url(url: str) -> None:
    # What the Redis client accepts; anything else would fail only at the first position.
    # Only the scheme is shown: the rest of the URL may hold a password.
    scheme, sep, _rest = url.partition("://")
    if not sep or scheme not in REDIS_SCHEMES:
        got = f"{scheme}://" if sep else "a URL without one"
        raise SettingsError("TRANSIT_REDIS_URL: the scheme must be redis://, rediss:// or "
                            f"unix://, not {got}")


def _positive_int(env: Mapping[str, str], name: str, *, zero_ok: bool = False) -> int:
    raw = env.get(name) or DEFAULTS[name]
    try:
        value = int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}: expected a whole number, got {raw!r}") from exc
    if value < 0 or (value == 0 and not zero_ok):
        raise SettingsError(f"{name}: must be {'0 or more' if zero_ok else 'positive'}, "
                            f"got {value}")
    return value


def _seconds(env: Mapping[str, str], name: str) -> float:
    raw = env.get(name) or DEFAULTS[name]
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}: expected a number of seconds, got {raw!r}") from None
    if not 0 <= value <= 3600:
        raise SettingsError(f"{name}: must be between 0 and 3600 seconds, got {raw!r}")
    return value


def _silent_s(env: Mapping[str, str]) -> float:
    # Past 600 s a validator would go from online straight to offline (contract section 8).
    name = "TRANSIT_VALIDATOR_SILENT_S"
    raw = env.get(name) or DEFAULTS[name]
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 600:
        raise SettingsError(f"{name}: seconds, more than 0 and at most 600, got {raw!r}")
    return value


def _failure_limit(raw: str, name: str = "TRANSIT_AUTH_FAILURES") -> FailureLimit:
    limit, _, window = raw.partition("/")
    window = window or "60"
    if not (limit.isdigit() and window.isdigit()) or int(limit) < 1 or int(window) < 1:
        raise SettingsError(f"{name}: expected FAILURES/SECONDS, e.g. 20/60, got {raw!r}")
    return FailureLimit(int(limit), int(window))


def _log_level(raw: str) -> str:
    name = raw.strip().upper()
    name = {"WARN": "WARNING", "FATAL": "CRITICAL"}.get(name, name)
    if name not in LOG_LEVELS:
        raise SettingsError(f"TRANSIT_LOG_LEVEL: one of {', '.join(LOG_LEVELS)}, got {raw!r}")
    return name


def hex_key(raw: str, name: str, size: int = 32) -> bytes | None:
    """A key written as hex digits (`size` bytes), or None when `raw` is blank."""
    raw = raw.strip()
    if not raw:
        return None
    try:
        key = bytes.fromhex(raw)
    except ValueError:
        raise SettingsError(f"{name} must be {2 * size} hex digits") from None
    if len(key) != size:
        raise SettingsError(f"{name} must be {2 * size} hex digits ({size} bytes), "
                            f"not {len(raw)}")
    return key


def _tls_file(env: Mapping[str, str], name: str) -> str | None:
    path = env.get(name) or None
    if path is not None and not os.path.isfile(path):
        raise SettingsError(f"{name}: no file at {path}")
    return path


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
    mqtt_ca: str | None = None
    mqtt_cert: str | None = None
    mqtt_key: str | None = None
    # TRANSIT_SECRET_KEY: seals device secrets and other secrets at rest; never shown.
    secret_key: bytes | None = field(default=None, repr=False)
    log_level: str = DEFAULTS["TRANSIT_LOG_LEVEL"]
    map_tiles: str = ""
    auth_failures: FailureLimit = FailureLimit()
    broker_wait_s: float = 10.0
    tap_max_age_days: int = 7
    track_days: int = 30  # days of vehicle tracks kept on disk; 0: none kept
    # position ingest processes `transit gateway` starts (docs/operations.md);
    # 0: positions are ingested in the gateway's own process
    ingest_processes: int = 0
    http_streams: int = 128
    streams_per_token: int = 64
    rider_token_hours: int = 24
    rider_failures: FailureLimit = FailureLimit(5, 900)
    validator_silent_s: float = 90.0  # TRANSIT_VALIDATOR_SILENT_S
    # The variables the environment set (not empty): what the defaults did not decide.
    given: frozenset[str] = frozenset()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from the environment, with the contract's defaults."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str:
            return env.get(name) or DEFAULTS[name]

        settings = cls(
            database_url=get("TRANSIT_DATABASE_URL"),
            mqtt_url=get("TRANSIT_MQTT_URL"),
            mqtt_protocol=get("TRANSIT_MQTT_PROTOCOL"),
            redis_url=get("TRANSIT_REDIS_URL"),
            http=get("TRANSIT_HTTP"),
            fares=env.get("TRANSIT_FARES", ""),
            topic_prefix=get("TRANSIT_TOPIC_PREFIX").rstrip("/"),
            gateway_id=get("TRANSIT_GATEWAY_ID"),
            share_group=env.get("TRANSIT_SHARE_GROUP", ""),
            batch_size=_positive_int(env, "TRANSIT_BATCH_SIZE"),
            batch_wait_ms=_positive_int(env, "TRANSIT_BATCH_WAIT_MS"),
            receive_maximum=min(_positive_int(env, "TRANSIT_RECEIVE_MAXIMUM"), 65535),
            mqtt_ca=_tls_file(env, "TRANSIT_MQTT_CA"),
            mqtt_cert=_tls_file(env, "TRANSIT_MQTT_CERT"),
            mqtt_key=_tls_file(env, "TRANSIT_MQTT_KEY"),
            secret_key=hex_key(env.get("TRANSIT_SECRET_KEY", ""), "TRANSIT_SECRET_KEY"),
            log_level=_log_level(get("TRANSIT_LOG_LEVEL")),
            map_tiles=env.get("TRANSIT_MAP_TILES", ""),
            auth_failures=_failure_limit(get("TRANSIT_AUTH_FAILURES")),
            broker_wait_s=_seconds(env, "TRANSIT_BROKER_WAIT_S"),
            tap_max_age_days=_positive_int(env, "TRANSIT_TAP_MAX_AGE_DAYS"),
            # 0 keeps no track at all (tracking/track.py)
            track_days=_positive_int(env, "TRANSIT_TRACK_DAYS", zero_ok=True),
            ingest_processes=_positive_int(env, "TRANSIT_INGEST_PROCESSES", zero_ok=True),
            http_streams=_positive_int(env, "TRANSIT_HTTP_STREAMS"),
            streams_per_token=_positive_int(env, "TRANSIT_STREAMS_PER_TOKEN"),
            rider_token_hours=_positive_int(env, "TRANSIT_RIDER_TOKEN_HOURS"),
            rider_failures=_failure_limit(get("TRANSIT_RIDER_FAILURES"),
                                          "TRANSIT_RIDER_FAILURES"),
            validator_silent_s=_silent_s(env),
            given=frozenset(k for k, v in env.items() if k.startswith("TRANSIT_") and v),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        """Fail early, with the variable's name, on a value that cannot work."""
        MqttEndpoint.parse(self.mqtt_url, self.mqtt_protocol)
        _http_bind(self.http)
        _redis_url(self.redis_url)

    @property
    def mqtt(self) -> MqttEndpoint:
        """The broker endpoint, with the TLS files of `TRANSIT_MQTT_CA/CERT/KEY`."""
        endpoint = MqttEndpoint.parse(self.mqtt_url, self.mqtt_protocol)
        return MqttEndpoint(endpoint.host, endpoint.port, endpoint.tls, endpoint.username,
                            endpoint.password, endpoint.protocol, self.mqtt_ca,
                            self.mqtt_cert, self.mqtt_key)

    @property
    def http_bind(self) -> tuple[str, int]:
        return _http_bind(self.http)

    @property
    def log_level_number(self) -> int:
        """`log_level` as the `logging` module's number."""
        return int(getattr(logging, self.log_level))

    def is_default(self, name: str) -> bool:
        """Whether the variable `name` was left unset, so its default is in use."""
        return name not in self.given

    def as_env(self) -> dict[str, str]:
        """These settings as the `TRANSIT_*` variables `from_env` reads back into them,
        for a program started with them (empty values left out: they mean the default)."""
        key = self.secret_key
        variables = {
            "TRANSIT_DATABASE_URL": self.database_url,
            "TRANSIT_MQTT_URL": self.mqtt_url,
            "TRANSIT_MQTT_PROTOCOL": self.mqtt_protocol,
            "TRANSIT_REDIS_URL": self.redis_url,
            "TRANSIT_HTTP": self.http,
            "TRANSIT_FARES": self.fares,
            "TRANSIT_TOPIC_PREFIX": self.topic_prefix,
            "TRANSIT_GATEWAY_ID": self.gateway_id,
            "TRANSIT_SHARE_GROUP": self.share_group,
            "TRANSIT_BATCH_SIZE": str(self.batch_size),
            "TRANSIT_BATCH_WAIT_MS": str(self.batch_wait_ms),
            "TRANSIT_RECEIVE_MAXIMUM": str(self.receive_maximum),
            "TRANSIT_MQTT_CA": self.mqtt_ca or "",
            "TRANSIT_MQTT_CERT": self.mqtt_cert or "",
            "TRANSIT_MQTT_KEY": self.mqtt_key or "",
            "TRANSIT_SECRET_KEY": key.hex() if key is not None else "",
            "TRANSIT_LOG_LEVEL": self.log_level,
            "TRANSIT_MAP_TILES": self.map_tiles,
            "TRANSIT_AUTH_FAILURES": f"{self.auth_failures.limit}/{self.auth_failures.window_s}",
            "TRANSIT_BROKER_WAIT_S": str(self.broker_wait_s),
            "TRANSIT_TAP_MAX_AGE_DAYS": str(self.tap_max_age_days),
            "TRANSIT_TRACK_DAYS": str(self.track_days),
            "TRANSIT_INGEST_PROCESSES": str(self.ingest_processes),
            "TRANSIT_HTTP_STREAMS": str(self.http_streams),
            "TRANSIT_STREAMS_PER_TOKEN": str(self.streams_per_token),
            "TRANSIT_RIDER_TOKEN_HOURS": str(self.rider_token_hours),
            "TRANSIT_RIDER_FAILURES": (f"{self.rider_failures.limit}/"
                                       f"{self.rider_failures.window_s}"),
            "TRANSIT_VALIDATOR_SILENT_S": str(self.validator_silent_s),
        }
        return {name: value for name, value in variables.items() if value}
