"""Peers on the same job: one per-device 10 s tumbling window (count, mean, min, max).

    python -m bench.peers [--readings 300000] [--devices 30000]

The same backlog (``bench.flow_drain.preload``: one topic, 4 partitions, keyed
by device) is aggregated, each in its own process so CPU time and peak memory
are its own, by:

- ``ours``: the micro-batched flow (``flows.dataflow.PartitionLogic`` around a
  ``PartitionState`` with the tumbling window only, detectors off);
- ``bytewax``: textbook Bytewax, one JSON decode per message and ``fold_window``;
- ``quix``: Quix Streams, ``tumbling_window(...).agg(...).final()``;
- ``plain``: a confluent-kafka ``consume(num_messages=...)`` loop into a dict.

Each stops once it has taken in every reading. Every engine's aggregates for
a sample of device-windows must equal the plain loop's (the reference): if not,
the comparison is not fair and the run says so loudly.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.e2e import delete_groups
from bench.flow_drain import WINDOW_MS, per_item_fold, per_item_merge, per_item_start, preload
from bench.machine import peak_rss_mb
from bench.stats import AggKey, AggValue, compare_aggregates
from iotpipe.connectors.kafka import delete_topics, ensure_topics
from iotpipe.settings import Settings, load_settings
from iotpipe.topics import KafkaTopics

PEERS = ("ours", "bytewax", "quix", "plain")
_RUN = uuid.uuid4().hex[:8]
GROUPS = {"quix": f"bench-quix-{_RUN}", "plain": f"bench-plain-{_RUN}"}  # deleted by the child
GRACE_MS = 5_000  # every engine waits 5 s of event time for stragglers (preload disorder < 2 s)
SAMPLE_DEVICES = 40


def _cpu_self() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


STARTED = [0.0]  # perf_counter when the engine's run began (after imports)
FIRST = [0.0]  # perf_counter when the engine handed over its first reading


def _mark() -> None:
    if not FIRST[0]:
        FIRST[0] = time.perf_counter()


def _sampled(device: str) -> bool:
    return device < f"dev-{SAMPLE_DEVICES:06d}"


def run_ours(settings: Settings, topic: str, n: int) -> tuple[float, list[list[Any]]]:
    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.operators import StatefulBatchLogic
    from bytewax.outputs import DynamicSink, StatelessSinkPartition
    from bytewax.testing import run_main

    from flows.detectors import DetectorConfig
    from flows.partition import FlowConfig, Output, PartitionState
    from flows.source import KafkaBatchSource
    from iotpipe.catalogue import load_catalogue

    catalogue = load_catalogue(settings.core.sensors_file)
    config = FlowConfig(
        windows_ms=(WINDOW_MS,),
        allowed_lateness_ms=GRACE_MS,
        detectors=DetectorConfig(detectors=()),
    )
    sample: list[list[Any]] = []

    class Collect(DynamicSink[Output]):
        def build(self, *_a: Any) -> StatelessSinkPartition[Output]:
            class Part(StatelessSinkPartition[Output]):
                def write_batch(self, items: list[Output]) -> None:
                    for out in items:
                        for a in out.aggregates:
                            if _sampled(a.device_id):
                                sample.append([a.device_id, a.start, a.count, a.mean, a.min, a.max])

            return Part()

    class Logic(StatefulBatchLogic[list[bytes], Output, PartitionState]):
        """The flow's partition glue, minus its metrics: whole batches in, aggregates out."""

        def __init__(self) -> None:
            self.state = PartitionState(catalogue, config)

        def on_batch(self, values: list[list[bytes]]) -> tuple[list[Output], bool]:
            _mark()
            flat = values[0] if len(values) == 1 else [v for b in values for v in b]
            return [self.state.on_values(flat)], StatefulBatchLogic.RETAIN

        def on_eof(self) -> tuple[list[Output], bool]:
            return [self.state.flush()], StatefulBatchLogic.RETAIN

        def snapshot(self) -> PartitionState:
            return self.state

    flow = Dataflow("peer-ours")
    source = KafkaBatchSource(
        settings.kafka, [topic], batch_size=settings.flow.batch_size, tail=False
    )
    batches = op.input("in", flow, source)
    outs = op.stateful_batch("state", batches, lambda _resume: Logic())
    op.output("out", op.map("unkey", outs, lambda kv: kv[1]), Collect())
    start = STARTED[0] = time.perf_counter()
    run_main(flow)  # type: ignore[no-untyped-call]
    return time.perf_counter() - start, sample


