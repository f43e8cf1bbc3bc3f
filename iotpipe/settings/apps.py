"""Settings of the applications: the simulator, the dashboard and the demo."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings

from iotpipe.settings.base import ENV_PREFIX, _component


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
    token: SecretStr | None = Field(
        None,
        description=(
            "Access token (login URL printed at start); empty = the local stack's generated"
            " one, or a fresh one per run without a stack."
        ),
    )
    allowed_hosts: str = Field(
        "",
        pattern=r"^[A-Za-z0-9_.:,\[\]*-]{0,1000}$",
        description=(
            "Host names the dashboard answers to besides its host, 127.0.0.1 and localhost"
            " (comma-separated); any other Host header is refused (no DNS rebinding)."
        ),
    )


class DemoSettings(BaseSettings):
    """The one-command demo (`make demo`, `iotpipe demo`)."""

    model_config = _component(f"{ENV_PREFIX}DEMO_")

    devices: int = Field(10_000, ge=1, le=1_000_000, description="Simulated devices.")
    rate: float = Field(3000.0, gt=0, description="Readings/s the simulator publishes.")
    duration_s: float = Field(0.0, ge=0, description="Stop after this long; 0 = until Ctrl-C.")
    anomaly_rate: float = Field(
        0.0005, ge=0, le=1, description="Probability per reading that an anomaly starts."
    )
