"""Credentials the local stack generates on first start, and who uses which.

No password or token ships in the repository: the first `iotpipe stack up`
writes random ones to ``<state_dir>/credentials.json`` (mode 0600), renders
Mosquitto's password file from them and onboards InfluxDB with them. Every
``iotpipe`` command then picks the account of its role (the ingester reads
``sensors/#``, the flow's alert emitter writes ``alerts/#``, the simulator
writes as a fleet of devices) unless ``IOTPIPE_MQTT_USERNAME`` or
``IOTPIPE_INFLUX_TOKEN`` name credentials explicitly, as a deployment does.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

from pydantic import SecretStr

from iotpipe.errors import ConfigError

CREDENTIALS_FILE = "credentials.json"
Role = Literal["admin", "ingest", "alerts", "fleet"]
ROLES: tuple[Role, ...] = ("admin", "ingest", "alerts", "fleet")
# What a command may do in InfluxDB: everything, write points only (the flow's
# sink), or read only (the dashboard).
InfluxAccess = Literal["operator", "write", "read"]
ACCOUNT_PREFIX = "iotpipe-"  # device ids never start with it (see mqtt_account)


def mqtt_account(role: Role) -> str:
    """The MQTT username of a project role, e.g. ``iotpipe-ingest``."""
    return f"{ACCOUNT_PREFIX}{role}"


def _secret() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class LocalCredentials:
    """Everything ``credentials.json`` holds; ``repr`` never shows a secret."""

    mqtt: dict[str, str] = field(repr=False)  # role -> password
    influx_token: str = field(repr=False)
    influx_password: str = field(repr=False)
    # Added after the first release of this file: "" in an older one until ensured.
    alert_key: str = field(repr=False, default="")  # signs alerts
    dashboard_token: str = field(repr=False, default="")
    # SCRAM passwords of the same accounts on a SASL_SSL Kafka, and the
    # controller listener's own (PLAIN: KRaft keeps SCRAM users in the very
    # metadata a controller must reach first).
    kafka: dict[str, str] = field(repr=False, default_factory=dict)
    kafka_controller: str = field(repr=False, default="")
    # Made by InfluxDB itself once it runs (ops/stack/influxdb.py): "" until then.
    influx_write_token: str = field(repr=False, default="")  # the flow's sink
    influx_read_token: str = field(repr=False, default="")  # the dashboard

    def kafka_password(self, role: Role) -> SecretStr:
        return SecretStr(self.kafka[role])

    def influx(self, access: InfluxAccess) -> str:
        """The token for ``access``; the operator's until the stage tokens exist."""
        scoped = {"write": self.influx_write_token, "read": self.influx_read_token}
        return scoped.get(access) or self.influx_token

    def mqtt_password(self, role: Role) -> SecretStr:
        return SecretStr(self.mqtt[role])


def credentials_path(state_dir: Path) -> Path:
    return state_dir.expanduser() / CREDENTIALS_FILE


def local_ca_file(state_dir: Path) -> Path:
    """The local stack's CA certificate, which clients of its TLS listeners pin."""
    return state_dir.expanduser() / "tls" / "ca.crt"


def load_local_credentials(state_dir: Path) -> LocalCredentials | None:
    """The stack's generated credentials, or ``None`` before its first start."""
    path = credentials_path(state_dir)
    try:
        raw = json.loads(path.read_text())
        return LocalCredentials(
            mqtt={role: str(raw["mqtt"][role]) for role in ROLES},
            influx_token=str(raw["influx_token"]),
            influx_password=str(raw["influx_password"]),
            alert_key=str(raw.get("alert_key", "")),
            dashboard_token=str(raw.get("dashboard_token", "")),
            kafka={role: str(raw["kafka"][role]) for role in ROLES} if "kafka" in raw else {},
            kafka_controller=str(raw.get("kafka_controller", "")),
            influx_write_token=str(raw.get("influx_write_token", "")),
            influx_read_token=str(raw.get("influx_read_token", "")),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{path}: unreadable credentials ({exc}); remove it to regenerate"
        ) from exc


def ensure_local_credentials(state_dir: Path) -> LocalCredentials:
    """Load, or generate and store (0600) on first use; a secret added since is generated."""
    current = load_local_credentials(state_dir)
    if current is not None and _complete(current):
        return current
    if current is None:
        current = LocalCredentials(
            mqtt={role: _secret() for role in ROLES},
            influx_token=_secret(),
            influx_password=_secret(),
        )
    made = replace(
        current,
        alert_key=current.alert_key or _secret(),
        dashboard_token=current.dashboard_token or _secret(),
        kafka=current.kafka or {role: _secret() for role in ROLES},
        kafka_controller=current.kafka_controller or _secret(),
    )
    _store(state_dir, made)
    return made


def _complete(current: LocalCredentials) -> bool:
    """Whether every secret a newer release added is there."""
    return all(
        (current.alert_key, current.dashboard_token, current.kafka, current.kafka_controller)
    )


def store_influx_stage_tokens(state_dir: Path, write: str, read: str) -> LocalCredentials:
    """Keep the stage tokens InfluxDB made for the sink and the dashboard."""
    made = replace(
        ensure_local_credentials(state_dir), influx_write_token=write, influx_read_token=read
    )
    _store(state_dir, made)
    return made


def _store(state_dir: Path, credentials: LocalCredentials) -> None:
    write_private(credentials_path(state_dir), json.dumps(asdict(credentials), indent=2) + "\n")


def write_private(path: Path, text: str) -> None:
    """Write atomically, readable by the owner only (mode 0600 from the start)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