def run_bytewax(settings: Settings, topic: str, n: int) -> tuple[float, list[list[Any]]]:
    from datetime import UTC, datetime, timedelta

    import bytewax.operators as op
    from bytewax.connectors.kafka import KafkaSource
    from bytewax.dataflow import Dataflow
    from bytewax.operators.windowing import EventClock, TumblingWindower, fold_window
    from bytewax.outputs import DynamicSink, StatelessSinkPartition
    from bytewax.testing import run_main

    align = datetime(2020, 1, 1, tzinfo=UTC)
    align_ms = int(align.timestamp() * 1000)
    sample: list[list[Any]] = []

    class Collect(DynamicSink[Any]):
        def build(self, *_a: Any) -> StatelessSinkPartition[Any]:
            class Part(StatelessSinkPartition[Any]):
                def write_batch(self, items: list[Any]) -> None:
                    for device, (window_id, acc) in items:
                        if _sampled(device):
                            c, s, lo, hi = acc
                            start = align_ms + window_id * WINDOW_MS
                            sample.append([device, start, int(c), s / c, lo, hi])

            return Part()

    flow = Dataflow("peer-bytewax")
    source = KafkaSource([settings.kafka.bootstrap_servers], [topic], tail=False, batch_size=5000)
    msgs = op.input("in", flow, source)

    def decode(m: Any) -> dict[str, Any]:
        _mark()
        return dict(json.loads(m.value))

    readings = op.map("decode", msgs, decode)
    keyed = op.key_on("key", readings, lambda r: r["device_id"])
    clock: EventClock[dict[str, Any]] = EventClock(
        lambda r: datetime.fromtimestamp(r["ts"] / 1000, tz=UTC),
        wait_for_system_duration=timedelta(milliseconds=GRACE_MS),
    )
    windower = TumblingWindower(length=timedelta(milliseconds=WINDOW_MS), align_to=align)
    out = fold_window("fold", keyed, clock, windower, per_item_start, per_item_fold, per_item_merge)
    op.output("out", out.down, Collect())
    start = STARTED[0] = time.perf_counter()
    run_main(flow)  # type: ignore[no-untyped-call]
    return time.perf_counter() - start, sample


def run_quix(settings: Settings, topic: str, n: int) -> tuple[float, list[list[Any]]]:
    from quixstreams import Application
    from quixstreams.dataframe.windows import Count, Max, Mean, Min

    sample: list[list[Any]] = []
    seen = [0]
    done_at = [0.0]
    state_dir = tempfile.mkdtemp(prefix="bench-quix-")
    app = Application(
        broker_address=settings.kafka.bootstrap_servers,
        consumer_group=GROUPS["quix"],
        auto_offset_reset="earliest",
        state_dir=state_dir,
        use_changelog_topics=False,
        auto_create_topics=False,
        loglevel="WARNING",
    )

    def processed(*_a: Any) -> None:
        _mark()
        seen[0] += 1
        if seen[0] == n:
            done_at[0] = time.perf_counter()
            app.stop()

    app._on_message_processed = processed
    source = app.topic(
        topic,
        key_deserializer="str",
        value_deserializer="json",
        timestamp_extractor=lambda value, _headers, _ts, _type: int(value["ts"]),
    )
    sdf = app.dataframe(source)
    sdf = (
        sdf.tumbling_window(duration_ms=WINDOW_MS, grace_ms=GRACE_MS)
        .agg(count=Count(), mean=Mean("value"), min=Min("value"), max=Max("value"))
        .final()
    )

    def collect(value: dict[str, Any], key: Any, _ts: int, _headers: Any) -> None:
        if _sampled(key):
            sample.append(
                [key, value["start"], value["count"], value["mean"], value["min"], value["max"]]
            )

    sdf = sdf.update(collect, metadata=True)
    start = STARTED[0] = time.perf_counter()
    app.run()
    end = done_at[0] or time.perf_counter()
    return end - start, sample


