"""The flow's compute alone, this tree against a baseline tree, in the same run.

``PartitionState.on_values`` (decode, windows of every kind, detectors,
roll-up partials) over the same encoded readings, no Kafka and no Bytewax, so
a refactor of the flow's core can be compared with the commit before it on a
noisy machine: runs alternate between the trees and the medians and their
ratio are reported, with a hash of the aggregates to show both computed the
same thing.

    git worktree add /tmp/base HEAD~1
    cp flows/_native*.so /tmp/base/flows/   # the compiled part, if unchanged
    python -m bench.partition_ab --baseline /tmp/base --readings 600000 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = """
import hashlib, json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
from flows.partition import FlowConfig, PartitionState
from iotpipe.catalogue import load_catalogue

readings, devices, batch = int(sys.argv[2]), int(sys.argv[3]), 10_000
catalogue = load_catalogue()
types = sorted(catalogue.names)
rng = np.random.default_rng(1)
t0 = 1_800_000_000_000
values = [
    json.dumps({
        "device_id": f"dev-{i % devices}", "sensor_type": types[i % devices % len(types)],
        "site": f"s{i % devices % 10}",
        "ts": t0 + (i // devices) * 5000 + int(rng.integers(0, 500)),
        "value": float(20 + rng.normal()), "seq": i // devices,
    }).encode()
    for i in range(readings)
]
state = PartitionState(catalogue, FlowConfig(sliding_ms=((60_000, 10_000),), session_gap_ms=30_000))
digest, aggregates = hashlib.sha1(), 0
start = time.perf_counter()
for k in range(0, readings, batch):
    out = state.on_values(values[k : k + batch], now=(t0 + (k // devices) * 5000) / 1000)
    aggregates += len(out.aggregates)
    digest.update(repr(sorted(
        (a.device_id, a.window, a.start, a.end, a.count, round(a.mean, 9), round(a.std, 9))
        for a in out.aggregates
    )).encode())
elapsed = time.perf_counter() - start
rate = readings / elapsed
print(json.dumps({"rate": rate, "aggregates": aggregates, "hash": digest.hexdigest()[:12]}))
"""


def run_one(tree: Path, readings: int, devices: int) -> dict[str, float | str]:
    """One measurement in a fresh process (no warm caches carried between trees)."""
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(tree), str(readings), str(devices)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float | str] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", type=Path, required=True, help="The tree to compare with.")
    parser.add_argument("--readings", type=int, default=600_000)
    parser.add_argument("--devices", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    here = Path(__file__).resolve().parents[1]
    runs: dict[str, list[dict[str, float | str]]] = {"baseline": [], "this": []}
    for _ in range(args.rounds):
        runs["baseline"].append(run_one(args.baseline.resolve(), args.readings, args.devices))
        runs["this"].append(run_one(here, args.readings, args.devices))
    medians = {k: statistics.median(float(r["rate"]) for r in v) for k, v in runs.items()}
    hashes = {k: sorted({str(r["hash"]) for r in v}) for k, v in runs.items()}
    print(
        json.dumps(
            {
                "readings": args.readings,
                "devices": args.devices,
                "rounds": args.rounds,
                "median_readings_per_s": medians,
                "ratio_this_to_baseline": medians["this"] / medians["baseline"],
                "same_aggregates": hashes["this"] == hashes["baseline"],
                "runs": runs,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
