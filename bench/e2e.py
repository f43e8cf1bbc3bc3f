"""End to end: simulator -> MQTT -> ingester -> Kafka -> flow -> InfluxDB and alerts.

    python -m bench.e2e [--rate 5000] [--batch 1] [--duration 20]

Runs the real processes (``iotpipe simulate``, ``iotpipe ingest``, ``iotpipe
flow run``) against the running local stack, isolated from anyone else using
it: a fresh Kafka topic prefix, a fresh InfluxDB bucket, unique MQTT sites the
ingester alone subscribes to, free metrics ports.

What is measured, per reading (event time ``ts`` is when the simulator made it):

- ingest: ``ingest_ts - ts`` (the ingester stamps ``ingest_ts`` on receipt);
- Kafka: broker append time - ``ts`` (the bench's topics use
  ``message.timestamp.type=LogAppendTime``, so the record timestamp is the
  broker's clock when the record was written, not the producer's);
- aggregate: the wall time at which the reading's 10 s window was complete in
  InfluxDB (its ``sensor_agg`` point count stopped growing; InfluxDB is polled
  every ``POLL_S``, so this is late by up to one poll) - ``ts``. Only whole
  windows that closed while input still flowed count (not the run's first,
  partial window, nor windows closed by the end-of-input idle timeout);
- alert: append time of each raised alert on the ``alerts`` topic - the alert's
  reading time.

Loss and duplicates come from the per-device ``seq`` of everything on the
readings topic, against the simulator's own count of readings sent.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import urllib3
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from bench.profile import attached, summarise
from bench.sink_influx import bucket_api
from bench.stats import account, latency_summary
from iotpipe.catalogue import load_catalogue
from iotpipe.connectors.kafka import delete_topics, ensure_topics
from iotpipe.connectors.kafka_acl import grant_stages
from iotpipe.schema import SENSOR_AGG
from iotpipe.settings import Settings, load_settings
from iotpipe.topics import KafkaTopics

WINDOW_S = 10
LATENESS_S = 1.0  # the flow's allowed lateness for this bench (default 5 s)
IDLE_CLOSE_S = 2.0  # close windows 2 s after input stops (default 10 s)
POLL_S = 0.5
SENSOR = "temperature"
IOTPIPE = str(Path(sys.executable).with_name("iotpipe"))


class _Reading(msgspec.Struct):
    device_id: str
    ts: int
    seq: int = -1
    ingest_ts: int = 0


class _Alert(msgspec.Struct):
    ts: int
    state: str = "raised"


def delete_groups(settings: Settings, groups: list[str]) -> None:
    """Tidy the broker: consumer groups the bench created (errors ignored: best effort)."""
    admin = AdminClient(settings.kafka.client_config())
    for fut in admin.delete_consumer_groups(groups, request_timeout=10).values():
        with contextlib.suppress(Exception):  # a group that is gone or never committed
            fut.result(15)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log_append_time(settings: Settings, topics: list[str]) -> None:
    """Make these (bench-only) topics stamp records with the broker's append time."""
    admin = AdminClient(settings.kafka.client_config())
    resources = []
    for topic in topics:
        entry = ConfigEntry(
            "message.timestamp.type",
            "LogAppendTime",
            incremental_operation=AlterConfigOpType.SET,
        )
        res = ConfigResource("topic", topic, incremental_configs=[entry])
        resources.append(res)
    for fut in admin.incremental_alter_configs(resources).values():
        fut.result(30)


@dataclass
class AggregatePoller:
    """Polls InfluxDB for sensor_agg point counts per window start; records when each grows."""

    settings: Settings
    bucket: str
    counts: dict[int, int] = field(default_factory=dict)
    changed_at: dict[int, float] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    errors: int = 0

    def query(self) -> dict[int, int]:
        flux = (
            f'from(bucket: "{self.bucket}") |> range(start: -3m) '
            f'|> filter(fn: (r) => r._measurement == "{SENSOR_AGG}" and r._field == "count"'
            f' and r.window == "{WINDOW_S}s") '
            '|> group(columns: ["_time"]) |> count() '
            "|> map(fn: (r) => ({_time: r._time, n: r._value})) |> group() "
            '|> keep(columns: ["_time", "n"])'
        )
        resp = urllib3.request(
            "POST",
            f"{self.settings.influx.url}/api/v2/query?org={self.settings.influx.org}",
            body=flux.encode(),
            headers={
                "Authorization": f"Token {self.settings.influx.token.get_secret_value()}",
                "Content-Type": "application/vnd.flux",
                "Accept": "application/csv",
            },
            timeout=10,
        )
        if resp.status != 200:
            raise RuntimeError(f"InfluxDB query: HTTP {resp.status} {resp.data[:200]!r}")
        out: dict[int, int] = {}
        header: list[str] | None = None
        for line in resp.data.decode().splitlines():
            cells = line.strip().split(",")
            if len(cells) < 3:
                header = None
                continue
            if header is None:
                header = cells
                continue
            row = dict(zip(header, cells, strict=False))
            when = np.datetime64(row["_time"].rstrip("Z"), "ms").astype(np.int64)
            out[int(when)] = int(row["n"])
        return out

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                seen = self.query()
            except Exception:
                self.errors += 1
                seen = {}
            now = time.time()
            for start, n in seen.items():
                if n != self.counts.get(start):
                    self.counts[start] = n
                    self.changed_at[start] = now
            self.stop.wait(POLL_S)