def run_plain(settings: Settings, topic: str, n: int) -> tuple[float, list[list[Any]]]:
    from confluent_kafka import Consumer

    start = STARTED[0] = time.perf_counter()
    consumer = Consumer(
        {
            **settings.kafka.client_config(),
            "group.id": GROUPS["plain"],
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    windows: dict[str, dict[int, list[float]]] = {}
    taken = 0
    while taken < n:
        msgs = consumer.consume(num_messages=10_000, timeout=1.0)
        if msgs:
            _mark()
        for msg in msgs:
            if msg.error():
                continue
            r = json.loads(msg.value())
            v = r["value"]
            start_ms = r["ts"] - r["ts"] % WINDOW_MS
            per_device = windows.setdefault(r["device_id"], {})
            acc = per_device.get(start_ms)
            if acc is None:
                per_device[start_ms] = [1, v, v, v]
            else:
                acc[0] += 1
                acc[1] += v
                if v < acc[2]:  # noqa: PLR1730 - an if is faster than min() here
                    acc[2] = v
                if v > acc[3]:  # noqa: PLR1730
                    acc[3] = v
            taken += 1
    consumer.close()
    elapsed = time.perf_counter() - start
    sample = [
        [device, s, int(a[0]), a[1] / a[0], a[2], a[3]]
        for device, per in windows.items()
        if _sampled(device)
        for s, a in per.items()
    ]
    return elapsed, sample


RUNNERS: dict[str, Callable[[Settings, str, int], tuple[float, list[list[Any]]]]] = {
    "ours": run_ours,
    "bytewax": run_bytewax,
    "quix": run_quix,
    "plain": run_plain,
}


def child(peer: str, prefix: str, topic: str, n: int, out: Path) -> None:
    os.environ["IOTPIPE_KAFKA_TOPIC_PREFIX"] = prefix
    settings = load_settings()
    seconds, sample = RUNNERS[peer](settings, topic, n)
    if peer in GROUPS:
        delete_groups(settings, [GROUPS[peer]])
    result = {
        "seconds": seconds,
        # From the first reading in hand to the end: the steady rate, start-up left out.
        "steady_seconds": seconds - (FIRST[0] - STARTED[0]) if FIRST[0] else seconds,
        "cpu_seconds": _cpu_self(),
        "peak_rss_mb": peak_rss_mb(),
        "sample": sample,
    }
    out.write_text(json.dumps(result))


def run_peer(peer: str, prefix: str, topic: str, n: int, timeout: float = 900) -> dict[str, Any]:
    """One peer in a fresh process; its readings/s, CPU, peak RSS and sampled aggregates."""
    with tempfile.TemporaryDirectory(prefix="bench-peer-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "bench.peers", "--child", peer, "--prefix", prefix]
        cmd += ["--topic", topic, "--readings", str(n), "--out", str(out)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0 or not out.exists():
            raise RuntimeError(f"peer {peer} failed:\n{done.stdout[-1500:]}\n{done.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(out.read_text())
    result["readings_per_s"] = n / result["seconds"]
    result["steady_readings_per_s"] = n / result["steady_seconds"]
    result["cpu_s_per_million"] = result["cpu_seconds"] / n * 1e6
    return result


def as_map(sample: list[list[Any]]) -> dict[AggKey, AggValue]:
    return {(d, int(s)): (int(c), float(m), float(lo), float(hi)) for d, s, c, m, lo, hi in sample}


def sample_keys(reference: dict[AggKey, AggValue], limit: int = 200) -> list[AggKey]:
    """Windows every engine must have closed: at least two windows plus grace before the end."""
    if not reference:
        return []
    last = max(s for _, s in reference)
    closed = sorted(k for k in reference if k[1] + WINDOW_MS + GRACE_MS <= last - WINDOW_MS)
    step = max(1, len(closed) // limit)
    return closed[::step][:limit]


def prepare(
    base: Settings, readings: int, devices: int, partitions: int = 4
) -> tuple[Settings, str]:
    prefix = f"benchp{uuid.uuid4().hex[:6]}."
    settings = base.model_copy(
        update={
            "kafka": base.kafka.model_copy(
                update={"topic_prefix": prefix, "partitions": partitions}
            )
        }
    )
    topic = KafkaTopics(prefix).readings("temperature")
    ensure_topics(settings.kafka, [topic])
    preload(settings, readings, devices)
    return settings, topic


def run_peers(
    base: Settings,
    readings: int,
    devices: int,
    peers: tuple[str, ...] = PEERS,
    on_peer: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Preload once, run every peer on it, compare aggregates; the topic is deleted after."""
    settings, topic = prepare(base, readings, devices)
    results: dict[str, Any] = {}
    try:
        for peer in peers:
            if on_peer:
                on_peer(peer)
            results[peer] = run_peer(peer, settings.kafka.topic_prefix, topic, readings)
    finally:
        delete_topics(settings.kafka, [topic])
    maps = {p: as_map(r.pop("sample")) for p, r in results.items()}
    reference = maps.get("plain") or next(iter(maps.values()))
    keys = sample_keys(reference)
    comparison = compare_aggregates(reference, {p: m for p, m in maps.items()}, keys)
    ours = results.get("ours", {}).get("readings_per_s")
    ours_steady = results.get("ours", {}).get("steady_readings_per_s")
    for r in results.values():
        r["ratio_ours_to_this"] = ours / r["readings_per_s"] if ours else None
        r["steady_ratio_ours_to_this"] = (
            ours_steady / r["steady_readings_per_s"] if ours_steady else None
        )
    return {
        "readings": readings,
        "devices": devices,
        "partitions": settings.kafka.partitions,
        "window_ms": WINDOW_MS,
        "peers": results,
        "comparison": {
            "sampled_windows": comparison.sample,
            "identical": comparison.ok,
            "mismatches": comparison.mismatches[:20],
            "mismatch_count": len(comparison.mismatches),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--readings", type=int, default=300_000)
    parser.add_argument("--devices", type=int, default=30_000)
    parser.add_argument("--child", choices=PEERS)
    parser.add_argument("--prefix")
    parser.add_argument("--topic")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.prefix, args.topic, args.readings, args.out)
        return
    result = run_peers(load_settings(), args.readings, args.devices)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
