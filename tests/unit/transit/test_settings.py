"""Settings from the environment (contract section 4) and MQTT topic names (section 2)."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest

from fare_gateway.fares.policy import builtin_policy, policy_from_setting
from transit.errors import TransitError
from transit.settings import FailureLimit, MqttEndpoint, Settings, SettingsError
from transit.topics import Topics

# -- defaults (contract section 4 table) ---------------------------------------------


def test_defaults_are_the_contract_table() -> None:
    s = Settings.from_env({})
    assert s.database_url == "sqlite:///transit.db"
    assert s.mqtt_url == "mqtt://127.0.0.1:1883"
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.http == "127.0.0.1:8080"
    assert s.topic_prefix == "transit/v1"
    assert s.fares == ""  # the built-in policy
    assert policy_from_setting(s.fares) == builtin_policy()


def test_default_endpoints_parse() -> None:
    s = Settings.from_env({})
    assert s.mqtt == MqttEndpoint("127.0.0.1", 1883, False, None, None)
    assert s.http_bind == ("127.0.0.1", 8080)


def test_unrelated_environment_is_ignored() -> None:
    assert Settings.from_env({"PATH": "/bin", "HOME": "/root"}) == Settings.from_env({})


def test_empty_values_fall_back_to_defaults() -> None:
    env = {name: "" for name in ("TRANSIT_DATABASE_URL", "TRANSIT_MQTT_URL",
                                 "TRANSIT_REDIS_URL", "TRANSIT_HTTP", "TRANSIT_TOPIC_PREFIX")}
    assert Settings.from_env(env) == Settings.from_env({})


def test_from_env_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSIT_HTTP", "0.0.0.0:9090")
    monkeypatch.setenv("TRANSIT_TOPIC_PREFIX", "city/v1")
    s = Settings.from_env()
    assert s.http_bind == ("0.0.0.0", 9090)
    assert s.topic_prefix == "city/v1"


# -- overrides ------------------------------------------------------------------------


def test_every_contract_variable_can_be_overridden(tmp_path) -> None:  # type: ignore[no-untyped-def]
    fares = tmp_path / "fares.toml"
    env = {
        "TRANSIT_DATABASE_URL": "postgresql://transit:pw@db.internal:5432/transit",
        "TRANSIT_MQTT_URL": "mqtts://gw:secret@broker.internal:8884",
        "TRANSIT_REDIS_URL": "redis://cache.internal:6380/2",
        "TRANSIT_HTTP": "0.0.0.0:80",
        "TRANSIT_FARES": str(fares),
        "TRANSIT_TOPIC_PREFIX": "sby/v1",
    }
    s = Settings.from_env(env)
    assert s.database_url == env["TRANSIT_DATABASE_URL"]
    assert s.mqtt_url == env["TRANSIT_MQTT_URL"]
    assert s.redis_url == env["TRANSIT_REDIS_URL"]
    assert s.http == "0.0.0.0:80"
    assert s.http_bind == ("0.0.0.0", 80)
    assert s.fares == str(fares)
    assert s.topic_prefix == "sby/v1"
    assert s.mqtt == MqttEndpoint("broker.internal", 8884, True, "gw", "secret")


def test_topic_prefix_trailing_slash_is_dropped() -> None:
    assert Settings.from_env({"TRANSIT_TOPIC_PREFIX": "transit/v1/"}).topic_prefix == "transit/v1"


def test_tuning_values_are_read_as_numbers() -> None:
    s = Settings.from_env({"TRANSIT_BATCH_SIZE": "50", "TRANSIT_BATCH_WAIT_MS": "20",
                           "TRANSIT_RECEIVE_MAXIMUM": "100"})
    assert (s.batch_size, s.batch_wait_ms, s.receive_maximum) == (50, 20, 100)
    # MQTT 5 Receive Maximum is a two-byte integer
    assert Settings.from_env({"TRANSIT_RECEIVE_MAXIMUM": "1000000"}).receive_maximum == 65535


@pytest.mark.parametrize("name", ["TRANSIT_BATCH_SIZE", "TRANSIT_BATCH_WAIT_MS",
                                  "TRANSIT_RECEIVE_MAXIMUM"])
@pytest.mark.parametrize("value", ["0", "-5", "ten", "1.5"])
def test_bad_tuning_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


# -- MQTT URLs ------------------------------------------------------------------------


@pytest.mark.parametrize("url,expected", [
    ("mqtt://127.0.0.1:1883", MqttEndpoint("127.0.0.1", 1883, False)),
    ("mqtt://broker.example", MqttEndpoint("broker.example", 1883, False)),
    ("mqtts://broker.example", MqttEndpoint("broker.example", 8883, True)),
    ("mqtts://broker.example:443", MqttEndpoint("broker.example", 443, True)),
    ("mqtt://broker.example:11883", MqttEndpoint("broker.example", 11883, False)),
    ("mqtt://user:pass@broker.example", MqttEndpoint("broker.example", 1883, False, "user",
                                                     "pass")),
    ("mqtts://user:pass@broker.example:8884", MqttEndpoint("broker.example", 8884, True,
                                                           "user", "pass")),
    ("mqtt://gw%40sby:p%3Ass%2Fw%40rd@10.0.0.5", MqttEndpoint("10.0.0.5", 1883, False,
                                                              "gw@sby", "p:ss/w@rd")),
    ("mqtt://onlyuser@broker.example", MqttEndpoint("broker.example", 1883, False,
                                                    "onlyuser", None)),
    ("mqtt://[::1]:1884", MqttEndpoint("::1", 1884, False)),
    ("mqtts://[2001:db8::1]", MqttEndpoint("2001:db8::1", 8883, True)),
])
def test_mqtt_urls(url: str, expected: MqttEndpoint) -> None:
    assert MqttEndpoint.parse(url) == expected
    assert Settings.from_env({"TRANSIT_MQTT_URL": url}).mqtt == expected


@pytest.mark.parametrize("url", [
    "http://broker.example:1883", "tcp://broker.example:1883", "ws://broker.example",
    "broker.example:1883", "127.0.0.1", "", "mqtt://", "mqtt://:1883", "mqtt://user:pw@",
])
def test_bad_mqtt_urls_name_the_variable(url: str) -> None:
    with pytest.raises(SettingsError, match="TRANSIT_MQTT_URL"):
        MqttEndpoint.parse(url)
    if url:  # an empty value means "the default"
        with pytest.raises(SettingsError, match="TRANSIT_MQTT_URL"):
            Settings.from_env({"TRANSIT_MQTT_URL": url})


@pytest.mark.parametrize("url", ["mqtt://broker.example:99999", "mqtt://broker.example:65536",
                                 "mqtt://broker.example:abc", "mqtts://broker.example:-1",
                                 "mqtt://broker.example:0"])
def test_bad_mqtt_ports_name_the_variable(url: str) -> None:
    # Port 0 cannot be connected to; it must not silently become the default 1883.
    with pytest.raises(SettingsError, match="TRANSIT_MQTT_URL"):
        Settings.from_env({"TRANSIT_MQTT_URL": url})


def test_settings_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        Settings.from_env({"TRANSIT_MQTT_URL": "http://x"})


# -- HTTP bind ------------------------------------------------------------------------


@pytest.mark.parametrize("value,expected", [
    ("127.0.0.1:8080", ("127.0.0.1", 8080)),
    ("0.0.0.0:80", ("0.0.0.0", 80)),
    ("localhost:65535", ("localhost", 65535)),
    ("[::1]:8080", ("::1", 8080)),
    ("[::]:8080", ("::", 8080)),
    (":8080", ("127.0.0.1", 8080)),
])
def test_http_bind(value: str, expected: tuple[str, int]) -> None:
    assert Settings.from_env({"TRANSIT_HTTP": value}).http_bind == expected


@pytest.mark.parametrize("value", ["localhost", "127.0.0.1:", "127.0.0.1:http", "8080x",
                                   "127.0.0.1:80a", "127.0.0.1:-1", "127.0.0.1:65536",
                                   "127.0.0.1:99999"])
def test_bad_http_bind_names_the_variable(value: str) -> None:
    # A port above 65535 can never be bound: refuse it when the settings are read.
    with pytest.raises(SettingsError, match="TRANSIT_HTTP"):
        Settings.from_env({"TRANSIT_HTTP": value})


# -- topics ---------------------------------------------------------------------------


def test_contract_topic_names() -> None:
    t = Topics()
    assert t.prefix == "transit/v1"
    assert t.tap("SBY-0042-A") == "transit/v1/dev/SBY-0042-A/tap"
    assert t.pos("SBY-0042-A") == "transit/v1/dev/SBY-0042-A/pos"
    assert t.receipt("SBY-0042-A") == "transit/v1/dev/SBY-0042-A/receipt"
    assert t.status("SBY-0042-A") == "transit/v1/dev/SBY-0042-A/status"
    assert t.denylist == "transit/v1/net/denylist"


def test_topics_follow_the_configured_prefix() -> None:
    t = Topics(Settings.from_env({"TRANSIT_TOPIC_PREFIX": "city/v1/"}).topic_prefix)
    assert t.tap("D1") == "city/v1/dev/D1/tap"
    assert t.denylist == "city/v1/net/denylist"
    assert t.all_devices("tap") == "city/v1/dev/+/tap"


def test_wildcard_and_shared_subscriptions() -> None:
    t = Topics()
    assert t.all_devices("tap") == "transit/v1/dev/+/tap"
    assert t.all_devices("pos") == "transit/v1/dev/+/pos"
    assert t.all_devices("tap", "gateways") == "$share/gateways/transit/v1/dev/+/tap"
    assert t.all_devices("tap", "") == "transit/v1/dev/+/tap"


@pytest.mark.parametrize("topic,device", [
    ("transit/v1/dev/SBY-0042-A/tap", "SBY-0042-A"),
    ("transit/v1/dev/SBY-0042-A/pos", "SBY-0042-A"),
    ("transit/v1/dev/a.b_c-9/status", "a.b_c-9"),
    ("transit/v1/dev/" + "x" * 64 + "/tap", "x" * 64),
])
def test_device_of_our_topics(topic: str, device: str) -> None:
    assert Topics().device_of(topic) == device


@pytest.mark.parametrize("topic", [
    "other/v1/dev/SBY-0042-A/tap",       # another prefix
    "transit/v2/dev/SBY-0042-A/tap",     # another version
    "transit/v10/dev/SBY-0042-A/tap",    # a prefix that merely starts the same
    "xtransit/v1/dev/SBY-0042-A/tap",
    "transit/v1/net/denylist",           # not a device topic
    "transit/v1/dev/SBY-0042-A",         # no leaf
    "transit/v1/dev//tap",               # empty device id
    "transit/v1/dev/bad id/tap",         # space in the id
    "transit/v1/dev/+/tap",              # a wildcard, not a device
    "transit/v1/dev/#",
    "transit/v1/dev/" + "x" * 65 + "/tap",
    "$share/g/transit/v1/dev/SBY-0042-A/tap",
    "",
])
def test_device_of_rejects_foreign_topics(topic: str) -> None:
    assert Topics().device_of(topic) is None


def test_device_of_with_a_custom_prefix() -> None:
    t = Topics("city/v1")
    assert t.device_of("city/v1/dev/D1/tap") == "D1"
    assert t.device_of("transit/v1/dev/D1/tap") is None
    assert t.device_of(t.tap("D-9")) == "D-9"


# -- every other variable, typed and checked once --------------------------------------


def test_the_other_settings_have_working_defaults() -> None:
    s = Settings.from_env({})
    assert s.log_level == "INFO" and s.log_level_number == logging.INFO
    assert s.map_tiles == ""
    assert s.auth_failures == FailureLimit(20, 60)
    assert s.broker_wait_s == 10.0
    assert (s.tap_max_age_days, s.http_streams, s.streams_per_token) == (7, 128, 64)
    assert s.secret_key is None
    assert (s.mqtt_ca, s.mqtt_cert, s.mqtt_key) == (None, None, None)
    assert s.is_default("TRANSIT_DATABASE_URL")


def test_the_other_settings_are_read_typed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ca, cert, key = (tmp_path / name for name in ("ca.crt", "client.crt", "client.key"))
    for path in (ca, cert, key):
        path.write_text("-----BEGIN-----\n")
    s = Settings.from_env({
        "TRANSIT_LOG_LEVEL": "debug", "TRANSIT_MAP_TILES": "https://t.example/{z}/{x}/{y}.png",
        "TRANSIT_AUTH_FAILURES": "5/30", "TRANSIT_BROKER_WAIT_S": "2.5",
        "TRANSIT_SECRET_KEY": "AB" * 32, "TRANSIT_MQTT_URL": "mqtts://broker.example",
        "TRANSIT_MQTT_CA": str(ca), "TRANSIT_MQTT_CERT": str(cert),
        "TRANSIT_MQTT_KEY": str(key), "TRANSIT_DATABASE_URL": "sqlite:///elsewhere.db"})
    assert s.log_level == "DEBUG" and s.log_level_number == logging.DEBUG
    assert s.map_tiles == "https://t.example/{z}/{x}/{y}.png"
    assert s.auth_failures == FailureLimit(5, 30)
    assert s.broker_wait_s == 2.5
    assert s.secret_key == bytes.fromhex("ab" * 32)
    # The TLS files travel with the endpoint that the MQTT clients are made from.
    assert (s.mqtt.ca_file, s.mqtt.cert_file, s.mqtt.key_file) == (str(ca), str(cert), str(key))
    assert not s.is_default("TRANSIT_DATABASE_URL")
    assert Settings.from_env({"TRANSIT_AUTH_FAILURES": "7"}).auth_failures == FailureLimit(7, 60)
    assert Settings.from_env({"TRANSIT_LOG_LEVEL": "warn"}).log_level == "WARNING"
    assert Settings.from_env({"TRANSIT_BROKER_WAIT_S": "0"}).broker_wait_s == 0
    limits = Settings.from_env({"TRANSIT_TAP_MAX_AGE_DAYS": "2", "TRANSIT_HTTP_STREAMS": "9",
                                "TRANSIT_STREAMS_PER_TOKEN": "3"})
    assert (limits.tap_max_age_days, limits.http_streams, limits.streams_per_token) == (2, 9, 3)
    with pytest.raises(SettingsError, match="TRANSIT_TAP_MAX_AGE_DAYS"):
        Settings.from_env({"TRANSIT_TAP_MAX_AGE_DAYS": "0"})


def test_secrets_are_never_shown() -> None:
    s = Settings.from_env({"TRANSIT_SECRET_KEY": "cd" * 32,
                           "TRANSIT_MQTT_URL": "mqtt://gw:hunter2@broker.example"})
    assert "cd" * 32 not in repr(s)
    assert "hunter2" not in repr(s.mqtt)


@pytest.mark.parametrize("name,value", [
    ("TRANSIT_LOG_LEVEL", "LOUD"), ("TRANSIT_LOG_LEVEL", "10"),
    ("TRANSIT_AUTH_FAILURES", "many"), ("TRANSIT_AUTH_FAILURES", "0/60"),
    ("TRANSIT_AUTH_FAILURES", "20/0"), ("TRANSIT_AUTH_FAILURES", "20/x"),
    ("TRANSIT_BROKER_WAIT_S", "soon"), ("TRANSIT_BROKER_WAIT_S", "-1"),
    ("TRANSIT_BROKER_WAIT_S", "4000"),
    ("TRANSIT_SECRET_KEY", "zz" * 32), ("TRANSIT_SECRET_KEY", "ab" * 16),
    ("TRANSIT_MQTT_CA", "/no/such/ca.crt"), ("TRANSIT_MQTT_CERT", "/no/such/c.crt"),
    ("TRANSIT_MQTT_KEY", "/no/such/c.key"), ("TRANSIT_MQTT_PROTOCOL", "4"),
])
def test_bad_other_settings_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "rediss://cache.example:6380/1",
                                 "unix:///run/redis/redis.sock?db=2"])
def test_redis_urls(url: str) -> None:
    assert Settings.from_env({"TRANSIT_REDIS_URL": url}).redis_url == url


@pytest.mark.parametrize("url,shown", [("notredis://x", "notredis://"),
                                       ("http://:hunter2@cache:6379", "http://"),
                                       ("localhost:6379", "a URL without one"),
                                       ("cache", "a URL without one")])
def test_bad_redis_urls_name_the_variable_not_the_password(url: str, shown: str) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"TRANSIT_REDIS_URL": url})
    assert str(refused.value) == ("TRANSIT_REDIS_URL: the scheme must be redis://, rediss:// "
                                  f"or unix://, not {shown}")


def test_settings_travel_to_a_started_program_as_they_are(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN-----\n")
    given = {
        "TRANSIT_DATABASE_URL": "postgresql://u:p@db/transit", "TRANSIT_MQTT_URL":
        "mqtts://gw:pw@broker.example:8883", "TRANSIT_MQTT_PROTOCOL": "3.1.1",
        "TRANSIT_REDIS_URL": "unix:///run/redis.sock", "TRANSIT_HTTP": "0.0.0.0:9000",
        "TRANSIT_FARES": str(tmp_path / "fares.toml"), "TRANSIT_TOPIC_PREFIX": "city/v2",
        "TRANSIT_GATEWAY_ID": "gw-7", "TRANSIT_SHARE_GROUP": "pool", "TRANSIT_BATCH_SIZE": "50",
        "TRANSIT_BATCH_WAIT_MS": "3", "TRANSIT_RECEIVE_MAXIMUM": "100", "TRANSIT_MQTT_CA": str(ca),
        "TRANSIT_SECRET_KEY": "ab" * 32, "TRANSIT_LOG_LEVEL": "ERROR",
        "TRANSIT_MAP_TILES": "https://t.example/{z}/{x}/{y}.png",
        "TRANSIT_AUTH_FAILURES": "5/30", "TRANSIT_BROKER_WAIT_S": "2.5"}
    for environment in (given, {}, {"TRANSIT_DATABASE_URL": "", "TRANSIT_BROKER_WAIT_S": "0"}):
        settings = Settings.from_env(environment)
        again = Settings.from_env(settings.as_env())
        assert replace(again, given=frozenset()) == replace(settings, given=frozenset())
    # An empty variable means the default: it is not handed on as an empty one.
    assert "TRANSIT_FARES" not in Settings.from_env({}).as_env()
    assert Settings.from_env({"TRANSIT_DATABASE_URL": ""}).as_env()[
        "TRANSIT_DATABASE_URL"] == "sqlite:///transit.db"


def test_settings_errors_are_the_kernel_s_expected_failures() -> None:
    with pytest.raises(TransitError):
        Settings.from_env({"TRANSIT_HTTP": "nowhere"})


def test_only_the_settings_module_reads_the_environment() -> None:
    """Every program takes its settings from `Settings.from_env` (the demo may copy the
    environment for the programs it starts)."""
    root = Path(__file__).resolve().parents[3]
    readers = []
    for package in ("transit", "ledger", "tracking", "fare_gateway", "validator_agent",
                    "hardware_sim"):
        for path in sorted((root / package).rglob("*.py")):
            text = path.read_text()
            for pattern in ("os.environ", "getenv("):
                if pattern in text:
                    readers.append((str(path.relative_to(root)), pattern))
    assert sorted(set(readers)) == [("hardware_sim/demo.py", "os.environ"),
                                    ("transit/settings.py", "os.environ")], readers
