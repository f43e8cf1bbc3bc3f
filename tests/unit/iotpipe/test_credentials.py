"""Generated credentials: private, stable, and each command's role gets its own account."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from iotpipe.connectors.mqtt import session_client_id
from iotpipe.credentials import (
    ROLES,
    credentials_path,
    ensure_local_credentials,
    load_local_credentials,
    store_influx_stage_tokens,
)
from iotpipe.errors import ConfigError
from iotpipe.settings import MqttSettings, load_settings


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("IOTPIPE_MQTT_USERNAME", "IOTPIPE_MQTT_PASSWORD", "IOTPIPE_INFLUX_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("IOTPIPE_ALERT_SIGNING_KEY", raising=False)
    monkeypatch.setenv("IOTPIPE_STATE_DIR", str(tmp_path))
    return tmp_path


def test_generated_once_private_and_distinct(state: Path) -> None:
    assert load_local_credentials(state) is None
    made = ensure_local_credentials(state)
    path = credentials_path(state)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_local_credentials(state) == made  # stable across starts
    secrets = [*made.mqtt.values(), made.influx_token, made.influx_password, made.alert_key]
    assert len(set(secrets)) == len(secrets) == len(ROLES) + 3
    assert all(len(s) >= 40 for s in secrets)
    assert made.influx_token not in repr(made)


def test_a_file_from_before_the_alert_key_gains_one_and_keeps_the_rest(state: Path) -> None:
    made = ensure_local_credentials(state)
    raw = json.loads(credentials_path(state).read_text())
    del raw["alert_key"]
    credentials_path(state).write_text(json.dumps(raw))
    again = ensure_local_credentials(state)
    assert again.alert_key and again.mqtt == made.mqtt
    assert again.influx_token == made.influx_token


def test_a_damaged_file_is_a_clear_error(state: Path) -> None:
    credentials_path(state).write_text("{not json")
    with pytest.raises(ConfigError, match="remove it to regenerate"):
        load_local_credentials(state)


def test_each_role_connects_with_its_own_account(state: Path) -> None:
    made = ensure_local_credentials(state)
    for role in ROLES:
        s = load_settings(role=role)
        assert s.mqtt.username == f"iotpipe-{role}"
        assert s.mqtt.password is not None
        assert s.mqtt.password.get_secret_value() == made.mqtt[role]
        assert s.influx.token.get_secret_value() == made.influx_token
        assert s.alert.signing_key is not None
        assert s.alert.signing_key.get_secret_value() == made.alert_key


def test_explicit_credentials_win(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ensure_local_credentials(state)
    monkeypatch.setenv("IOTPIPE_MQTT_USERNAME", "plant-7")
    monkeypatch.setenv("IOTPIPE_MQTT_PASSWORD", "pw")
    monkeypatch.setenv("IOTPIPE_INFLUX_TOKEN", "tok")
    s = load_settings(role="ingest")
    assert s.mqtt.username == "plant-7"
    assert s.influx.token.get_secret_value() == "tok"


def test_without_a_stack_nothing_is_invented(state: Path) -> None:
    s = load_settings(role="ingest")
    assert s.mqtt.username is None and not s.influx.token.get_secret_value()


def test_a_session_client_id_is_stable_and_secret() -> None:
    def mq(password: str | None) -> MqttSettings:
        return MqttSettings(password=SecretStr(password) if password else None)

    assert session_client_id(mq(None), "ingest-a") == "iotpipe-ingest-a"
    keyed = session_client_id(mq("p1"), "ingest-a")
    assert keyed.startswith("iotpipe-ingest-a-") and keyed == session_client_id(
        mq("p1"), "ingest-a"
    )
    assert keyed != session_client_id(mq("p2"), "ingest-a")
    assert keyed != session_client_id(mq("p1"), "ingest-b")


def test_stage_tokens_go_to_their_stage_and_survive_later_secrets(state: Path) -> None:
    made = ensure_local_credentials(state)
    # Before InfluxDB made them, every stage has the operator's token.
    assert load_settings(role="alerts").influx.token.get_secret_value() == made.influx_token
    store_influx_stage_tokens(state, "w-token", "r-token")
    assert load_settings(role="alerts").influx.token.get_secret_value() == "w-token"
    assert load_settings(influx="read").influx.token.get_secret_value() == "r-token"
    assert load_settings(role="ingest").influx.token.get_secret_value() == made.influx_token
    # A secret added later (here: the dashboard token) keeps the stage tokens.
    raw = json.loads(credentials_path(state).read_text())
    del raw["dashboard_token"]
    credentials_path(state).write_text(json.dumps(raw))
    again = ensure_local_credentials(state)
    assert (again.influx_write_token, again.influx_read_token) == ("w-token", "r-token")
    assert "w-token" not in repr(again)
    assert stat.S_IMODE(credentials_path(state).stat().st_mode) == 0o600
