"""Flow drain rate: a Kafka backlog run to the end, ours vs Bytewax per-item windows.

    python -m bench.flow_drain [--readings 5000000] [--devices 100000]

Pre-loads ``readings.temperature`` (under a fresh topic prefix) with N readings
over D devices, then runs, each in its own process so peak memory is its own:

- ``ours``: the micro-batched flow (``flows.dataflow``: Kafka micro-batches,
  numpy windows + detectors), sinks replaced by a counter;
- ``per-item``: the textbook Bytewax flow on the same topic: Bytewax's
  KafkaSource, one JSON decode per message, ``key_on`` device and
  ``fold_window`` (tumbling 10 s, event-time clock) computing count/mean/min/max.

Both run with one worker and stop at the end of the topic. Results go to
stdout and ``bench/results/flow_drain.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import Producer

from bench.machine import peak_rss_mb
from iotpipe.catalogue import load_catalogue
from iotpipe.connectors.kafka import delete_topics, ensure_topics, produce_waiting
from iotpipe.settings import Settings, load_settings
from iotpipe.topics import KafkaTopics

RESULTS = Path(__file__).parent / "results"
WINDOW_MS = 10_000


def preload(settings: Settings, readings: int, devices: int, seed: int = 1) -> float:
    """Produce the backlog in bulk (JSON built with numpy-backed formatting)."""
    topic = KafkaTopics(settings.kafka.topic_prefix).readings("temperature")
    rng = np.random.default_rng(seed)
    t0 = (int(time.time() * 1000) // 60_000 - 120) * 60_000
    step_ms = 2000  # each device reports every 2 s: ~5 readings per 10 s window
    producer = Producer(
        {
            **settings.kafka.client_config(),
            "linger.ms": 50,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 2_000_000,
            "batch.num.messages": 100_000,
        }
    )
    start = time.perf_counter()
    sent = 0
    chunk = 100_000
    while sent < readings:
        n = min(chunk, readings - sent)
        idx = np.arange(sent, sent + n)
        dev = idx % devices
        ts = t0 + (idx // devices) * step_ms + rng.integers(0, step_ms, n)
        vals = 21 + rng.normal(0, 0.5, n)
        for d, t, v, i in zip(dev.tolist(), ts.tolist(), vals.tolist(), idx.tolist(), strict=True):
            key = f"dev-{d:06d}"
            value = (
                f'{{"device_id":"{key}","sensor_type":"temperature","site":"s{d % 10}",'
                f'"ts":{t},"value":{v:.4f},"seq":{i // devices}}}'
            )
            produce_waiting(producer, topic, value.encode(), key.encode())
        producer.poll(0)
        sent += n
    producer.flush(120)
    return time.perf_counter() - start


def run_ours(settings: Settings) -> dict[str, Any]:
    """Our flow with counting sinks; ``settings.flow.workers`` Bytewax workers."""
    from bytewax.outputs import DynamicSink, StatelessSinkPartition
    from bytewax.run import cli_main
    from bytewax.testing import run_main

    from flows.dataflow import build_flow

    counts = {"aggregates": 0, "alerts": 0, "late": 0}

    class Counter(DynamicSink[Any]):
        def __init__(self, name: str) -> None:
            self.name = name

        def build(self, *_a: Any) -> StatelessSinkPartition[Any]:
            name = self.name

            class Part(StatelessSinkPartition[Any]):
                def write_batch(self, items: list[Any]) -> None:
                    counts[name] += sum(len(i) if isinstance(i, list) else 1 for i in items)

            return Part()

    flow = build_flow(
        settings,
        aggregate_sink=Counter("aggregates"),
        alert_sink=Counter("alerts"),
        late_sink=Counter("late"),
        tail=False,
    )
    start = time.perf_counter()
    if settings.flow.workers == 1:
        run_main(flow)  # type: ignore[no-untyped-call]
    else:
        cli_main(flow, workers_per_process=settings.flow.workers)  # type: ignore[no-untyped-call]
    return {"seconds": time.perf_counter() - start, "outputs": counts}


def per_item_start() -> list[float]:
    """The per-item baseline's accumulator: count, sum, min, max."""
    return [0.0, 0.0, float("inf"), float("-inf")]


def per_item_fold(acc: list[float], r: dict[str, Any]) -> list[float]:
    v = r["value"]
    return [acc[0] + 1, acc[1] + v, min(acc[2], v), max(acc[3], v)]


def per_item_merge(a: list[float], b: list[float]) -> list[float]:
    return [a[0] + b[0], a[1] + b[1], min(a[2], b[2]), max(a[3], b[3])]


