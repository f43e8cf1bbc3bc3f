"""Settings of the stages: edge validation, the ingester, the sinks, alerts and the flows."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings

from iotpipe.durations import parse_durations
from iotpipe.settings.base import ENV_PREFIX, _component


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
        True,
        description=(
            "At start, remember alerts already on the alerts topic (replays); only records"
            " signed with the signing key count, so a forged one cannot suppress an alert."
        ),
    )
    signing_key: SecretStr | None = Field(
        None,
        description=(
            "HMAC-SHA256 key signing every Kafka and MQTT alert (header / user property"
            " iotpipe-signature: sha256=<hex>); empty = the local stack's generated key."
        ),
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
    stop_grace_s: float = Field(
        20.0,
        gt=0,
        description="After SIGINT/SIGTERM, a flow still running this long prints its thread"
        " stacks and exits 1.",
    )
    late_topic: bool = Field(True, description="Send late readings to the `late` Kafka topic.")
    rollup: bool = Field(
        True, description="Per-site, per-type roll-ups of the tumbling windows (site_agg)."
    )
    aggregates_topic: bool = Field(
        False, description="Also publish device aggregates to the `aggregates` Kafka topic."
    )
    # The detectors (flows/detectors: DetectorConfig); the defaults are the same numbers.
    detectors: str = Field(
        "threshold,ewma,rate_of_change,stuck,silence,out_of_range,flapping",
        description="Enabled detectors, comma-separated (a registered detector of your own too).",
    )
    detect_k_sigma: float = Field(4.5, gt=0, description="EWMA z-score of a warning.")
    detect_k_sigma_critical: float = Field(8.0, gt=0, description="EWMA z-score of a critical.")
    detect_ewma_alpha: float = Field(0.02, gt=0, le=1, description="EWMA weight of a reading.")
    detect_ewma_warmup: int = Field(30, ge=1, description="Readings before EWMA judges.")
    detect_changepoint_readings: int = Field(
        30,
        ge=0,
        le=32_767,
        description="Readings in a row beyond k_sigma after which a device's baseline starts"
        " again (a level shift becomes the new normal); 0 = never.",
    )
    detect_sustain_readings: int = Field(
        1, ge=1, description="Readings a threshold/EWMA condition must hold before it raises."
    )
    detect_sustain_s: float = Field(
        0.0, ge=0, description="... and for how long (both must be met)."
    )
    detect_clear_readings: int = Field(
        3, ge=1, description="Readings in a row back inside the deadband before an alarm clears."
    )
    detect_deadband_sigma: float = Field(
        1.0, ge=0, description="How far inside a bound (in the device's noise sigmas) counts."
    )
    detect_cooldown_s: float = Field(
        60.0, ge=0, description="After a clear, no new episode of that kind before this..."
    )
    detect_cooldown_intervals: float = Field(
        5.0, ge=0, description="... or this many of the device's reporting intervals, if longer."
    )
    detect_silence_timeout_s: float = Field(
        60.0, gt=0, description="A device is silent after this long without a reading..."
    )
    detect_silence_intervals: float = Field(
        5.0, ge=0, description="... or this many of its own reporting intervals, if longer."
    )
    detect_alert_budget_per_hour: int = Field(
        10,
        ge=0,
        description="Raised alerts per device per hour; the excess rolls into one 'flapping'"
        " alarm. 0 = no budget.",
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
