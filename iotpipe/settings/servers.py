"""Where the servers are and how to reach them: Mosquitto, Kafka, InfluxDB."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings

from iotpipe.settings.base import ENV_PREFIX, _component


class MqttSettings(BaseSettings):
    """Connection to the MQTT broker the devices publish to."""

    model_config = _component(f"{ENV_PREFIX}MQTT_")

    url: str = Field("mqtt://127.0.0.1:1883", description="mqtt://host:port or mqtts://")
    username: str | None = Field(
        None, description="Empty = the local stack's generated account for the command's role."
    )
    password: SecretStr | None = None
    broker_auth: bool = Field(
        True,
        description=(
            "Local stack: Mosquitto refuses anonymous clients and applies the accounts and"
            " ACL (README, Security); false opens it to anonymous clients on loopback."
        ),
    )
    broker_tls_port: int = Field(
        8883,
        ge=0,
        le=65535,
        description=(
            "Local stack: Mosquitto's TLS listener, its certificate from a CA the stack"
            " generates on first start (tls/ca.crt in the state dir); 0 = none."
        ),
    )
    broker_cert_port: int = Field(
        8884,
        ge=0,
        le=65535,
        description=(
            "Local stack: a TLS listener where devices log in with a client certificate"
            " from that CA (iotpipe devices add ID --cert DIR) instead of a password; 0 = none."
        ),
    )
    protocol: Literal["5", "3.1.1"] = "5"
    tls_ca_file: Path | None = Field(
        None, description="Empty with mqtts:// = the local stack's CA, if it has one."
    )
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_insecure: bool = Field(False, description="Skip server certificate hostname check.")
    client_id_prefix: str = "iotpipe"
    keepalive_s: int = Field(30, ge=5, le=3600)
    qos: int = Field(1, ge=0, le=2)
    shared_group: str = Field(
        "",
        pattern=r"^[A-Za-z0-9_.-]{0,64}$",
        description=(
            "Set a group name to run several ingesters on one shared subscription; empty"
            " (default) = one ingester on a plain subscription, which Mosquitto 2.0.11"
            " keeps across broker restarts (shared ones it does not)."
        ),
    )
    sites: str = Field(
        "",
        pattern=r"^[A-Za-z0-9_.:,-]{0,1000}$",
        description=(
            "Comma-separated sites this ingester subscribes to (sensors/<site>/#);"
            " empty = every site (sensors/#)."
        ),
    )

    def site_list(self) -> tuple[str, ...]:
        return tuple(s for s in self.sites.split(",") if s)

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in {"mqtt", "mqtts"} or not parts.hostname:
            raise ValueError("must look like mqtt://host:port or mqtts://host:port")
        try:
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as exc:
            raise ValueError(f"bad port: {exc}") from exc
        return url

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts"


class KafkaSettings(BaseSettings):
    """Kafka connection, security pass-through and topic layout."""

    model_config = _component(f"{ENV_PREFIX}KAFKA_")

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT",
        description=(
            "SASL_SSL: the local stack's Kafka takes SCRAM-SHA-512 over TLS with ACLs, and"
            " each command logs in with its role's generated account and the stack's CA."
        ),
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: Path | None = None
    options: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="Extra librdkafka options as a JSON object, passed to every client.",
    )
    topic_prefix: str = Field("", pattern=r"^[A-Za-z0-9._-]{0,100}$")
    partitions: int = Field(4, ge=1, le=10_000)
    replication_factor: int = Field(1, ge=1, le=15)

    def client_config(self) -> dict[str, Any]:
        """librdkafka settings shared by producers, consumers and admin clients."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password:
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        if self.ssl_ca_location:
            conf["ssl.ca.location"] = str(self.ssl_ca_location)
        conf.update(self.options)
        return conf


class InfluxSettings(BaseSettings):
    """InfluxDB v2 HTTP API endpoint and credentials."""

    model_config = _component(f"{ENV_PREFIX}INFLUX_")

    url: str = "http://127.0.0.1:8086"
    token: SecretStr = Field(
        SecretStr(""),
        description=(
            "API token; empty = the local stack's for the command: write-only for the"
            " flow, read-only for the dashboard, the operator's otherwise."
        ),
    )
    org: str = "iotpipe"
    bucket: str = "iot"
    timeout_ms: int = Field(10_000, ge=100, le=600_000)

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError("must look like http://host:port")
        return url
