"""The simulation loop: step the simulated clock, encode, fault, pace, send, count.

Content never depends on pacing: steps are cut in simulated time, and every
draw is keyed by the reading, so the same seed gives the same readings in real
time, accelerated, rate-limited or flat out. Pacing only decides *when* a step
is sent: not before the simulated clock (``speed`` x wall time) reaches it, and
no faster than the token bucket allows.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from iotpipe.errors import ConfigError
from simulators.anomalies import RawLabel
from simulators.faults import FaultInjector
from simulators.fleet import Batch
from simulators.names import Naming
from simulators.outgoing import Outgoing
from simulators.outputs import Output, OutputStats
from simulators.payloads import PayloadEncoder
from simulators.rate import TokenBucket
from simulators.truth import FLEET_WIDE, TruthWriter


class Source(Protocol):
    """A fleet or a replay: what the loop needs from either."""

    naming: Naming
    stype: npt.NDArray[np.uint8]
    site: npt.NDArray[np.uint16]
    first_ts: int | None
    last_ts: int | None

    @property
    def start_ms(self) -> int: ...

    @property
    def exhausted(self) -> bool: ...

    def readings_per_second(self) -> float: ...

    def advance(self, until_ms: float) -> Batch: ...

    def take_labels(self) -> list[RawLabel]: ...

    def final_labels(self) -> list[RawLabel]: ...


@dataclass(frozen=True)
class RunConfig:
    """How fast and how long to run."""

    start_ms: int
    speed: float = 1.0  # simulated seconds per wall second; 0 = unpaced
    rate: float = 0.0  # readings/s cap (token bucket); 0 = none
    count: int = 0  # stop after this many readings; 0 = no limit
    duration_s: float = 0.0  # stop after this many wall seconds; 0 = no limit
    step_readings: int = 50_000  # target readings per step
    storm_every_s: float = 0.0  # wall seconds between connection storms (MQTT)
    storm_size: int = 100
    progress: bool = True

    def __post_init__(self) -> None:
        if self.speed < 0:
            raise ConfigError(f"speed {self.speed} must be >= 0 (0 = as fast as possible)")
        if self.rate < 0:
            raise ConfigError(f"rate {self.rate} must be >= 0 readings/s (0 = no limit)")
        if self.count < 0 or self.duration_s < 0:
            raise ConfigError("count and duration must be >= 0 (0 = no limit)")
        if self.storm_every_s < 0 or self.storm_size < 1:
            raise ConfigError("storm interval must be >= 0 and storm size >= 1")


@dataclass
class Summary:
    """The end-of-run report (also printed as JSON with ``--json``)."""

    output: str
    sent: int = 0
    failed: int = 0
    messages: int = 0
    bytes: int = 0
    generated: int = 0
    duration_s: float = 0.0
    rate: float = 0.0
    sim_start: str | None = None
    sim_end: str | None = None
    labels: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def step_ms(source_rate: float, config: RunConfig, devices: int = 0) -> float:
    """Simulated ms per step: about ``step_readings`` readings, at most ~0.1 s of wall
    time when paced (so sending stays smooth), and at most 4 mean reporting
    intervals (a small fleet would otherwise step through hours one round at a time)."""
    per_ms = max(source_rate, 1e-9) / 1000.0
    step = config.step_readings / per_ms
    if devices:
        step = min(step, 4.0 * devices / per_ms)
    if config.speed > 0:
        step = min(step, 100.0 * config.speed)
    if config.rate > 0:
        step = min(step, 0.1 * config.rate / per_ms)
    return max(step, 1.0)


class Simulation:
    """Runs a source into an output with pacing, faults, labels and progress."""

    def __init__(
        self,
        source: Source,
        encoder: PayloadEncoder,
        output: Output,
        config: RunConfig,
        *,
        faults: FaultInjector | None = None,
        truth: TruthWriter | None = None,
        stop: threading.Event | None = None,
        console: Console | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.encoder = encoder
        self.output = output
        self.config = config
        self.faults = faults
        self.truth = truth or TruthWriter(None, source.naming)
        self.stop = stop or threading.Event()
        self.console = console or Console(stderr=True)
        self._clock = clock
        self._bucket = TokenBucket(config.rate, clock=clock) if config.rate > 0 else None
        self.generated = 0
        self._cutoff_ts: int | None = None

    def run(self) -> Summary:
        """Open the output, loop until done or stopped, then flush, close and summarise."""
        self.output.open()
        started = self._clock()
        interrupted = False
        try:
            progress = self._progress()
            with progress or nullcontext():
                task = (
                    progress.add_task("simulate", total=self.config.count or None)
                    if progress
                    else None
                )
                interrupted = self._loop(started, progress, task)
                tail = self.faults.drain() if self.faults else Outgoing.empty()
                if len(tail) and not self.stop.is_set():
                    self.output.send(tail)
        finally:
            self.output.close()
            self._write_labels(self.source.final_labels())
            self.truth.close()
        return self._summary(self._clock() - started, interrupted)

    def _progress(self) -> Progress | None:
        if not self.config.progress:
            return None
        return Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.fields[status]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )

    def _loop(self, started: float, progress: Progress | None, task: Any) -> bool:
        cfg = self.config
        step = step_ms(self.source.readings_per_second(), cfg, len(self.source.stype))
        sim_t = float(cfg.start_ms)
        last_storm = started
        last_shown = 0.0
        while not self.stop.is_set():
            sim_t += step
            if cfg.speed > 0 and not self._wait_until(
                started + (sim_t - cfg.start_ms) / 1000.0 / cfg.speed
            ):
                break
            batch = self.source.advance(sim_t)
            if cfg.count:
                left = cfg.count - self.generated
                if len(batch) >= left:
                    batch = Batch(
                        batch.device[:left], batch.ts[:left], batch.value[:left], batch.seq[:left]
                    )
                    self._cutoff_ts = int(batch.ts[-1]) if left else self._cutoff_ts
                    self.stop.set()
            self.generated += len(batch)
            if len(batch):
                self._send(batch, int(sim_t))
            self._write_labels(self.source.take_labels())
            now = self._clock()
            if cfg.storm_every_s and now - last_storm >= cfg.storm_every_s:
                self._storm(int(sim_t))
                last_storm = now
            if progress is not None and now - last_shown > 0.2:
                self._show(progress, task, now - started, sim_t)
                last_shown = now
            if cfg.duration_s and now - started >= cfg.duration_s:
                return False
            if self.source.exhausted:
                return False
        if progress is not None:
            self._show(progress, task, self._clock() - started, sim_t)
        return not (cfg.count and self.generated >= cfg.count)

    def _send(self, batch: Batch, now_ms: int) -> None:
        src = self.source
        stype = src.stype[batch.device].astype(np.int64)
        site = src.site[batch.device].astype(np.int64)
        records = self.encoder.messages(batch, stype, site)
        out = Outgoing(records, batch.device, stype, site)
        if self.faults is not None:
            out = self.faults.apply(out, batch.ts, batch.seq, now_ms)
            self._write_labels(self.faults.take_labels())
        if self._bucket is None:
            self.output.send(out)
            return
        chunk = max(1, int(self.config.rate / 50))  # ~20 ms of tokens per send
        for a in range(0, len(out), chunk):
            part = out.slice(a, a + chunk)
            if not self._bucket.acquire(len(part), self.stop.is_set):
                return
            self.output.send(part)

    def _wait_until(self, wall: float) -> bool:
        while True:
            left = wall - self._clock()
            if left <= 0:
                return True
            if self.stop.wait(min(left, 0.05)):
                return False

    def _storm(self, now_ms: int) -> None:
        storm = getattr(self.output, "storm", None)
        if storm is None:
            return
        accepted = storm(self.config.storm_size)
        self._write_labels(
            [RawLabel(FLEET_WIDE, "fault", "connection_storm", now_ms, now_ms, 0,
                      f"connections={self.config.storm_size} accepted={accepted}")]
        )  # fmt: skip

    def _write_labels(self, raw: list[RawLabel]) -> None:
        if not raw:
            return
        src, cut = self.source, self._cutoff_ts
        named = []
        for label in raw:
            r = label
            if cut is not None and r.start_ts > cut:
                continue  # injected into readings that were never sent
            if cut is not None and r.end_ts > cut:
                r = RawLabel(r.device, r.category, r.kind, r.start_ts, cut, r.readings,
                             r.detail, True)  # fmt: skip
            wide = r.device == FLEET_WIDE
            st = 0 if wide else int(src.stype[r.device])
            si = 0 if wide else int(src.site[r.device])
            named.append(self.truth.name(r, st, si))
        self.truth.write(named)

    def _stats(self) -> OutputStats:
        poll = getattr(self.output, "poll_stats", None)
        return poll() if poll is not None else self.output.stats

    def _show(self, progress: Progress, task: Any, elapsed: float, sim_t: float) -> None:
        s = self._stats()
        rate = s.sent / elapsed if elapsed > 0 else 0.0
        status = (
            f"{self.output.name}: sent {s.sent:,}  failed {s.failed:,}  "
            f"{rate:,.0f} readings/s  sim {_iso(int(sim_t))}"
        )
        progress.update(task, completed=self.generated, status=status)

    def _summary(self, elapsed: float, interrupted: bool) -> Summary:
        s = self._stats()
        last = self.source.last_ts if self._cutoff_ts is None else self._cutoff_ts
        return Summary(
            output=self.output.name,
            sent=s.sent,
            failed=s.failed,
            messages=s.messages,
            bytes=s.bytes,
            generated=self.generated,
            duration_s=round(elapsed, 3),
            rate=round(s.sent / elapsed, 1) if elapsed > 0 else 0.0,
            sim_start=_iso(self.source.first_ts),
            sim_end=_iso(last),
            labels=dict(sorted(self.truth.counts.items())),
            interrupted=interrupted,
        )
