"""The benchmark suite behind ``iotpipe bench`` / ``make bench``.

    python -m bench.suite [--quick|--full] [--repeat N] [--only stage,e2e,peers,scaling]
                          [--out bench/results]

Runs the parts against the running local stack, each isolated (own topic
prefix, bucket, MQTT sites, ports), and writes ``latest.json``, ``latest.md``
and PNG plots under ``--out``. Repeated parts report the median and the range.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from bench import e2e, peers, scaling, stages
from bench.machine import load_average, machine_facts
from bench.report import make_plots, render_markdown, targets
from bench.stats import is_sustained, spread
from iotpipe.settings import Settings, load_settings

PARTS = ("stage", "peers", "e2e", "scaling")
DEFAULT_OUT = Path(__file__).parent / "results"


@dataclass(frozen=True)
class Mode:
    """Sizes of one mode; quick must finish in under 3 minutes on the 2-core box."""

    name: str
    ingest_messages: int
    batch_messages: int
    flow_readings: int
    flow_devices: int
    sink_points: int
    peer_readings: int
    peer_devices: int
    e2e_duration_s: float
    ramp_duration_s: float
    e2e_cases: tuple[tuple[int, int], ...]  # (offered readings/s, readings per message)
    ramp: tuple[tuple[int, int], ...]
    scale_readings: int
    scale_devices: int
    partitions: tuple[int, ...]
    workers: tuple[int, ...]
    fleets: tuple[int, ...]
    profile: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


QUICK = Mode(
    name="quick",
    ingest_messages=20_000,
    batch_messages=500,
    flow_readings=300_000,
    flow_devices=30_000,
    sink_points=50_000,
    peer_readings=60_000,
    peer_devices=2_000,
    e2e_duration_s=25,  # at least one whole 10 s window closed while input flows
    ramp_duration_s=25,
    e2e_cases=((5_000, 1),),
    ramp=(),
    scale_readings=150_000,
    scale_devices=15_000,
    partitions=(4,),
    workers=(1, 2),
    fleets=(10_000, 100_000),
)
FULL = Mode(
    name="full",
    ingest_messages=100_000,
    batch_messages=3_000,
    flow_readings=1_000_000,
    flow_devices=100_000,
    sink_points=200_000,
    peer_readings=400_000,
    peer_devices=10_000,
    e2e_duration_s=30,
    ramp_duration_s=25,
    e2e_cases=((5_000, 1), (20_000, 1), (50_000, 1), (50_000, 100), (200_000, 100)),
    # From low to high; a series stops at its first rate that is not sustained.
    ramp=(
        (2_500, 1),
        (5_000, 1),
        (7_500, 1),
        (10_000, 1),
        (15_000, 1),
        (50_000, 100),
        (100_000, 100),
        (200_000, 100),
        (300_000, 100),
    ),
    scale_readings=600_000,
    scale_devices=60_000,
    partitions=(1, 2, 4),
    workers=(1, 2),
    fleets=(10_000, 100_000, 500_000),
)


def summarise(runs: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: spread(r[k] for r in runs if r.get(k) is not None) for k in keys}


class Suite:
    def __init__(self, settings: Settings, mode: Mode, repeat: int, parts: tuple[str, ...]) -> None:
        self.settings = settings
        self.mode = mode
        self.repeat = repeat
        self.parts = parts
        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            console=self.console,
        )
        self.task = self.progress.add_task("bench", total=self.steps())
        self.profiles: dict[str, Any] = {}

    def steps(self) -> int:
        m, n = self.mode, 0
        if "stage" in self.parts:
            n += 4 * self.repeat
        if "peers" in self.parts:
            n += len(peers.PEERS) * self.repeat
        if "e2e" in self.parts:
            n += len(m.e2e_cases) * self.repeat + len(m.ramp)
        if "scaling" in self.parts:
            n += len(m.partitions) * len(m.workers) + len(m.fleets)
        return n

    def step(self, label: str) -> None:
        self.progress.update(self.task, description=label)

    def done(self) -> None:
        self.progress.advance(self.task)

    def timed(self, label: str, fn: Callable[[], Any]) -> Any:
        self.step(label)
        try:
            return fn()
        finally:
            self.done()

    def run_stages(self, profile_dir: Path | None) -> dict[str, Any]:
        m, s = self.mode, self.settings
        runs: dict[str, list[dict[str, Any]]] = {}
        profiles: dict[str, Any] = {}
        for i in range(self.repeat):
            prof = profile_dir if (m.profile and i == 0) else None
            rows = [
                self.timed(
                    "stage: ingest, 1 reading/msg",
                    partial(stages.ingest_stage, m.ingest_messages, 1, prof),
                ),
                self.timed(
                    "stage: ingest, 100 readings/msg",
                    partial(stages.ingest_stage, m.batch_messages, 100),
                ),
                self.timed(
                    "stage: flow drain",
                    partial(stages.flow_stage, s, m.flow_readings, m.flow_devices, prof),
                ),
                self.timed(
                    "stage: InfluxDB sink", partial(stages.sink_stage, m.sink_points, 20_000)
                ),
            ]
            names = ("ingest (1 reading/msg)", "ingest (gateway, 100/msg)", "flow", "InfluxDB sink")
            for name, row in zip(names, rows, strict=True):
                if row.get("profile"):
                    profiles[name] = row.pop("profile")
                row.pop("profile", None)
                runs.setdefault(name, []).append(row)
        keys = ("readings_per_s", "cpu_s_per_million", "peak_rss_mb")
        return {
            "runs": runs,
            "summary": {n: summarise(r, keys) for n, r in runs.items()},
            "profiles": profiles,
        }

    def run_peers(self) -> dict[str, Any]:
        m = self.mode
        runs = []
        for i in range(self.repeat):
            started = [0]

            def on_peer(peer: str, i: int = i, started: list[int] = started) -> None:
                if started[0]:
                    self.done()
                started[0] += 1
                self.step(f"peers: {peer} (run {i + 1})")

            runs.append(
                peers.run_peers(self.settings, m.peer_readings, m.peer_devices, on_peer=on_peer)
            )
            self.done()
        keys = (
            "readings_per_s",
            "ratio_ours_to_this",
            "steady_readings_per_s",
            "steady_ratio_ours_to_this",
            "cpu_s_per_million",
            "peak_rss_mb",
        )
        summary = {p: summarise([r["peers"][p] for r in runs], keys) for p in peers.PEERS}
        mismatches = [x for r in runs for x in r["comparison"]["mismatches"]]
        return {
            "readings": m.peer_readings,
            "devices": m.peer_devices,
            "partitions": runs[0]["partitions"],
            "runs": runs,
            "summary": summary,
            "comparison": {
                "sampled_windows": sum(r["comparison"]["sampled_windows"] for r in runs),
                "identical": all(r["comparison"]["identical"] for r in runs),
                "mismatch_count": sum(r["comparison"]["mismatch_count"] for r in runs),
                "mismatches": mismatches[:20],
            },
        }

    def e2e_case(
        self,
        rate: int,
        batch: int,
        duration_s: float,
        ramp: bool = False,
        profile_dir: Path | None = None,
    ) -> dict[str, Any]:
        r = e2e.run_case(self.settings, rate, batch, duration_s, profile_dir=profile_dir)
        r["ramp"] = ramp
        r["sustained"] = is_sustained(r, self.budget_s())
        return r

    @staticmethod
    def budget_s() -> float:
        """The issue's window + 2 s, plus the flow's allowed lateness: a wait by design."""
        return e2e.WINDOW_S + e2e.LATENESS_S + 2

    def run_e2e(self, profile_dir: Path | None) -> dict[str, Any]:
        cases = []
        # The highest fixed rate of each payload shape is profiled (first run only).
        top = {
            b: max(r for r, bb in self.mode.e2e_cases if bb == b) for _, b in self.mode.e2e_cases
        }
        for rate, batch in self.mode.e2e_cases:
            prof = profile_dir if (self.mode.profile and top[batch] == rate) else None
            reps = [
                self.timed(
                    f"e2e: {rate:,}/s x{batch} (run {i + 1})",
                    partial(
                        self.e2e_case,
                        rate,
                        batch,
                        self.mode.e2e_duration_s,
                        profile_dir=prof if i == 0 else None,
                    ),
                )
                for i in range(self.repeat)
            ]
            if prof is not None:
                for proc, summary in reps[0].get("profiles", {}).items():
                    self.profiles[f"e2e {rate:,}/s x{batch}: {proc}"] = summary
            # The median run by p99 aggregate latency stands for the case; all runs are kept.
            reps.sort(key=lambda r: r["p99_aggregate_s"] or float("inf"))
            case = dict(reps[len(reps) // 2])
            case["repeats"] = [
                {
                    k: r[k]
                    for k in ("delivered_fraction", "p99_aggregate_s", "kafka_rate", "sustained")
                }
                for r in reps
            ]
            case["sustained"] = all(r["sustained"] for r in reps)
            cases.append(case)
        ramp: list[dict[str, Any]] = []
        failed_batches: set[int] = set()
        for rate, batch in self.mode.ramp:
            if batch in failed_batches:  # past the limit: no point pushing harder
                self.done()
                continue
            r = self.timed(
                f"e2e ramp: {rate:,}/s x{batch}",
                partial(self.e2e_case, rate, batch, self.mode.ramp_duration_s, True),
            )
            ramp.append(r)
            if not r["sustained"]:
                failed_batches.add(batch)
        sus = {}
        for batch in sorted({b for _, b in self.mode.e2e_cases + self.mode.ramp}):
            ok = [
                r["offered_rate"]
                for r in cases + ramp
                if r["readings_per_message"] == batch and r["sustained"]
            ]
            sus[str(batch)] = max(ok) if ok else None
        return {
            "window_s": e2e.WINDOW_S,
            "lateness_s": e2e.LATENESS_S,
            "budget_s": self.budget_s(),
            "duration_s": self.mode.e2e_duration_s,
            "cases": cases,
            "ramp": ramp,
            "sustainable": sus,
        }

    def run_scaling(self) -> dict[str, Any]:
        m = self.mode
        started = [0]

        def on_step(label: str) -> None:
            if started[0]:
                self.done()
            started[0] += 1
            self.step(f"scaling: {label}")

        rows = scaling.throughput(
            self.settings, m.scale_readings, m.scale_devices, m.partitions, m.workers, on_step
        )
        self.done()
        memory = [
            self.timed(f"scaling: memory, {d:,} devices", partial(scaling.memory, d))
            for d in m.fleets
        ]
        return {
            "readings": m.scale_readings,
            "devices": m.scale_devices,
            "throughput": rows,
            "memory": memory,
        }


def analysis(results: dict[str, Any]) -> list[str]:
    """Plain-language reading of the figures: what bounds each missed target."""
    out = []
    st = results.get("stages", {}).get("summary", {})
    ing = st.get("ingest (1 reading/msg)", {}).get("readings_per_s", {}).get("median")
    ingb = st.get("ingest (gateway, 100/msg)", {}).get("readings_per_s", {}).get("median")
    flow = st.get("flow", {}).get("readings_per_s", {}).get("median")
    sink = st.get("InfluxDB sink", {}).get("readings_per_s", {}).get("median")
    for t in results.get("targets", []):
        if t["met"]:
            continue
        if "single-reading" in t["target"]:
            out.append(
                f"- **{t['target']}**: {t['measured'] or 0:,.0f} of {t['goal']:,} readings/s "
                f"({100 * t['ratio']:.0f}% of the target"
                f"{'' if t.get('sustained') else ', and not within the latency budget'}). "
                + (
                    f"The ingester alone drains {ing:,.0f} single-reading messages/s in this run. "
                    if ing
                    else ""
                )
                + "The ingester's profile below shows paho's Python network loop (packet parsing, "
                "PUBACK bookkeeping, per-message callbacks) as the bulk of its time, i.e. one "
                "Python thread per connection. The simulator (also Python/paho, same 2 cores) "
                "cannot offer more than ~10k QoS 1 messages/s either. Next step: several ingesters "
                "sharing the subscription (`$share/<group>/...`, already supported) on more cores, "
                "or gateways batching readings per message (see the batch row)."
            )
        elif "gateway" in t["target"]:
            out.append(
                f"- **{t['target']}**: {t['measured'] or 0:,.0f} of {t['goal']:,} readings/s. "
                f"Stage ceilings this run: ingester {ingb or 0:,.0f} readings/s in arrays of 100, "
                f"flow drain {flow or 0:,.0f} readings/s, InfluxDB sink {sink or 0:,.0f} points/s "
                "(one point per device-window, so it scales with devices/window, not readings). "
                "All share the same 2 cores with Kafka, Mosquitto, InfluxDB and the simulator."
            )
        else:
            out.append(
                f"- **{t['target']}**: measured {t['measured']:.2f}x against a goal of "
                f"{t['goal']:.0f}x. At this size start-up (imports, Kafka connect, Bytewax "
                "worker start) is a large share of every engine's time; see the flow profile."
            )
    return out


def run(
    settings: Settings,
    mode: Mode,
    repeat: int,
    parts: tuple[str, ...],
    out: Path,
    command: str,
) -> dict[str, Any]:
    started = time.time()
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "command": command,
        "mode": mode.name,
        "repeat": repeat,
        "parts": list(parts),
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started)),
        "machine": machine_facts(settings),
    }
    suite = Suite(settings, mode, repeat, parts)
    profile_dir = out / "profiles"
    with suite.progress:
        if "stage" in parts:
            st = suite.run_stages(profile_dir if mode.profile else None)
            results["profiles"] = st.pop("profiles")
            results["stages"] = st
        if "peers" in parts:
            results["peers"] = suite.run_peers()
        if "e2e" in parts:
            results["e2e"] = suite.run_e2e(profile_dir if mode.profile else None)
            results.setdefault("profiles", {}).update(suite.profiles)
        if "scaling" in parts:
            results["scaling"] = suite.run_scaling()
    results["machine"]["load_average_end"] = load_average()
    results["wall_s"] = time.time() - started
    results["targets"] = targets(results)
    results["analysis"] = analysis(results)
    plots = make_plots(results, out)
    (out / "latest.md").write_text(render_markdown(results, plots))
    (out / "latest.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--quick", action="store_true", help="small sizes, under 3 minutes (default)"
    )
    group.add_argument("--full", action="store_true", help="full sizes, fixed rates and a ramp")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--only", default=",".join(PARTS), help="comma-separated: " + ",".join(PARTS)
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    bench(
        args.full,
        args.repeat,
        args.only,
        args.out,
        "python -m bench.suite " + shlex.join(argv or sys.argv[1:]),
    )


def bench(full: bool, repeat: int, only: str, out: Path, command: str) -> dict[str, Any]:
    parts = tuple(p.strip() for p in only.split(",") if p.strip())
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise SystemExit(f"--only: unknown part(s) {unknown}; choose from {','.join(PARTS)}")
    if repeat < 1:
        raise SystemExit("--repeat must be at least 1")
    results = run(load_settings(), FULL if full else QUICK, repeat, parts, out, command)
    console = Console()
    console.print((out / "latest.md").read_text(), markup=False, highlight=False)
    console.print(
        f"\nwritten to {out}/latest.json, latest.md and plots ({results['wall_s']:.0f} s)"
    )
    return results


if __name__ == "__main__":
    main()
