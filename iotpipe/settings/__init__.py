"""Validated, frozen settings from ``IOTPIPE_*`` environment variables.

Each component has its own model and prefix (``IOTPIPE_MQTT_``,
``IOTPIPE_KAFKA_``, ``IOTPIPE_INFLUX_``, ``IOTPIPE_VALIDATION_``, and plain
``IOTPIPE_`` for the core). An optional dotenv-style config file supplies the
same variables; the environment wins over the file. Any problem, including an
unknown ``IOTPIPE_`` variable (usually a typo), becomes a ``ConfigError``
naming the variable, so a bad deployment fails at start-up, not at 3 a.m.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

from dotenv import dotenv_values
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsError

from iotpipe.credentials import (
    InfluxAccess,
    LocalCredentials,
    Role,
    load_local_credentials,
    local_ca_file,
    mqtt_account,
)
from iotpipe.errors import ConfigError
from iotpipe.settings.apps import DashboardSettings, DemoSettings, SimulatorSettings
from iotpipe.settings.base import CONFIG_FILE_VAR, ENV_PREFIX, CoreSettings
from iotpipe.settings.servers import InfluxSettings, KafkaSettings, MqttSettings
from iotpipe.settings.stages import (
    ALERT_TARGETS,
    AlertSettings,
    FlowSettings,
    IngestSettings,
    SinkSettings,
    ValidationSettings,
    parse_sliding,
)

__all__ = [
    "ALERT_TARGETS",
    "CONFIG_FILE_VAR",
    "ENV_PREFIX",
    "AlertSettings",
    "CoreSettings",
    "DashboardSettings",
    "DemoSettings",
    "FlowSettings",
    "InfluxSettings",
    "IngestSettings",
    "KafkaSettings",
    "MqttSettings",
    "Settings",
    "SimulatorSettings",
    "SinkSettings",
    "ValidationSettings",
    "known_variables",
    "load_settings",
    "parse_sliding",
    "render_sample_env",
    "role_account",
    "with_local_credentials",
]


class Settings(BaseModel):
    """Every component's settings, validated together."""

    model_config = ConfigDict(frozen=True)

    core: CoreSettings
    mqtt: MqttSettings
    kafka: KafkaSettings
    influx: InfluxSettings
    validation: ValidationSettings
    ingest: IngestSettings
    sink: SinkSettings
    alert: AlertSettings
    flow: FlowSettings
    sim: SimulatorSettings
    dashboard: DashboardSettings
    demo: DemoSettings


_COMPONENTS: dict[str, type[BaseSettings]] = {
    "core": CoreSettings,
    "mqtt": MqttSettings,
    "kafka": KafkaSettings,
    "influx": InfluxSettings,
    "validation": ValidationSettings,
    "ingest": IngestSettings,
    "sink": SinkSettings,
    "alert": AlertSettings,
    "flow": FlowSettings,
    "sim": SimulatorSettings,
    "dashboard": DashboardSettings,
    "demo": DemoSettings,
}


def known_variables() -> dict[str, tuple[type[BaseSettings], str]]:
    """Every settable ``IOTPIPE_*`` variable, mapped to (model, field)."""
    names: dict[str, tuple[type[BaseSettings], str]] = {CONFIG_FILE_VAR: (CoreSettings, "")}
    for model in _COMPONENTS.values():
        prefix = model.model_config.get("env_prefix", "")
        for field in model.model_fields:
            names[f"{prefix}{field}".upper()] = (model, field)
    return names


def _reject_unknown(source: Mapping[str, object], where: str) -> None:
    known = known_variables()
    for name in source:
        upper = name.upper()
        if upper.startswith(ENV_PREFIX) and upper not in known:
            hint = difflib.get_close_matches(upper, list(known), n=1)
            suggestion = f" (did you mean {hint[0]}?)" if hint else ""
            raise ConfigError(f"{name}: unknown setting in {where}{suggestion}")


def load_settings(
    config_file: Path | str | None = None, role: Role = "admin", influx: InfluxAccess | None = None
) -> Settings:
    """Build the settings from the environment and an optional dotenv file.

    ``config_file`` defaults to ``$IOTPIPE_CONFIG_FILE``. Credentials not set
    there come from the local stack's generated ones, as the account of
    ``role``. Raises ``ConfigError`` naming the first offending variable.
    """
    _reject_unknown(os.environ, "the environment")
    path = config_file or os.environ.get(CONFIG_FILE_VAR)
    env_file: Path | None = None
    if path:
        env_file = Path(path)
        if not env_file.is_file():
            raise ConfigError(f"{CONFIG_FILE_VAR}: config file {env_file} does not exist")
        _reject_unknown(dotenv_values(env_file), str(env_file))
    built = {key: _build(model, env_file) for key, model in _COMPONENTS.items()}
    return with_local_credentials(Settings.model_validate(built), role, influx)


