"""Stage drains: ingester (MQTT backlog -> Kafka), flow (Kafka backlog), InfluxDB sink.

Thin wrappers that run the existing drain benchmarks (``bench.ingest_drain``,
``bench.flow_drain``, ``bench.sink_influx``) in fresh processes and return one
result dict per stage: readings/s, CPU seconds per million readings, peak RSS.
With ``profile_dir`` the ingester and flow drains run under py-spy.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import uuid
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from bench import flow_drain, ingest_drain, sink_influx
from bench.machine import peak_rss_mb
from bench.profile import attached, py_spy_wrap, summarise
from iotpipe.catalogue import load_catalogue
from iotpipe.connectors.kafka import delete_topics, ensure_topics
from iotpipe.settings import Settings, load_settings
from iotpipe.topics import KafkaTopics
from sinks.influx import InfluxWriter


def _usage() -> tuple[float, float]:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime, peak_rss_mb()


def _child(args: list[str], wrap: list[str] | None = None, timeout: float = 900) -> dict[str, Any]:
    cmd = [*(wrap or []), sys.executable, "-m", "bench.stages", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line[7:]))
    raise RuntimeError(f"stage {args} failed:\n{done.stdout[-1500:]}\n{done.stderr[-2500:]}")


def _profiled(
    run: Any, profile_dir: Path | None, name: str
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    if profile_dir is None:
        return run(None), None
    profile_dir.mkdir(parents=True, exist_ok=True)
    raw = profile_dir / f"{name}.txt"
    result = run(py_spy_wrap(raw))
    return result, summarise(raw.read_text()) if raw.exists() else None


def ingest_stage(messages: int, batch: int, profile_dir: Path | None = None) -> dict[str, Any]:
    """Ingester drain; the whole case (baseline, preload, drain) runs in one child.

    Profiled, py-spy attaches to the child for the drain alone (not the preload).
    """
    args = ["--child", "ingest", "--messages", str(messages), "--batch", str(batch)]
    raw = None
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
        raw = profile_dir / f"ingest-{batch}.txt"
        args += ["--profile", str(raw)]
    case = _child(args)
    prof = summarise(raw.read_text()) if raw is not None and raw.exists() else None
    ing = case["ingester"]
    readings = ing["readings"]
    return {
        "stage": "ingest",
        "readings_per_message": batch,
        "messages": messages,
        "readings": readings,
        "readings_per_s": case["ingester_readings_per_s"],
        "messages_per_s": case["ingester_msgs_per_s"],
        "cpu_s_per_million": ing["cpu_seconds"] / readings * 1e6 if readings else None,
        "peak_rss_mb": case["peak_rss_mb"],
        "bare_paho_msgs_per_s": case["bare_paho_msgs_per_s"],
        "dead_lettered": ing["dead_lettered"],
        "profile": prof,
    }


def flow_stage(
    base: Settings, readings: int, devices: int, profile_dir: Path | None = None
) -> dict[str, Any]:
    """Our flow draining a preloaded backlog (sinks counted, not written)."""
    prefix = f"benchf{uuid.uuid4().hex[:6]}."
    settings = base.model_copy(
        update={"kafka": base.kafka.model_copy(update={"topic_prefix": prefix, "partitions": 4})}
    )
    names = KafkaTopics(prefix).all_topics(load_catalogue().names)
    ensure_topics(settings.kafka, names)
    try:
        flow_drain.preload(settings, readings, devices)
        result, prof = _profiled(
            lambda wrap: flow_drain.run_case("ours", prefix, wrap), profile_dir, "flow"
        )
    finally:
        delete_topics(settings.kafka, names)
    return {
        "stage": "flow",
        "readings": readings,
        "devices": devices,
        "readings_per_s": readings / result["seconds"],
        "seconds": result["seconds"],
        "cpu_s_per_million": result["cpu_seconds"] / readings * 1e6,
        "peak_rss_mb": result["peak_rss_mb"],
        "outputs": result["outputs"],
        "profile": prof,
    }


def sink_stage(points: int, devices: int) -> dict[str, Any]:
    """InfluxDB sink: build + write ``points`` sensor_agg points into a fresh bucket."""
    case = _child(["--child", "sink", "--points", str(points), "--devices", str(devices)])
    return {
        "stage": "influx_sink",
        "points": points,
        "readings_per_s": case["points_per_s"],  # one point per aggregate; the unit is points
        "points_per_s": case["points_per_s"],
        "cpu_s_per_million": case["cpu_seconds"] / points * 1e6,
        "peak_rss_mb": case["peak_rss_mb"],
        "requests": case["requests"],
    }


def _child_ingest(messages: int, batch: int, profile: Path | None) -> dict[str, Any]:
    around = (lambda: attached(profile)) if profile else nullcontext
    case = ingest_drain.run_case(load_settings(), messages, batch, around)
    case["peak_rss_mb"] = _usage()[1]
    return case


def _child_sink(points: int, devices: int) -> dict[str, Any]:
    settings = load_settings()
    influx = settings.influx
    org_id = sink_influx.bucket_api(influx, "GET", f"/api/v2/orgs?org={influx.org}")["orgs"][0][
        "id"
    ]
    name = f"bench-sink-{uuid.uuid4().hex[:8]}"
    bucket = sink_influx.bucket_api(
        influx, "POST", "/api/v2/buckets", {"orgID": org_id, "name": name}
    )
    try:
        aggs = sink_influx.make_aggregates(points, devices)
        writer = InfluxWriter(influx, settings.sink, bucket=name)
        writer.check()
        cpu0 = _usage()[0]
        start = time.perf_counter()
        writer.write(aggs)
        seconds = time.perf_counter() - start
        cpu = _usage()[0] - cpu0
        requests = writer.stats.requests
        writer.close()
    finally:
        sink_influx.bucket_api(influx, "DELETE", f"/api/v2/buckets/{bucket['id']}")
    return {
        "points_per_s": points / seconds,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "peak_rss_mb": _usage()[1],
        "requests": requests,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--child", choices=["ingest", "sink"], required=True)
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=20_000)
    parser.add_argument("--profile", type=Path, help="py-spy raw output for the ingest drain")
    args = parser.parse_args()
    if args.child == "ingest":
        result = _child_ingest(args.messages, args.batch, args.profile)
    else:
        result = _child_sink(args.points, args.devices)
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
