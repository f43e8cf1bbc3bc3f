"""Scaling: flow drain rate against Bytewax workers and Kafka partitions; memory per device.

- Throughput: the same backlog preloaded into topics of 1, 2 and 4 partitions,
  drained by our flow with 1 and 2 Bytewax workers (``bench.flow_drain``).
- Memory: one ``PartitionState`` (10 s and 1 m windows, all detectors) fed 3
  readings from each of N devices in a fresh process; the RSS it grew by, per
  device, is the flow's per-device state cost.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from typing import Any

from bench import flow_drain
from iotpipe.catalogue import load_catalogue
from iotpipe.connectors.kafka import delete_topics, ensure_topics
from iotpipe.settings import Settings
from iotpipe.topics import KafkaTopics


def throughput(
    base: Settings,
    readings: int,
    devices: int,
    partitions: tuple[int, ...] = (1, 2, 4),
    workers: tuple[int, ...] = (1, 2),
    on_step: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    rows = []
    for parts in partitions:
        prefix = f"benchs{uuid.uuid4().hex[:6]}."
        settings = base.model_copy(
            update={
                "kafka": base.kafka.model_copy(update={"topic_prefix": prefix, "partitions": parts})
            }
        )
        names = KafkaTopics(prefix).all_topics(load_catalogue().names)
        ensure_topics(settings.kafka, names)
        try:
            flow_drain.preload(settings, readings, devices)
            for w in workers:
                if on_step:
                    on_step(f"{parts} partitions, {w} workers")
                r = flow_drain.run_case("ours", prefix, workers=w)
                rows.append(
                    {
                        "partitions": parts,
                        "workers": w,
                        "readings": readings,
                        "readings_per_s": readings / r["seconds"],
                        "cpu_s_per_million": r["cpu_seconds"] / readings * 1e6,
                        "peak_rss_mb": r["peak_rss_mb"],
                    }
                )
        finally:
            delete_topics(settings.kafka, names)
    return rows


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _memory_child(devices: int) -> dict[str, Any]:
    import time

    from flows.partition import FlowConfig, PartitionState

    state = PartitionState(load_catalogue(), FlowConfig(windows_ms=(10_000, 60_000)))
    t0 = (int(time.time() * 1000) // 60_000 - 10) * 60_000
    chunk = 50_000
    # Warm-up on a few devices so imports and numpy buffers are not counted per device.
    state.on_values([_value(d, t0, 0) for d in range(10)], now=t0 / 1000)
    before = _rss_kb()
    for rnd in range(3):
        for lo in range(0, devices, chunk):
            vals = [_value(d, t0 + rnd * 2000, rnd) for d in range(lo, min(lo + chunk, devices))]
            state.on_values(vals, now=t0 / 1000)
    grown = (_rss_kb() - before) * 1024
    return {"devices": devices, "rss_growth_mb": grown / 2**20, "bytes_per_device": grown / devices}


def _value(d: int, ts: int, seq: int) -> bytes:
    return (
        f'{{"device_id":"dev-{d:07d}","sensor_type":"temperature","site":"s{d % 50}",'
        f'"ts":{ts + d % 1000},"value":{20 + d % 7 * 0.25},"seq":{seq}}}'
    ).encode()


def memory(devices: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.scaling", "--memory-child", str(devices)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line[7:]))
    raise RuntimeError(f"memory child failed: {done.stderr[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--memory-child", type=int)
    args = parser.parse_args()
    if args.memory_child:
        print("RESULT " + json.dumps(_memory_child(args.memory_child)), flush=True)


if __name__ == "__main__":
    main()