def read_topic(settings: Settings, topic: str, decode: Callable[[bytes], Any]) -> list[Any]:
    """Every record of a topic, as (decoded value, append time ms)."""
    consumer = Consumer(
        {
            **settings.kafka.client_config(),
            "group.id": f"bench-read-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    meta = consumer.list_topics(topic, timeout=10).topics[topic]
    parts = []
    ends: dict[int, int] = {}
    for p in meta.partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        if high > low:
            parts.append(TopicPartition(topic, p, low))
            ends[p] = high
    consumer.assign(parts)
    out: list[Any] = []
    deadline = time.monotonic() + 300
    while ends and time.monotonic() < deadline:
        for msg in consumer.consume(num_messages=10_000, timeout=1.0):
            if msg.error():
                continue
            out.append((decode(msg.value()), msg.timestamp()[1]))
            if msg.offset() + 1 >= ends.get(msg.partition(), 0):
                ends.pop(msg.partition(), None)
    consumer.close()
    return out


def topic_total(settings: Settings, topic: str) -> int:
    consumer = Consumer({**settings.kafka.client_config(), "group.id": "bench-size"})
    meta = consumer.list_topics(topic, timeout=10).topics[topic]
    total = 0
    for p in meta.partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        total += high - low
    consumer.close()
    return total


class Proc:
    """A pipeline process with its own log file; stopped with SIGINT, then SIGKILL."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], logdir: Path) -> None:
        self.name = name
        self.log = logdir / f"{name}.log"
        self._fh = self.log.open("w")
        self.proc = subprocess.Popen(args, env=env, stdout=self._fh, stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 15) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._fh.close()

    def tail(self, n: int = 2000) -> str:
        return self.log.read_text(errors="replace")[-n:]


def wait_http(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if urllib3.request("GET", f"http://127.0.0.1:{port}/metrics", timeout=1).status == 200:
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"no metrics endpoint on port {port} after {timeout} s")


def run_case(  # noqa: PLR0915 - one straight script: set up, run, drain, read back
    base: Settings,
    rate: int,
    batch: int = 1,
    duration_s: float = 20,
    anomaly_rate: float = 0.0005,
    interval_s: float = 1.0,
    profile_dir: Path | None = None,
) -> dict[str, Any]:
    """One fixed offered rate (readings/s) for ``duration_s``; every figure of the run.

    With ``profile_dir``, py-spy samples the ingester and the flow while the simulator runs.
    """
    run = uuid.uuid4().hex[:6]
    prefix = f"benche{run}."
    site_prefix = f"be{run}"
    sites = 2
    site_list = ",".join(f"{site_prefix}-{i:03d}" for i in range(sites))
    topics = KafkaTopics(prefix)
    names = topics.all_topics(load_catalogue(base.core.sensors_file).names)
    influx = base.influx
    org_id = bucket_api(influx, "GET", f"/api/v2/orgs?org={influx.org}")["orgs"][0]["id"]
    bucket_name = f"bench-e2e-{run}"
    bucket = bucket_api(influx, "POST", "/api/v2/buckets", {"orgID": org_id, "name": bucket_name})
    kafka = base.kafka.model_copy(update={"topic_prefix": prefix})
    settings = base.model_copy(update={"kafka": kafka})
    ensure_topics(settings.kafka, names)
    if kafka.security_protocol == "SASL_SSL":  # the stages' ACLs for this run's prefix
        grant_stages(kafka, prefix)
    log_append_time(settings, [topics.readings(SENSOR), topics.alerts])
    ingest_port, flow_port = free_port(), free_port()
    env = {
        **os.environ,
        "IOTPIPE_KAFKA_TOPIC_PREFIX": prefix,
        "IOTPIPE_INFLUX_BUCKET": bucket_name,
        "IOTPIPE_MQTT_SITES": site_list,
        "IOTPIPE_INGEST_INSTANCE": f"bench{run}",
        "IOTPIPE_INGEST_METRICS_PORT": str(ingest_port),
        "IOTPIPE_INGEST_LOG_INTERVAL_S": "0",
        "IOTPIPE_FLOW_METRICS_PORT": str(flow_port),
        "IOTPIPE_FLOW_PRIORITY": "normal",
        "IOTPIPE_FLOW_WINDOWS": f"{WINDOW_S}s",
        "IOTPIPE_FLOW_SLIDING": "",
        "IOTPIPE_FLOW_SESSION_GAP_S": "0",
        "IOTPIPE_FLOW_ALLOWED_LATENESS_S": str(LATENESS_S),
        "IOTPIPE_FLOW_IDLE_CLOSE_S": str(IDLE_CLOSE_S),
        "IOTPIPE_FLOW_RECOVERY_DIR": "",
        "IOTPIPE_ALERT_WEBHOOK_URL": "",
    }
    env.pop("IOTPIPE_FLOW_RECOVERY_DIR")
    logdir = Path(tempfile.mkdtemp(prefix=f"bench-e2e-{run}-"))
    poller = AggregatePoller(settings, bucket_name)
    procs: list[Proc] = []
    sim_out: dict[str, Any] = {}
    try:
        ingester = Proc("ingest", [IOTPIPE, "ingest"], env, logdir)
        procs.append(ingester)
        flow = Proc("flow", [IOTPIPE, "flow", "run"], env, logdir)
        procs.append(flow)
        wait_http(ingest_port, 60)
        wait_http(flow_port, 90)
        time.sleep(1.0)  # the MQTT subscription is made just after the endpoint is up
        poll_thread = threading.Thread(target=poller.run, daemon=True)
        poll_thread.start()
        devices = max(1, int(rate * interval_s))
        sim_args = [IOTPIPE, "simulate", "--output", "mqtt", "--devices", str(devices)]
        sim_args += ["--interval", str(interval_s), "--types", SENSOR, "--sites", str(sites)]
        sim_args += ["--site-prefix", site_prefix, "--duration", str(duration_s), "--qos", "1"]
        sim_args += ["--batch-size", str(batch), "--anomaly-rate", str(anomaly_rate)]
        sim_args += ["--seed", "7", "--json", "--start", "now"]
        raws: dict[str, Path] = {}
        with ExitStack() as spies:
            if profile_dir is not None:
                profile_dir.mkdir(parents=True, exist_ok=True)
                for p in procs:
                    raws[p.name] = profile_dir / f"e2e-{rate}x{batch}-{p.name}.txt"
                    spies.enter_context(attached(raws[p.name], pid=p.proc.pid))
            sim_started = time.time()
            sim = subprocess.run(sim_args, env=env, capture_output=True, text=True, check=False)
            sim_ended = time.time()
        if sim.returncode != 0:
            raise RuntimeError(f"simulator failed: {sim.stderr[-2000:]}")
        sim_out = json.loads(sim.stdout[sim.stdout.index("{") :])
        sent = int(sim_out["sent"])
        # Drain: until the readings topic holds everything sent, or stops growing.
        readings_topic = topics.readings(SENSOR)
        last, still_since = -1, time.monotonic()
        while time.monotonic() - still_since < 10:
            total = topic_total(settings, readings_topic)
            if total >= sent:
                break
            if total != last:
                last, still_since = total, time.monotonic()
            time.sleep(0.5)
        drained_at = time.time()
        # Aggregates: wait for the idle close plus a few polls with no change.
        time.sleep(LATENESS_S + IDLE_CLOSE_S + 2)
        quiet_since = time.monotonic()
        seen = dict(poller.counts)
        while time.monotonic() - quiet_since < 3 * POLL_S + 1.5:
            time.sleep(POLL_S)
            if poller.counts != seen:
                seen, quiet_since = dict(poller.counts), time.monotonic()
        poller.stop.set()
        poll_thread.join(5)
        failed = [p.name for p in procs if not p.alive()]  # died before we stopped them
        for p in procs:
            p.stop()
        readings = read_topic(settings, readings_topic, msgspec.json.Decoder(_Reading).decode)
        alerts = read_topic(settings, topics.alerts, msgspec.json.Decoder(_Alert).decode)
    finally:
        poller.stop.set()
        for p in procs:
            p.stop()
        delete_topics(settings.kafka, names)
        delete_groups(settings, [f"{prefix}iotpipe-flow-normal"])
        bucket_api(influx, "DELETE", f"/api/v2/buckets/{bucket['id']}")
    return analyse(
        readings=readings,
        alerts=alerts,
        windows_complete=poller.changed_at,
        sent=sent,
        offered_rate=rate,
        batch=batch,
        duration_s=duration_s,
        sim=sim_out,
        sim_wall=(sim_started, sim_ended),
        drained_at=drained_at,
        poll_errors=poller.errors,
        failed_processes=failed,
        logs={p.name: p.tail(600) for p in procs if p.name in failed},
        mqtt_reconnects=ingester.log.read_text(errors="replace").count("connection lost"),
        profiles={n: summarise(f.read_text()) for n, f in raws.items() if f.exists()},
    )


def analyse(
    *,
    readings: list[tuple[_Reading, int]],
    alerts: list[tuple[_Alert, int]],
    windows_complete: dict[int, float],
    sent: int,
    offered_rate: int,
    batch: int,
    duration_s: float,
    sim: dict[str, Any],
    sim_wall: tuple[float, float],
    drained_at: float,
    poll_errors: int = 0,
    failed_processes: list[str] | None = None,
    logs: dict[str, str] | None = None,
    mqtt_reconnects: int = 0,
    profiles: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Latency percentiles, delivery and rates from what was read back."""
    seqs: dict[str, list[int]] = defaultdict(list)
    n = len(readings)
    ts = np.empty(n, np.int64)
    ingest = np.empty(n, np.int64)
    appended = np.empty(n, np.int64)
    for i, (r, at) in enumerate(readings):
        seqs[r.device_id].append(r.seq)
        ts[i], ingest[i], appended[i] = r.ts, r.ingest_ts, at
    delivery = account(seqs, sent)
    window_ms = WINDOW_S * 1000
    starts = ts - ts % window_ms
    # Whole windows (begun after the first reading) that closed while readings were still
    # flowing, not by the end-of-input idle timeout: a run's first, partial window would
    # flatter the figure, its last would add the idle wait.
    last_event = int(ts.max()) if n else 0
    first_event = int(ts.min()) if n else 0
    closable = (starts >= first_event) & (starts + window_ms + int(LATENESS_S * 1000) <= last_event)
    done_ms = np.array([windows_complete.get(int(s), np.nan) * 1000 for s in starts.tolist()])
    agg_mask = closable & ~np.isnan(done_ms)
    agg_lat = done_ms[agg_mask] - ts[agg_mask]
    ends = starts[agg_mask] + window_ms + int(LATENESS_S * 1000)
    close_delay = done_ms[agg_mask] - ends  # after the window could close: the pipeline's own time
    alert_lat = [at - a.ts for a, at in alerts if a.state == "raised"]
    span_s = (appended.max() - appended.min()) / 1000 if n > 1 else 0.0
    return {
        "offered_rate": offered_rate,
        "readings_per_message": batch,
        "duration_s": duration_s,
        "simulator": {
            k: sim.get(k) for k in ("sent", "failed", "messages", "duration_s", "rate", "generated")
        },
        "published_rate": sim.get("rate"),
        "kafka_rate": n / span_s if span_s else None,
        "delivery": delivery.to_dict(),
        "delivered_fraction": delivery.delivered_fraction,
        "latency": {
            "event_to_ingest": latency_summary(ingest - ts),
            "event_to_kafka": latency_summary(appended - ts),
            "event_to_aggregate": latency_summary(agg_lat),
            "event_to_alert": latency_summary(alert_lat),
            "window_close_to_aggregate": latency_summary(close_delay),
        },
        "p99_aggregate_s": latency_summary(agg_lat)["p99_s"],
        "readings_with_aggregate_latency": int(agg_mask.sum()),
        "windows_seen": len(windows_complete),
        "alerts_raised": len(alert_lat),
        "drain_after_sim_s": drained_at - sim_wall[1],
        "influx_poll_errors": poll_errors,
        "failed_processes": failed_processes or [],
        # QoS 1 redelivers what was unacknowledged when a connection drops: the duplicates.
        "ingester_mqtt_reconnects": mqtt_reconnects,
        "profiles": profiles or {},
        "logs": logs or {},
        "cdf": {
            "event_to_kafka_ms": _cdf(appended - ts),
            "event_to_aggregate_ms": _cdf(agg_lat),
        },
    }


def _cdf(values: np.ndarray | list[float], points: int = 101) -> list[float]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return []
    return [float(x) for x in np.percentile(arr, np.linspace(0, 100, points))]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rate", type=int, default=5000, help="offered readings/s")
    parser.add_argument("--batch", type=int, default=1, help="readings per MQTT message")
    parser.add_argument("--duration", type=float, default=20)
    args = parser.parse_args()
    result = run_case(load_settings(), args.rate, args.batch, args.duration)
    result.pop("cdf")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