def run_per_item(settings: Settings) -> dict[str, Any]:
    import bytewax.operators as op
    from bytewax.connectors.kafka import KafkaSource
    from bytewax.dataflow import Dataflow
    from bytewax.operators.windowing import EventClock, TumblingWindower, fold_window
    from bytewax.outputs import DynamicSink, StatelessSinkPartition
    from bytewax.testing import run_main

    topic = KafkaTopics(settings.kafka.topic_prefix).readings("temperature")
    count = [0]

    class Counter(DynamicSink[Any]):
        def build(self, *_a: Any) -> StatelessSinkPartition[Any]:
            class Part(StatelessSinkPartition[Any]):
                def write_batch(self, items: list[Any]) -> None:
                    count[0] += len(items)

            return Part()

    flow = Dataflow("per-item")
    msgs = op.input(
        "in",
        flow,
        KafkaSource([settings.kafka.bootstrap_servers], [topic], tail=False, batch_size=5000),
    )
    readings = op.map("decode", msgs, lambda m: json.loads(m.value))  # type: ignore[union-attr,arg-type]
    keyed = op.key_on("key", readings, lambda r: r["device_id"])
    clock: EventClock[dict[str, Any]] = EventClock(
        lambda r: datetime.fromtimestamp(r["ts"] / 1000, tz=UTC),
        wait_for_system_duration=timedelta(seconds=5),
    )
    windower = TumblingWindower(
        length=timedelta(milliseconds=WINDOW_MS), align_to=datetime(2020, 1, 1, tzinfo=UTC)
    )
    out = fold_window("fold", keyed, clock, windower, per_item_start, per_item_fold, per_item_merge)
    op.output("out", out.down, Counter())
    start = time.perf_counter()
    run_main(flow)  # type: ignore[no-untyped-call]
    return {"seconds": time.perf_counter() - start, "outputs": {"windows": count[0]}}


def child(case: str, prefix: str, workers: int = 1) -> None:
    """Run one case in this (fresh) process and print its JSON."""
    os.environ["IOTPIPE_KAFKA_TOPIC_PREFIX"] = prefix
    os.environ["IOTPIPE_FLOW_WORKERS"] = str(workers)
    os.environ["IOTPIPE_FLOW_PRIORITY"] = "normal"
    os.environ["IOTPIPE_FLOW_WINDOWS"] = "10s"
    settings = load_settings()
    result = run_ours(settings) if case == "ours" else run_per_item(settings)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["peak_rss_mb"] = peak_rss_mb()  # VmHWM: ru_maxrss survives exec from a big parent
    result["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    print("RESULT " + json.dumps(result), flush=True)


def run_case(
    case: str, prefix: str, wrap: list[str] | None = None, workers: int = 1
) -> dict[str, Any]:
    """One case in a fresh process (``wrap``: a command to run it under, e.g. a profiler)."""
    cmd = [sys.executable, "-m", "bench.flow_drain", "--child", case, "--prefix", prefix]
    done = subprocess.run(
        [*(wrap or []), *cmd, "--workers", str(workers)],
        capture_output=True,
        text=True,
        check=False,
    )
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line[7:]))
    raise SystemExit(f"{case} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--readings", type=int, default=5_000_000)
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--child", choices=["ours", "per-item"])
    parser.add_argument("--prefix")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.prefix, args.workers)
        return
    base = load_settings()
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    settings = base.model_copy(
        update={"kafka": base.kafka.model_copy(update={"topic_prefix": prefix, "partitions": 4})}
    )
    topics = KafkaTopics(prefix)
    names = topics.all_topics(load_catalogue().names)
    ensure_topics(settings.kafka, names)
    try:
        load_s = preload(settings, args.readings, args.devices)
        ours = run_case("ours", prefix)
        per_item = run_case("per-item", prefix)
    finally:
        delete_topics(settings.kafka, names)
    n = args.readings
    report: dict[str, Any] = {
        "command": f"python -m bench.flow_drain --readings {n} --devices {args.devices}",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "preload_seconds": load_s,
        "ours": {**ours, "readings_per_s": n / ours["seconds"]},
        "per_item_fold_window": {**per_item, "readings_per_s": n / per_item["seconds"]},
    }
    report["ratio"] = (
        report["ours"]["readings_per_s"] / report["per_item_fold_window"]["readings_per_s"]
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "flow_drain.json").write_text(json.dumps(report, indent=2))
    print(f"{n:,} readings, {args.devices:,} devices, 1 worker")
    print(f"{'flow':>22} {'readings/s':>12} {'seconds':>8} {'peak RSS MB':>12}")
    for name, r in (
        ("micro-batched (ours)", report["ours"]),
        ("per-item fold_window", report["per_item_fold_window"]),
    ):
        rate, secs, rss = r["readings_per_s"], r["seconds"], r["peak_rss_mb"]
        print(f"{name:>22} {rate:>12,.0f} {secs:>8.1f} {rss:>12,.0f}")
    print(f"ratio: {report['ratio']:.1f}x")


if __name__ == "__main__":
    main()
