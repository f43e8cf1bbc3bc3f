"""Simulator figures: generation speed, MQTT publish rate per process, memory per device.

Run: ``.venv/bin/python -m bench.simulator`` (needs Mosquitto for the MQTT rows;
``--no-mqtt`` skips them). Writes ``bench/results/simulator.json``.

- Generation: a fleet stepped flat out into the null output (values, anomalies
  off, JSON encoding and the split into one ``bytes`` per message included).
  Baseline in the same run: the same readings encoded one ``msgspec`` struct at
  a time, the obvious way; the ratio is the figure to compare across machines.
- MQTT: readings/s one process publishes to the local broker at QoS 0 and 1,
  one reading per message and gateway arrays. Published under the topic root
  ``bench/`` rather than ``sensors/`` so an ingester running elsewhere on the
  same broker does not consume them; the publish cost is the same.
- Memory: bytes of fleet state per device (all numpy arrays), which is all
  the per-device memory the simulator holds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from iotpipe.catalogue import load_catalogue
from iotpipe.codec import encode
from iotpipe.model import Reading
from iotpipe.settings import load_settings
from simulators.fleet import Fleet, FleetConfig
from simulators.generate import batches
from simulators.mqtt import MqttOutput
from simulators.names import site_names
from simulators.outputs import NullOutput
from simulators.payloads import PayloadEncoder
from simulators.runner import RunConfig, Simulation

RESULTS = Path(__file__).parent / "results" / "simulator.json"
CATALOGUE = load_catalogue()


def generation(devices: int, count: int) -> dict[str, Any]:
    now = int(time.time() * 1000)
    fleet = Fleet(FleetConfig(devices=devices, start_ms=now, sites=site_names(50)), CATALOGUE)
    run = RunConfig(start_ms=now, speed=0, count=count, progress=False)
    summary = Simulation(fleet, PayloadEncoder(fleet.naming, CATALOGUE), NullOutput(), run).run()
    return {
        "devices": devices,
        "readings": summary.sent,
        "seconds": summary.duration_s,
        "readings_per_s": summary.rate,
        "bytes_per_reading": summary.bytes / summary.sent,
    }


def baseline(devices: int, count: int) -> dict[str, Any]:
    """Same readings, one ``Reading`` struct + ``msgspec`` encode each."""
    fleet = Fleet(FleetConfig(devices=devices, start_ms=int(time.time() * 1000)), CATALOGUE)
    naming, done, started = fleet.naming, 0, time.perf_counter()
    for b in batches(fleet):
        st, si = fleet.stype[b.device].tolist(), fleet.site[b.device].tolist()
        for d, t, v, s, ty, site in zip(b.device.tolist(), b.ts.tolist(), b.value.tolist(),
                                         b.seq.tolist(), st, si, strict=True):  # fmt: skip
            encode(Reading(device_id=naming.device_id(d), sensor_type=naming.types[ty],
                           site=naming.sites[site], ts=t, value=round(v, 3), seq=s))  # fmt: skip
        done += len(b)
        if done >= count:
            break
    seconds = time.perf_counter() - started
    return {"devices": devices, "readings": done, "seconds": round(seconds, 3),
            "readings_per_s": round(done / seconds, 1)}  # fmt: skip


def mqtt_rate(qos: int, batch_size: int, count: int) -> dict[str, Any]:
    settings = load_settings()
    now = int(time.time() * 1000)
    fleet = Fleet(
        FleetConfig(devices=10_000, start_ms=now - 3_600_000, sites=(f"b{uuid.uuid4().hex[:8]}",)),
        CATALOGUE,
    )
    output = MqttOutput(settings.mqtt, fleet.naming, qos=qos, connections=2,
                        batch_size=batch_size, client_id=f"bench-{uuid.uuid4().hex[:6]}",
                        root="bench")  # fmt: skip
    run = RunConfig(start_ms=fleet.start_ms, speed=0, count=count, progress=False)
    summary = Simulation(fleet, PayloadEncoder(fleet.naming, CATALOGUE), output, run).run()
    return {"qos": qos, "batch_size": batch_size, "readings": summary.sent,
            "failed": summary.failed, "messages": summary.messages,
            "seconds": summary.duration_s, "readings_per_s": summary.rate,
            "messages_per_s": round(summary.messages / summary.duration_s, 1)}  # fmt: skip


def memory(devices: int) -> dict[str, Any]:
    fleet = Fleet(FleetConfig(devices=devices), CATALOGUE)
    return {"devices": devices, "bytes_per_device": fleet.nbytes / devices,
            "total_mb": round(fleet.nbytes / 1e6, 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--no-mqtt", action="store_true", help="skip the MQTT rows")
    parser.add_argument("--count", type=int, default=3_000_000, help="readings per generation run")
    args = parser.parse_args()
    console = Console()
    results: dict[str, Any] = {
        "command": "python -m bench.simulator" + (" --no-mqtt" if args.no_mqtt else ""),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "numpy": np.__version__,
        },
    }
    base = baseline(100_000, 300_000)
    gen = [generation(d, args.count) for d in (10_000, 100_000, 500_000)]
    results["generation_null_sink"] = gen
    results["baseline_msgspec_per_reading"] = base
    results["generation_ratio_to_baseline"] = round(
        gen[1]["readings_per_s"] / base["readings_per_s"], 2
    )
    results["memory"] = [memory(d) for d in (10_000, 100_000, 500_000)]
    if not args.no_mqtt:
        results["mqtt"] = [mqtt_rate(0, 1, 100_000), mqtt_rate(1, 1, 60_000),
                           mqtt_rate(0, 100, 1_000_000), mqtt_rate(1, 100, 1_000_000)]  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")

    table = Table("measure", "setting", "readings/s", "note", title="simulator benchmark")
    for g in gen:
        rate = f"{g['readings_per_s']:,.0f}"
        note = f"{g['bytes_per_reading']:.0f} B/reading"
        table.add_row("generate -> null", f"{g['devices']:,} devices", rate, note)
    table.add_row("baseline msgspec/reading", "100,000 devices", f"{base['readings_per_s']:,.0f}",
                  f"ratio {results['generation_ratio_to_baseline']}x")  # fmt: skip
    for m in results.get("mqtt", []):
        table.add_row("mqtt publish", f"QoS {m['qos']}, {m['batch_size']}/message",
                      f"{m['readings_per_s']:,.0f}",
                      f"{m['messages_per_s']:,.0f} msg/s, failed {m['failed']}")  # fmt: skip
    for mem in results["memory"]:
        table.add_row("memory", f"{mem['devices']:,} devices", "",
                      f"{mem['bytes_per_device']:.0f} B/device ({mem['total_mb']} MB)")  # fmt: skip
    console.print(table)
    console.print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