def role_account(mqtt: MqttSettings, local: LocalCredentials, role: Role) -> MqttSettings:
    """``mqtt`` connecting as the generated account of ``role``."""
    account = {"username": mqtt_account(role), "password": local.mqtt_password(role)}
    return mqtt.model_copy(update=account)


def kafka_account(kafka: KafkaSettings, local: LocalCredentials, role: Role) -> KafkaSettings:
    """``kafka`` authenticating (SCRAM-SHA-512) as the generated account of ``role``."""
    account = {
        "sasl_mechanism": kafka.sasl_mechanism or "SCRAM-SHA-512",
        "sasl_username": mqtt_account(role),
        "sasl_password": local.kafka_password(role),
    }
    return kafka.model_copy(update=account)


def with_local_credentials(
    settings: Settings, role: Role, influx: InfluxAccess | None = None
) -> Settings:
    """Fill in the MQTT account of ``role`` and the generated tokens and keys, if unset.

    The InfluxDB token is the stage's own: write-only for the flow (role
    ``alerts``), read-only where ``influx="read"`` (the dashboard), the
    operator's for the rest (the stack, tests, demo, benchmarks).
    """
    local = load_local_credentials(settings.core.state_dir)
    if local is None:
        return settings
    update: dict[str, BaseSettings] = {}
    mqtt = settings.mqtt
    if mqtt.username is None:
        mqtt = role_account(mqtt, local, role)
    ca_file = local_ca_file(settings.core.state_dir)
    if mqtt.tls and mqtt.tls_ca_file is None and ca_file.exists():
        mqtt = mqtt.model_copy(update={"tls_ca_file": ca_file})
    if mqtt is not settings.mqtt:
        update["mqtt"] = mqtt
    kafka = settings.kafka
    if kafka.security_protocol == "SASL_SSL" and kafka.sasl_username is None and local.kafka:
        kafka = kafka_account(kafka, local, role)
        if kafka.ssl_ca_location is None and ca_file.exists():
            kafka = kafka.model_copy(update={"ssl_ca_location": ca_file})
        update["kafka"] = kafka
    if not settings.influx.token.get_secret_value():
        access = influx or ("write" if role == "alerts" else "operator")
        token = SecretStr(local.influx(access))
        update["influx"] = settings.influx.model_copy(update={"token": token})
    if settings.alert.signing_key is None and local.alert_key:
        key = SecretStr(local.alert_key)
        update["alert"] = settings.alert.model_copy(update={"signing_key": key})
    if settings.dashboard.token is None and local.dashboard_token:
        token = SecretStr(local.dashboard_token)
        update["dashboard"] = settings.dashboard.model_copy(update={"token": token})
    return settings.model_copy(update=update)


def _build(model: type[BaseSettings], env_file: Path | None) -> BaseSettings:
    prefix = str(model.model_config.get("env_prefix", "")).upper()
    try:
        return model(_env_file=env_file)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "?"
        raise ConfigError(f"{prefix}{field.upper()}: {err['msg']}") from exc
    except SettingsError as exc:
        # pydantic-settings names the field only in the text: 'field "options"'.
        match = re.search(r'field "([a-z_]+)"', str(exc))
        field = match.group(1).upper() if match else "?"
        raise ConfigError(f"{prefix}{field}: not valid JSON") from exc


def render_sample_env() -> str:
    """The commented sample config (``deploy/iotpipe.env.sample``), from the models."""
    lines = [
        "# Every iotpipe setting, with its default. Copy to iotpipe.env, uncomment what you",
        "# change, and point IOTPIPE_CONFIG_FILE (or `iotpipe --config`) at it. Variables in",
        "# the environment win over this file. Regenerate: iotpipe config sample > this file.",
        "",
        "# Optional dotenv file with more IOTPIPE_* settings (this file's format).",
        f"# {CONFIG_FILE_VAR}=",
    ]
    for key, model in _COMPONENTS.items():
        doc = (model.__doc__ or "").strip().splitlines()[0]
        lines += ["", f"# --- {key}: {doc}"]
        prefix = str(model.model_config.get("env_prefix", "")).upper()
        for name, field in model.model_fields.items():
            if field.description:
                lines.append(f"# {field.description}")
            default = field.get_default(call_default_factory=True)
            lines.append(f"# {prefix}{name.upper()}={_env_value(default)}")
    return "\n".join(lines) + "\n"


def _env_value(value: object) -> str:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)
