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
from typing import Any, Literal
from urllib.parse import urlsplit

from dotenv import dotenv_values
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from iotpipe.durations import parse_durations
from iotpipe.errors import ConfigError

ENV_PREFIX = "IOTPIPE_"
CONFIG_FILE_VAR = "IOTPIPE_CONFIG_FILE"


def _component(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, frozen=True, extra="ignore", case_sensitive=False)


class CoreSettings(BaseSettings):
    """Where state lives and which sensor catalogue to use."""

    model_config = _component(ENV_PREFIX)

    state_dir: Path = Field(
        Path(".iotpipe"), description="Data, logs, pid files and downloaded services."
    )
    sensors_file: Path | None = Field(
        None, description="Sensor-type catalogue (YAML); default: the packaged one."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class MqttSettings(BaseSettings):
    """Connection to the MQTT broker the devices publish to."""

    model_config = _component(f"{ENV_PREFIX}MQTT_")

    url: str = Field("mqtt://127.0.0.1:1883", description="mqtt://host:port or mqtts://")
    username: str | None = None
    password: SecretStr | None = None
    protocol: Literal["5", "3.1.1"] = "5"
    tls_ca_file: Path | None = None
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
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
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
    token: SecretStr = SecretStr("iotpipe-dev-token")
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


class ValidationSettings(BaseSettings):
    """Bounds applied to every incoming reading at the edge."""

    model_config = _component(f"{ENV_PREFIX}VALIDATION_")

    max_past_s: int = Field(30 * 86_400, ge=1, description="Oldest event time accepted.")
    max_future_s: int = Field(300, ge=0, description="Clock skew tolerated into the future.")
    max_payload_bytes: int = Field(256 * 1024, ge=64)
    max_batch_items: int = Field(10_000, ge=1)


class IngestSettings(BaseSettings):
    """The MQTT -> Kafka ingester: session, flow control, producer tuning."""

    model_config = _component(f"{ENV_PREFIX}INGEST_")

    instance: str = Field(
        "1",
        pattern=r"^[A-Za-z0-9_.-]{1,32}$",
        description="Names this ingester's persistent MQTT session; unique per process.",
    )
    max_inflight: int = Field(
        10_000,
        ge=1,
        le=65_535,
        description="MQTT v5 Receive Maximum: unacknowledged messages held at once.",
    )
    session_expiry_s: int = Field(
        86_400, ge=0, description="How long the broker keeps our session while we are away."
    )
    linger_ms: int = Field(10, ge=0, le=1000, description="Kafka producer batching delay.")
    batch_size: int = Field(1_000_000, ge=1024, description="Kafka producer batch bytes.")
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "lz4"
    queue_max_messages: int = Field(
        1_000_000, ge=1000, description="Readings buffered in the producer while Kafka is slow."
    )
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(9108, ge=0, le=65_535, description="Prometheus endpoint; 0 = off.")
    log_interval_s: float = Field(10.0, ge=0, description="One-line summary period; 0 = off.")
    reconnect_max_s: int = Field(30, ge=1, description="Longest wait between MQTT reconnects.")
    poison_after: int = Field(
        3,
        ge=1,
        description="Ingester processes one redelivered message may kill (dying while handling"
        " it) before it is dead-lettered as poison.",
    )
    dead_letter_max_bytes: int = Field(
        512 * 1024,
        ge=4096,
        description="Largest dead-letter record; a bigger payload is kept truncated, with its"
        " size and SHA-256 (keep below Kafka's message.max.bytes).",
    )


ALERT_TARGETS = ("mqtt", "webhook", "log")


class SinkSettings(BaseSettings):
    """The InfluxDB sink: batching, compression, retries, dead-lettering."""

    model_config = _component(f"{ENV_PREFIX}SINK_")

    influx_api: Literal["v2", "v1"] = Field(
        "v2", description="v2: /api/v2/write (org + bucket); v1: /write?db=<bucket> (1.x servers)."
    )
    batch_size: int = Field(5000, ge=1, le=100_000, description="Most points per write request.")
    gzip: bool = Field(True, description="Compress write requests.")
    gzip_level: int = Field(1, ge=1, le=9, description="1 is fastest; 9 saves little more.")
    retry_max_attempts: int = Field(
        0,
        ge=0,
        description=(
            "Attempts per batch on network errors, 5xx and 429 before it goes to dlq.sink;"
            " 0 = retry forever (hold the flow back until InfluxDB is back)."
        ),
    )
    retry_initial_s: float = Field(0.5, gt=0, description="First backoff; doubles, with jitter.")
    retry_max_s: float = Field(30.0, gt=0, description="Longest single backoff (and Retry-After).")
    dlq_timeout_s: float = Field(
        60.0,
        gt=0,
        description="At shutdown, how long to wait for Kafka to confirm dead letters (while"
        " running they wait through any outage).",
    )


class AlertSettings(BaseSettings):
    """Alert emitters: routing by severity, webhook, de-duplication, rate limits."""

    model_config = _component(f"{ENV_PREFIX}ALERT_")

    route_info: str = Field(
        "", description="Targets for info alerts besides Kafka (always): mqtt,webhook,log."
    )
    route_warning: str = Field("mqtt,log", description="Targets for warning alerts.")
    route_critical: str = Field("mqtt,webhook,log", description="Targets for critical alerts.")
    mqtt_enabled: bool = Field(True, description="Publish to alerts/<site>/<type>/<device>.")
    log_enabled: bool = Field(True, description="One structured log line per alert.")
    webhook_url: str = Field("", description="JSON POST target; empty = webhook off.")
    webhook_secret: SecretStr | None = Field(
        None, description="If set, sign bodies: X-Iotpipe-Signature: sha256=<hmac hex>."
    )
    webhook_timeout_s: float = Field(5.0, gt=0)
    webhook_max_attempts: int = Field(
        4, ge=1, description="Tries per alert before it goes to dlq.sink."
    )
    webhook_retry_initial_s: float = Field(
        0.5, gt=0, description="First pause between tries; doubles, with jitter."
    )
    webhook_retry_max_s: float = Field(
        30.0, gt=0, description="Longest pause between tries (and Retry-After)."
    )
    publish_timeout_s: float = Field(30.0, gt=0, description="Wait for MQTT PUBACK / Kafka ack.")
    dedupe_horizon_s: int = Field(
        3600, ge=0, description="The same alert_id and state are emitted once within this."
    )
    dedupe_seed_from_kafka: bool = Field(
        True, description="At start, remember alerts already on the alerts topic (replays)."
    )
    rate_limit_per_minute: float = Field(
        6.0, ge=0, description="Notifications per device per minute (after the burst); 0 = off."
    )
    rate_limit_burst: int = Field(10, ge=1, description="Notifications a device may send at once.")

    @field_validator("route_info", "route_warning", "route_critical")
    @classmethod
    def _check_route(cls, route: str) -> str:
        names = [n.strip() for n in route.split(",") if n.strip()]
        unknown = [n for n in names if n not in ALERT_TARGETS and n != "kafka"]
        if unknown:
            raise ValueError(f"unknown target(s) {unknown}; choose from {list(ALERT_TARGETS)}")
        return ",".join(n for n in names if n != "kafka")

    @field_validator("webhook_url")
    @classmethod
    def _check_webhook(cls, url: str) -> str:
        if url and urlsplit(url).scheme not in {"http", "https"}:
            raise ValueError("must look like http(s)://host/path, or be empty")
        return url

    def route(self, severity: str) -> frozenset[str]:
        """Enabled notification targets for a severity (Kafka is always on)."""
        route = {
            "info": self.route_info,
            "warning": self.route_warning,
            "critical": self.route_critical,
        }.get(severity, self.route_critical)
        enabled = {"mqtt": self.mqtt_enabled, "webhook": bool(self.webhook_url)}
        enabled["log"] = self.log_enabled
        return frozenset(t for t in route.split(",") if t and enabled[t])


class FlowSettings(BaseSettings):
    """The Bytewax dataflows: windows, lateness, batching, recovery."""

    model_config = _component(f"{ENV_PREFIX}FLOW_")

    windows: str = Field("10s,1m", description="Tumbling window lengths, e.g. 10s,1m.")
    sliding: str = Field(
        "", description="Sliding windows as length/slide pairs, e.g. 1m/10s,5m/1m; empty = none."
    )
    session_gap_s: float = Field(
        0.0, ge=0, description="Session windows: a gap this long ends a burst; 0 = none."
    )
    allowed_lateness_s: float = Field(5.0, ge=0, description="How late a reading may arrive.")
    idle_close_s: float = Field(
        10.0,
        gt=0,
        description="Wall time caught up with Kafka, no input, before a partition's windows close.",
    )
    idle_close_after_gap_s: float = Field(
        60.0,
        gt=0,
        description="The same after an outage or stall, until data comes in again "
        "(upstream backlogs may still be on their way).",
    )
    clock_ahead_s: float = Field(
        2.0,
        ge=0,
        description="How far past the flow's wall clock event times may move the watermark.",
    )
    priority: Literal["normal", "high", "all"] = Field(
        "normal", description="Which sensor types this flow serves (high: own flow, small batches)."
    )
    batch_size: int = Field(5000, ge=1, description="Kafka messages per micro-batch (normal).")
    high_priority_batch_size: int = Field(200, ge=1, description="Micro-batch for high priority.")
    workers: int = Field(1, ge=1, le=64, description="Bytewax worker threads in this process.")
    recovery_dir: Path | None = Field(
        None, description="Bytewax recovery database directory; empty = no recovery."
    )
    epoch_interval_s: float = Field(5.0, gt=0, description="Snapshot (epoch) interval.")
    late_topic: bool = Field(True, description="Send late readings to the `late` Kafka topic.")
    rollup: bool = Field(
        True, description="Per-site, per-type roll-ups of the tumbling windows (site_agg)."
    )
    aggregates_topic: bool = Field(
        False, description="Also publish device aggregates to the `aggregates` Kafka topic."
    )
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(
        9110,
        ge=0,
        le=65_535,
        description="Prometheus endpoint of the normal flow (high flow: port + 1); 0 = off.",
    )

    @field_validator("windows")
    @classmethod
    def _check_windows(cls, value: str) -> str:
        parse_durations(value)
        return value

    @field_validator("sliding")
    @classmethod
    def _check_sliding(cls, value: str) -> str:
        parse_sliding(value)
        return value

    def window_lengths_ms(self) -> tuple[int, ...]:
        return parse_durations(self.windows)

    def sliding_ms(self) -> tuple[tuple[int, int], ...]:
        return parse_sliding(self.sliding)


class SimulatorSettings(BaseSettings):
    """The device fleet simulator (`iotpipe simulate`); each is also a CLI option."""

    model_config = _component(f"{ENV_PREFIX}SIM_")

    devices: int = Field(1000, ge=1, le=10_000_000, description="Simulated devices.")
    types: str = Field("", description="Comma-separated sensor types; empty = all.")
    sites: int = Field(10, ge=1, le=100_000, description="Sites the devices spread over.")
    site_prefix: str = Field(
        "site", pattern=r"^[A-Za-z0-9_.:-]{1,50}$", description="Site names: <prefix>-000..."
    )
    device_prefix: str = Field(
        "dev", pattern=r"^[A-Za-z0-9_.:-]{1,50}$", description="Device ids: <prefix>-000042."
    )
    interval_s: float = Field(10.0, gt=0, description="Mean seconds between a device's readings.")
    interval_spread: float = Field(0.2, ge=0, lt=1, description="Per-device interval spread (0-1).")
    jitter: float = Field(0.1, ge=0, lt=1, description="Per-reading jitter of the interval (0-1).")
    speed: float = Field(
        1.0,
        ge=0,
        description="Simulated seconds per second (3600 = an hour a second); 0 = as fast as"
        " possible.",
    )
    rate: float = Field(0.0, ge=0, description="Readings/s cap (token bucket); 0 = none.")
    start: str = Field(
        "auto",
        description="Simulated start: auto (now in real time, else ending about now), now,"
        " ISO-8601, or -2h/-1d.",
    )
    count: int = Field(0, ge=0, description="Stop after this many readings; 0 = no limit.")
    duration_s: float = Field(0.0, ge=0, description="Stop after this many seconds; 0 = no limit.")
    seed: int = Field(0, ge=0, description="Random seed: the same seed gives the same readings.")
    output: Literal["mqtt", "kafka", "file", "stdout", "null"] = Field(
        "mqtt", description="mqtt | kafka | file | stdout | null."
    )
    file: Path | None = Field(None, description="JSON-lines file for --output file.")
    qos: int = Field(1, ge=0, le=1, description="MQTT QoS of published readings, 0 or 1.")
    batch_size: int = Field(
        1, ge=1, le=10_000, description="Readings per MQTT message; >1 sends gateway JSON arrays."
    )
    gateway_topic: Literal["site", "type"] = Field(
        "site", description="Gateway arrays go to sensors/<site> or sensors/<site>/<type>."
    )
    connections: int = Field(
        2, ge=1, le=256, description="MQTT connections to spread devices over."
    )
    max_pending: int = Field(1000, ge=1, description="Unacknowledged MQTT messages per connection.")
    with_unit: bool = Field(False, description="Include the unit in each payload.")
    anomaly_rate: float = Field(
        0.0, ge=0, le=1, description="Probability per reading that an anomaly starts."
    )
    anomaly_mix: str = Field(
        "",
        description="Weights, e.g. spike=2,stuck=1 (kinds: spike, level_shift, drift, stuck,"
        " dropout, noise_burst, out_of_range); empty = all kinds equally.",
    )
    anomaly_min_len: int = Field(5, ge=1, description="Shortest anomaly, in readings.")
    anomaly_max_len: int = Field(30, ge=1, description="Longest anomaly, in readings.")
    truth: Path | None = Field(None, description="Write ground truth (JSON lines) here.")
    fault_late: float = Field(
        0.0, ge=0, le=1, description="Share of readings sent late (out of order)."
    )
    late_delay_s: float = Field(30.0, gt=0, description="How late (simulated seconds).")
    fault_duplicate: float = Field(0.0, ge=0, le=1, description="Share of readings sent twice.")
    fault_skew: float = Field(0.0, ge=0, le=1, description="Share of devices with a skewed clock.")
    skew_max_s: float = Field(120.0, ge=0, description="Largest clock skew in seconds.")
    fault_malformed: float = Field(0.0, ge=0, le=1, description="Share of malformed payloads.")
    fault_oversized: float = Field(0.0, ge=0, le=1, description="Share of oversized payloads.")
    oversize_bytes: int = Field(300_000, ge=1024, description="Size of an oversized payload.")
    storm_every_s: float = Field(
        0.0, ge=0, description="Seconds between MQTT connection storms; 0 = none."
    )
    storm_size: int = Field(
        100, ge=1, le=10_000, description="Connections opened at once in a storm."
    )
    replay: Path | None = Field(
        None, description="Replay this CSV (timestamp,value) instead of a fleet."
    )
    replay_type: str = Field("", description="Sensor type of the replayed series.")
    replay_devices: int = Field(1, ge=1, description="Devices that replay the series.")


class DashboardSettings(BaseSettings):
    """The built-in web dashboard (`iotpipe dashboard`)."""

    model_config = _component(f"{ENV_PREFIX}DASHBOARD_")

    host: str = Field("127.0.0.1", description="Address the dashboard listens on.")
    port: int = Field(8080, ge=1, le=65_535, description="Dashboard HTTP port.")
    refresh_s: float = Field(5.0, gt=0, description="How often pages refresh their data.")


class DemoSettings(BaseSettings):
    """The one-command demo (`make demo`, `iotpipe demo`)."""

    model_config = _component(f"{ENV_PREFIX}DEMO_")

    devices: int = Field(10_000, ge=1, le=1_000_000, description="Simulated devices.")
    rate: float = Field(3000.0, gt=0, description="Readings/s the simulator publishes.")
    duration_s: float = Field(0.0, ge=0, description="Stop after this long; 0 = until Ctrl-C.")
    anomaly_rate: float = Field(
        0.0005, ge=0, le=1, description="Probability per reading that an anomaly starts."
    )


def parse_sliding(text: str) -> tuple[tuple[int, int], ...]:
    """'1m/10s,5m/1m' -> ((60000, 10000), (300000, 60000)); length a multiple of slide."""
    pairs = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        length_text, sep, slide_text = part.partition("/")
        if not sep:
            raise ValueError(f"{part!r} is not length/slide, e.g. 1m/10s")
        (length,), (slide,) = parse_durations(length_text), parse_durations(slide_text)
        if length % slide:
            raise ValueError(f"{part!r}: the length must be a multiple of the slide")
        pairs.append((length, slide))
    return tuple(pairs)


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


def load_settings(config_file: Path | str | None = None) -> Settings:
    """Build the settings from the environment and an optional dotenv file.

    ``config_file`` defaults to ``$IOTPIPE_CONFIG_FILE``. Raises ``ConfigError``
    naming the first offending variable.
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
    return Settings.model_validate(built)


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
