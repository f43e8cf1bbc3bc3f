"""The demo's components, as data: adding one is one line.

Each is a real ``iotpipe`` command run as its own process. ``{name}`` fields
are filled from the run's plan (see ``run.plan_values``); ``{attempt}`` is left
for the supervisor, which counts starts (a restarted simulator takes new
device ids, so its seq numbers, which restart at 0, never look like duplicates).
A unit test checks every command line here against the CLI, so the demo
never has to import the CLI to find out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ops.demo.supervisor import ChildSpec


@dataclass(frozen=True)
class Component:
    name: str
    args: tuple[str, ...]
    stage: int  # started in ascending stage order (simulator last), stopped simulator first
    finishes: bool = False


SIMULATOR = "simulator"
INGESTER = "ingester"
# Where each simulator start leaves its JSON summary (read by the demo, not its log).
SIMULATOR_SUMMARY = "{workdir}/sim-summary-{run_id}-{attempt}.json"

COMPONENTS: tuple[Component, ...] = (
    Component(INGESTER, ("ingest",), stage=0),
    Component("flow-normal", ("flow", "run", "--priority", "normal", "--recovery-dir", "{recovery}/normal"), stage=1),  # noqa: E501
    Component("flow-high", ("flow", "run", "--priority", "high", "--recovery-dir", "{recovery}/high"), stage=1),  # noqa: E501
    Component("status", ("status", "--watch", "--record", "--quiet", "--interval", "10"), stage=2),
    Component("dashboard", ("dashboard",), stage=2),
    Component(SIMULATOR, (
        "simulate", "--output", "mqtt", "--devices", "{devices}", "--interval", "{interval}",
        "--speed", "1", "--start", "now", "--anomaly-rate", "{anomaly_rate}",
        "--sites", "{sites}", "--site-prefix", "{site_prefix}",
        "--device-prefix", "{device_prefix}-{attempt}", "--duration", "{sim_duration}",
        "--truth", "{workdir}/truth-{run_id}-{attempt}.jsonl",
        "--summary-file", SIMULATOR_SUMMARY, "--quiet",
    ), stage=3, finishes=True),
)  # fmt: skip


def fill(text: str, values: Mapping[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


def child_specs(
    components: Iterable[Component],
    values: Mapping[str, str],
    command: tuple[str, ...],
) -> list[ChildSpec]:
    """Argv for each component, in start order."""
    specs = []
    for c in sorted(components, key=lambda c: c.stage):
        argv = (*command, *(fill(a, values) for a in c.args))
        specs.append(ChildSpec(c.name, argv, finishes=c.finishes))
    return specs
