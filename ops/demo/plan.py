"""A demo run's plan: its id, work directory, ports, topics and the settings its children get.

Made before anything starts, so a run never mixes with another (see
``ops.demo.run``); a unit test checks the plan without starting anything.
"""

from __future__ import annotations

import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

from iotpipe.errors import ConfigError
from iotpipe.settings import CONFIG_FILE_VAR, Settings
from iotpipe.topics import KafkaTopics
from simulators.names import site_names

MAX_SITES_SUBSCRIBED = 50


@dataclass(frozen=True)
class DemoOptions:
    devices: int
    rate: float
    duration_s: float = 0.0  # 0 = until Ctrl-C
    anomaly_rate: float = 0.0005
    workdir: Path | None = None  # default: <state_dir>/demo
    drain_timeout_s: float = 120.0
    config_file: Path | None = None
    keep_topics: bool = False  # keep the run's own topics (never deletes configured ones)


@dataclass(frozen=True)
class Plan:
    """Everything decided before the first process starts."""

    run_id: str
    workdir: Path
    settings: Settings  # as the components will see them
    env: dict[str, str]
    values: dict[str, str]
    device_prefix: str
    ingest_port: int
    flow_port: int
    dashboard_port: int
    own_topics: bool  # the run's own topic prefix (created, and deleted at the end)

    @property
    def topics(self) -> KafkaTopics:
        return KafkaTopics(self.settings.kafka.topic_prefix)


def free_port(preferred: int, span: int = 1) -> int:
    """``preferred`` if it (and the next span-1 ports) are free, else a free one."""
    if preferred and all(_can_bind(preferred + i) for i in range(span)):
        return preferred
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + span < 65_536 and all(_can_bind(port + i) for i in range(span)):
            return port
    raise ConfigError(f"no free port range of {span} found")


def _can_bind(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def make_plan(settings: Settings, opts: DemoOptions, run_id: str | None = None) -> Plan:
    """Ports, prefixes, sites, directories and the environment the children get."""
    run_id = run_id or uuid.uuid4().hex[:8]
    workdir = (opts.workdir or settings.core.state_dir / "demo").resolve()
    topic_prefix = settings.kafka.topic_prefix or f"demo-{run_id}."
    site_prefix = f"demo-{run_id}"
    sites = site_names(settings.sim.sites, site_prefix)
    sites_env = ",".join(sites) if len(sites) <= MAX_SITES_SUBSCRIBED else ""
    ingest_port = free_port(settings.ingest.metrics_port or 9108)
    flow_port = free_port(settings.flow.metrics_port or 9110, span=2)
    dashboard_port = free_port(settings.dashboard.port)
    env = {
        "IOTPIPE_KAFKA_TOPIC_PREFIX": topic_prefix,
        "IOTPIPE_MQTT_SITES": settings.mqtt.sites or sites_env,
        "IOTPIPE_INGEST_INSTANCE": f"demo-{run_id}",
        "IOTPIPE_INGEST_SESSION_EXPIRY_S": "600",
        "IOTPIPE_INGEST_METRICS_PORT": str(ingest_port),
        "IOTPIPE_FLOW_METRICS_PORT": str(flow_port),
        "IOTPIPE_DASHBOARD_PORT": str(dashboard_port),
        "PYTHONUNBUFFERED": "1",
    }
    if opts.config_file is not None:
        env[CONFIG_FILE_VAR] = str(opts.config_file.resolve())
    device_prefix = f"d{run_id}"
    values = {
        "devices": str(opts.devices),
        "interval": f"{opts.devices / opts.rate:.6g}",
        "anomaly_rate": f"{opts.anomaly_rate:g}",
        "sites": str(settings.sim.sites),
        "site_prefix": site_prefix,
        "device_prefix": device_prefix,
        "sim_duration": f"{opts.duration_s:g}",
        "workdir": str(workdir),
        "recovery": str(workdir / "recovery" / run_id),
        "run_id": run_id,
    }
    updated = settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(update={"topic_prefix": topic_prefix}),
            "mqtt": settings.mqtt.model_copy(update={"sites": env["IOTPIPE_MQTT_SITES"]}),
        }
    )
    return Plan(
        run_id, workdir, updated, env, values, device_prefix + "-", ingest_port, flow_port,
        dashboard_port, own_topics=not settings.kafka.topic_prefix,
    )  # fmt: skip
