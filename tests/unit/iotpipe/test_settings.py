"""Settings: defaults, overrides, config file, and errors that name the variable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from iotpipe.errors import ConfigError
from iotpipe.settings import known_variables, load_settings, render_sample_env

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("IOTPIPE_"):
            monkeypatch.delenv(name)


def test_defaults_point_at_the_local_stack() -> None:
    s = load_settings()
    assert s.mqtt.host == "127.0.0.1" and s.mqtt.port == 1883
    assert s.kafka.client_config() == {
        "bootstrap.servers": "127.0.0.1:9092",
        "security.protocol": "PLAINTEXT",
    }
    assert s.influx.url == "http://127.0.0.1:8086"
    assert s.kafka.partitions == 4


def test_environment_overrides_and_passthrough(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOTPIPE_KAFKA_PARTITIONS", "12")
    monkeypatch.setenv("IOTPIPE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("IOTPIPE_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("IOTPIPE_KAFKA_SASL_USERNAME", "svc")
    monkeypatch.setenv("IOTPIPE_KAFKA_SASL_PASSWORD", "s3cret")
    monkeypatch.setenv("IOTPIPE_KAFKA_OPTIONS", '{"linger.ms": 20, "compression.type": "lz4"}')
    monkeypatch.setenv("IOTPIPE_MQTT_URL", "mqtts://broker.example:8883")
    s = load_settings()
    conf = s.kafka.client_config()
    assert s.kafka.partitions == 12
    assert conf["sasl.password"] == "s3cret" and conf["linger.ms"] == 20
    assert conf["compression.type"] == "lz4" and conf["security.protocol"] == "SASL_SSL"
    assert s.mqtt.tls and s.mqtt.port == 8883


def test_secrets_never_print(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOTPIPE_INFLUX_TOKEN", "tok-very-secret")
    monkeypatch.setenv("IOTPIPE_MQTT_PASSWORD", "mqtt-very-secret")
    s = load_settings()
    shown = s.model_dump_json() + repr(s) + str(s)
    assert "very-secret" not in shown
    assert s.influx.token.get_secret_value() == "tok-very-secret"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("IOTPIPE_KAFKA_PARTITIONS", "many"),
        ("IOTPIPE_KAFKA_PARTITIONS", "0"),
        ("IOTPIPE_MQTT_URL", "http://not-mqtt"),
        ("IOTPIPE_MQTT_URL", "mqtt://host:notaport"),
        ("IOTPIPE_MQTT_QOS", "3"),
        ("IOTPIPE_INFLUX_URL", "influx:8086"),
        ("IOTPIPE_KAFKA_OPTIONS", "{not json"),
        ("IOTPIPE_KAFKA_SECURITY_PROTOCOL", "TLS"),
        ("IOTPIPE_KAFKA_TOPIC_PREFIX", "bad prefix/"),
        ("IOTPIPE_LOG_LEVEL", "LOUD"),
        ("IOTPIPE_VALIDATION_MAX_PAYLOAD_BYTES", "1"),
    ],
)
def test_bad_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=f"^{name}:"):
        load_settings()


def test_unknown_variable_is_a_typo_with_a_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOTPIPE_KAFKA_PARTITONS", "3")
    with pytest.raises(ConfigError, match="did you mean IOTPIPE_KAFKA_PARTITIONS"):
        load_settings()


def test_config_file_and_environment_precedence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "iotpipe.env"
    cfg.write_text("IOTPIPE_KAFKA_PARTITIONS=6\nIOTPIPE_INFLUX_BUCKET=plant\n")
    s = load_settings(cfg)
    assert s.kafka.partitions == 6 and s.influx.bucket == "plant"
    monkeypatch.setenv("IOTPIPE_KAFKA_PARTITIONS", "8")
    monkeypatch.setenv("IOTPIPE_CONFIG_FILE", str(cfg))
    s = load_settings()
    assert s.kafka.partitions == 8 and s.influx.bucket == "plant"


def test_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="IOTPIPE_CONFIG_FILE"):
        load_settings(tmp_path / "missing.env")
    cfg = tmp_path / "bad.env"
    cfg.write_text("IOTPIPE_INFLUX_BUKET=x\n")
    with pytest.raises(ConfigError, match=r"IOTPIPE_INFLUX_BUKET.*did you mean"):
        load_settings(cfg)
    cfg.write_text("IOTPIPE_KAFKA_REPLICATION_FACTOR=-1\n")
    with pytest.raises(ConfigError, match=r"^IOTPIPE_KAFKA_REPLICATION_FACTOR:"):
        load_settings(cfg)


def test_sample_env_file_lists_every_setting_and_loads(tmp_path: Path) -> None:
    sample = (REPO / "deploy" / "iotpipe.env.sample").read_text()
    assert sample == render_sample_env(), (
        "regenerate: iotpipe config sample > deploy/iotpipe.env.sample"
    )
    listed = re.findall(r"^# (IOTPIPE_[A-Z0-9_]+)=(.*)$", sample, re.M)
    assert {name for name, _ in listed} == set(known_variables())
    # Uncommented, the sample's values are the defaults and must load to them.
    active = tmp_path / "sample.env"
    active.write_text("".join(f"{name}={value}\n" for name, value in listed if value))
    assert load_settings(active) == load_settings()
