"""The end-of-run summary: what was sent, ingested, aggregated, dead-lettered, alerted, lost.

Everything is read back from the systems themselves, not from counters that
reset when a component restarts: the readings, dead-letter and alert topics
from the offsets recorded at the start to their end now, and the aggregates
from InfluxDB. Only "sent" comes from the simulator's own JSON summary.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table

from ops.demo.losscheck import LossReport, SeqLedger


class _SeqOnly(msgspec.Struct):
    device_id: str
    sensor_type: str
    seq: int | None = None


class _ReasonOnly(msgspec.Struct):
    reason: str = "unknown"


class _AlertOnly(msgspec.Struct):
    device_id: str
    detector: str
    ts: int = 0
    state: str = "raised"


def simulator_summaries(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """The summaries ``iotpipe simulate --summary-file`` wrote (one per run that ended).

    A missing or unreadable file (a run killed before it could write one) is skipped.
    """
    out = []
    for path in paths:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and "sent" in data and "output" in data:
            out.append(data)
    return out


@dataclass
class ReadBack:
    """The readings of this run's devices, back out of Kafka."""

    ledger: SeqLedger = field(default_factory=SeqLedger)
    by_type: Counter[str] = field(default_factory=Counter)
    without_seq: int = 0
    other_devices: int = 0

    @property
    def ingested(self) -> int:
        return sum(self.by_type.values())

    def add(self, values: Iterable[bytes], device_prefix: str) -> None:
        decoder = msgspec.json.Decoder(_SeqOnly)
        for value in values:
            r = decoder.decode(value)
            if not r.device_id.startswith(device_prefix):
                self.other_devices += 1
                continue
            self.by_type[r.sensor_type] += 1
            if r.seq is None:
                self.without_seq += 1
            else:
                self.ledger.add(r.device_id, r.seq)


def count_reasons(values: Iterable[bytes]) -> Counter[str]:
    decoder = msgspec.json.Decoder(_ReasonOnly)
    out: Counter[str] = Counter()
    for v in values:
        try:
            out[decoder.decode(v).reason] += 1
        except msgspec.DecodeError:
            out["undecodable"] += 1
    return out


@dataclass
class AlertCounts:
    """Raised alerts by detector, split at the simulator's last reading: after it, every
    device falls silent, and the ``silence`` alerts that follow are the stop, not news."""

    by_detector: Counter[str] = field(default_factory=Counter)
    after_stop: Counter[str] = field(default_factory=Counter)
    by_state: Counter[str] = field(default_factory=Counter)


def count_alerts(
    values: Iterable[bytes], device_prefix: str, cutoff_ms: int | None = None
) -> AlertCounts:
    decoder = msgspec.json.Decoder(_AlertOnly)
    out = AlertCounts()
    for v in values:
        a = decoder.decode(v)
        if not a.device_id.startswith(device_prefix):
            continue
        out.by_state[a.state] += 1
        if a.state != "raised":
            continue
        if cutoff_ms is not None and a.ts > cutoff_ms:
            out.after_stop[a.detector] += 1
        else:
            out.by_detector[a.detector] += 1
    return out


def values_of(pairs: Iterable[tuple[str, bytes]]) -> Iterator[bytes]:
    return (v for _t, v in pairs)


@dataclass
class DemoSummary:
    """The run's figures; ``to_dict`` is the ``--json`` output."""

    run_id: str
    duration_s: float
    devices: int
    rate: float
    sent: int | None
    simulator_failed: int
    ingested: int
    ingested_by_type: dict[str, int]
    aggregated: int | None
    late: int  # readings the flows judged too late for their window (the `late` topic)
    aggregate_window: str
    dead_lettered: dict[str, int]
    sink_dead_lettered: int
    alerts_by_detector: dict[str, int]
    alerts_after_stop: dict[str, int]
    alert_events: dict[str, int]
    labels: dict[str, int]
    loss: LossReport
    restarts: dict[str, int]
    crashes: list[str]
    dashboard_url: str | None
    logs: str
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.loss.ok

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "loss"}
        d["loss"] = self.loss.to_dict()
        d["ok"] = self.ok
        return d

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    def render(self, console: Console) -> None:
        t = Table(title=f"demo summary (run {self.run_id})", show_header=False)
        t.add_column(style="bold")
        t.add_column()
        t.add_row("duration", f"{self.duration_s:,.1f} s, {self.devices:,} devices")
        sent = "unknown" if self.sent is None else f"{self.sent:,}"
        t.add_row("readings sent", f"{sent} (simulator, confirmed by the broker)")
        t.add_row("ingested", f"{self.ingested:,} into Kafka " + _types(self.ingested_by_type))
        agg = "unknown" if self.aggregated is None else f"{self.aggregated:,}"
        t.add_row(
            "aggregated",
            f"{agg} (sum of count over {self.aggregate_window} windows); late {self.late:,}",
        )
        t.add_row(
            "dead-lettered", _counts(self.dead_lettered) + f"; sink: {self.sink_dead_lettered}"
        )
        t.add_row("alerts", _counts(self.alerts_by_detector))
        if self.alerts_after_stop:
            t.add_row("after the stop", _counts(self.alerts_after_stop))
        t.add_row("labelled anomalies", _counts(self.labels))
        loss = self.loss
        verdict = "[green]no loss[/]" if loss.ok else f"[red]LOST {loss.lost:,}[/]"
        t.add_row(
            "loss check (seq)",
            f"{verdict}: delivered {loss.delivered_fraction:.3%} of {loss.expected:,}, "
            f"{loss.duplicates:,} duplicates, {loss.devices:,} devices",
        )
        t.add_row("restarts", _counts({k: v for k, v in self.restarts.items() if v}))
        t.add_row("logs", self.logs)
        console.print(t)
        for note in self.notes:
            console.print(f"note: {note}")


def _counts(d: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(d.items())) or "none"


def _types(d: dict[str, int]) -> str:
    return f"({len(d)} sensor types)" if d else ""
