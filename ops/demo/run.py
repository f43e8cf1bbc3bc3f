"""``iotpipe demo``: the whole pipeline from one command, supervised, with a loss check.

Each run is a clean pipeline that never mixes with other runs or other
people's traffic on the same servers: the simulator's sites (``demo-<run>-000``
...) and device ids (``d<run>-<attempt>-000042``) are new, the ingester
subscribes to exactly those sites under its own MQTT session, the flows start
from an empty recovery database, and the Kafka topics are the run's own
(``demo-<run>.readings.<type>`` ..., deleted at the end unless ``--keep-topics``;
or under ``IOTPIPE_KAFKA_TOPIC_PREFIX`` when that is set, and then kept). Flow
state resumed from an earlier run would carry that run's devices and
watermarks into this one (silence alerts for devices long gone, readings
judged late). The demo also records the topics' end offsets at the start and
reads from there at the close, so the summary counts this run only even in
topics that already held data.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.text import Text

from iotpipe import metrics as m
from iotpipe.catalogue import load_catalogue
from iotpipe.connectors.kafka import broker_metadata, delete_topics, ensure_topics
from iotpipe.durations import format_duration
from iotpipe.errors import ConfigError, ConnectorError, IotpipeError
from iotpipe.settings import Settings
from iotpipe.signals import stop_on_signals
from ops.demo import kafka as dk
from ops.demo.components import (
    COMPONENTS,
    INGESTER,
    SIMULATOR,
    SIMULATOR_SUMMARY,
    child_specs,
    fill,
)
from ops.demo.influx import aggregated_readings
from ops.demo.metrics import Samples, pipeline_samples, scrape, status_line
from ops.demo.plan import DemoOptions, Plan, make_plan
from ops.demo.summary import (
    DemoSummary,
    ReadBack,
    count_alerts,
    count_reasons,
    simulator_summaries,
    values_of,
)
from ops.demo.supervisor import Event, Supervisor


class Demo:
    """One demo run: start, watch, drain, stop, summarise."""

    def __init__(self, settings: Settings, opts: DemoOptions, console: Console) -> None:
        self.opts = opts
        self.console = console
        self.plan = make_plan(settings, opts)
        self.stop = threading.Event()
        self.hurry = threading.Event()
        self.crashes: list[str] = []
        self.notes: list[str] = []
        self.live: Live | None = None
        logs = self.plan.workdir / "logs" / self.plan.run_id
        self.supervisor = Supervisor(
            logs,
            {**os.environ, **self.plan.env},
            on_event=self._on_event,
            pid_file=self.plan.workdir / "pids.json",
        )
        self.catalogue = load_catalogue(self.plan.settings.core.sensors_file)
        self.readings_topics = [self.plan.topics.readings(t) for t in sorted(self.catalogue.names)]
        self.started = time.monotonic()
        self.start_ms = 0
        self._last_shown = 0.0
        self._influx_error = ""
        self.created: list[str] = []

    # -- events and status -------------------------------------------------
    def _on_event(self, event: Event) -> None:
        if event.kind == "crashed":
            self.crashes.append(f"{event.name}: {event.message.splitlines()[0]}")
            self.console.print(f"[red]{event.name} crashed[/]: {escape(event.message)}")
        elif event.kind in ("restarted", "finished"):
            self.console.print(f"[yellow]{event.name} {event.kind}[/] ({escape(event.message)})")

    def _metrics(self) -> tuple[Samples, Samples]:
        return pipeline_samples(self.plan)

    def status_line(self) -> str:
        up = int(time.monotonic() - self.started)
        restarts = sum(self.supervisor.restarts().values())
        return status_line(*self._metrics(), up, restarts)

    def _show(self) -> None:
        line = self.status_line()
        if self.live is not None:
            self.live.update(Text(line))
        else:
            self.console.print(line, highlight=False)

    # -- phases ------------------------------------------------------------
    def prepare(self) -> dict[tuple[str, int], int]:
        """Check Kafka, create the topics, and note where this run starts in each."""
        kafka = self.plan.settings.kafka
        try:
            broker_metadata(kafka)
        except ConnectorError as exc:
            raise ConnectorError(f"{exc} (start the stack first: make up)") from exc
        self.created = ensure_topics(kafka, self.plan.topics.all_topics(self.catalogue.names))
        self.start_ms = int(time.time() * 1000)
        return dk.end_offsets(kafka, self._watched_topics())

    def _watched_topics(self) -> list[str]:
        t = self.plan.topics
        return [*self.readings_topics, t.alerts, t.dlq_ingest, t.dlq_sink, t.late]

    def launch(self) -> None:
        specs = child_specs(COMPONENTS, self.plan.values, (sys.executable, "-m", "ops"))
        names = [s.name for s in specs]
        self.console.print(
            f"demo run {self.plan.run_id}: {', '.join(names)}; logs in {self.supervisor.log_dir}"
        )
        for spec in specs:
            if spec.name == SIMULATOR:
                self._wait_ingester_subscribed()
            self.supervisor.start([spec])
        if "dashboard" in names:
            web = self.plan.settings.dashboard
            url = f"http://{web.host}:{self.plan.dashboard_port}/"
            if web.token is not None:  # the child reads the same generated token
                url += f"login?token={web.token.get_secret_value()}"
            self.console.print(f"dashboard: {url}", highlight=False)

    def _wait_ingester_subscribed(self, timeout_s: float = 60.0) -> None:
        """Readings published before the ingester subscribes would go nowhere, so the
        simulator starts once the ingester's metrics say the broker granted (SUBACK)."""
        host = self.plan.settings.ingest.metrics_host
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self.stop.is_set():
            self.supervisor.poll()
            ingest = scrape(host, self.plan.ingest_port) or {}
            if ingest.get(m.INGEST_SUBSCRIBED.sample) == 1:
                return
            time.sleep(0.2)
        if not self.stop.is_set():
            log = self.supervisor.children[INGESTER].log_path
            raise ConnectorError(f"the ingester did not subscribe within {timeout_s:.0f} s: {log}")

    def _maybe_show(self) -> None:
        """Every second on a terminal (one line, redrawn), every 10 s in a log."""
        now = time.monotonic()
        if now - self._last_shown >= (1.0 if self.live is not None else 10.0):
            self._show()
            self._last_shown = now

    def watch(self) -> None:
        """Until the simulator finishes (duration) or Ctrl-C."""
        sim = self.supervisor.children.get(SIMULATOR)
        while not self.stop.is_set():
            self.supervisor.poll()
            if sim is not None and sim.finished:
                break
            self._maybe_show()
            self.stop.wait(0.5)

    def drain(self, start: dict[tuple[str, int], int]) -> None:
        """Simulator off, then let the ingester and the flows catch up."""
        self.supervisor.stop(SIMULATOR)
        sent = self._sent()[0]
        deadline = time.monotonic() + self.opts.drain_timeout_s
        kafka = self.plan.settings.kafka
        self.console.print("simulator stopped; waiting for the ingester to forward everything")
        stable_since, last_total = time.monotonic(), -1
        while time.monotonic() < deadline and not self.hurry.is_set():
            self.supervisor.poll()
            end = dk.end_offsets(kafka, self.readings_topics)
            total = dk.total(end) - dk.total(start)
            ingest, _ = self._metrics()
            inflight = ingest.get(m.INGEST_INFLIGHT.sample, 0.0)
            if total != last_total:
                stable_since, last_total = time.monotonic(), total
            if sent is not None and total >= sent and inflight == 0:
                break
            if time.monotonic() - stable_since > 10 and inflight == 0:
                break  # nothing more is coming
            time.sleep(0.5)
        self.console.print("waiting for the flows to catch up and close their windows")
        self._wait_flows(start, deadline)

    def _wait_flows(self, start: dict[tuple[str, int], int], deadline: float) -> None:
        """Done when InfluxDB holds an aggregate for every reading of this run (shortest
        window), which needs the flows caught up and their windows closed. Without an
        answer from InfluxDB: when the flows' counters have been still for a while."""
        kafka = self.plan.settings.kafka
        quiet_s = self.plan.settings.flow.idle_close_s + 3.0
        end = dk.end_offsets(kafka, self.readings_topics)
        arrived = dk.total(end) - dk.total(start)
        last: tuple[float, ...] = ()
        changed = time.monotonic()
        while time.monotonic() < deadline and not self.hurry.is_set():
            self.supervisor.poll()
            _, flows = self._metrics()
            late = flows.get(m.FLOW_LATE.sample, 0.0)
            # A redelivered reading (an ingester killed before its ack) is on the topic
            # twice; the flows drop the second copy, so it is in no aggregate.
            dropped = flows.get(m.FLOW_DUPLICATES.sample, 0.0)
            aggregated = self._aggregated()
            if aggregated is not None and aggregated >= arrived - late - dropped:
                return
            figures = tuple(
                flows.get(k, -1.0) for k in (m.FLOW_READINGS.sample, m.FLOW_AGGREGATES.sample)
            )
            if figures != last:
                last, changed = figures, time.monotonic()
            if aggregated is None and time.monotonic() - changed >= quiet_s:
                return
            self._maybe_show()
            time.sleep(1.0)
        self.notes.append("the flows had not aggregated everything when the drain timeout ended")

    def _aggregated(self) -> int | None:
        """Readings of this run counted in the shortest window's aggregates (InfluxDB)."""
        shortest = min(self.plan.settings.flow.window_lengths_ms())
        try:
            return aggregated_readings(
                self.plan.settings.influx,
                format_duration(shortest),
                self.plan.device_prefix,
                self.start_ms - shortest,
                int(time.time() * 1000) + 60_000,
            )
        except IotpipeError as exc:
            self._influx_error = str(exc)
            return None

    def _sent(self) -> tuple[int | None, int, dict[str, int]]:
        """(sent or None if a simulator run left no summary, failed, labels)."""
        child = self.supervisor.children.get(SIMULATOR)
        if child is None:
            return 0, 0, {}
        found = self._summaries(child.starts)
        labels: dict[str, int] = {}
        for s in found:
            for k, v in (s.get("labels") or {}).items():
                labels[k] = labels.get(k, 0) + int(v)
        sent = sum(int(s["sent"]) for s in found) if len(found) >= child.starts else None
        return sent, sum(int(s.get("failed", 0)) for s in found), labels

    def _summaries(self, starts: int) -> list[dict[str, Any]]:
        values = self.plan.values
        paths = [
            Path(fill(SIMULATOR_SUMMARY, values).replace("{attempt}", str(n)))
            for n in range(1, starts + 1)
        ]
        return simulator_summaries(paths)

    def _sim_end_ms(self) -> int | None:
        """Event time of the simulator's last reading (its summary's ``sim_end``)."""
        child = self.supervisor.children.get(SIMULATOR)
        if child is None:
            return None
        ends = [
            datetime.fromisoformat(s["sim_end"]).timestamp() * 1000
            for s in self._summaries(child.starts)
            if s.get("sim_end")
        ]
        return int(max(ends)) if ends else None

    def summarise(self, start: dict[tuple[str, int], int]) -> DemoSummary:
        kafka = self.plan.settings.kafka
        end = dk.end_offsets(kafka, self._watched_topics())
        t = self.plan.topics

        def slice_of(*topics: str) -> Iterator[tuple[str, bytes]]:
            want = set(topics)
            return dk.read_slice(
                kafka,
                {tp: o for tp, o in start.items() if tp[0] in want},
                {tp: o for tp, o in end.items() if tp[0] in want},
            )

        back = ReadBack()
        back.add(values_of(slice_of(*self.readings_topics)), self.plan.device_prefix)
        reasons = count_reasons(values_of(slice_of(t.dlq_ingest)))
        sink_dead = sum(1 for _ in slice_of(t.dlq_sink))
        late = sum(1 for _ in slice_of(t.late))
        sent, failed, labels = self._sent()
        alerts = count_alerts(
            values_of(slice_of(t.alerts)), self.plan.device_prefix, self._sim_end_ms()
        )
        if sent is None:
            self.notes.append("a simulator run ended without its summary: sent is unknown")
        aggregated = self._aggregated()
        if aggregated is None:
            self.notes.append(f"aggregates unknown: {self._influx_error}")
        if back.without_seq:
            self.notes.append(f"{back.without_seq} readings carried no seq")
        dashboard = self.supervisor.children.get("dashboard")
        return DemoSummary(
            run_id=self.plan.run_id,
            duration_s=round(time.monotonic() - self.started, 1),
            devices=self.opts.devices,
            rate=self.opts.rate,
            sent=sent,
            simulator_failed=failed,
            ingested=back.ingested,
            ingested_by_type=dict(sorted(back.by_type.items())),
            aggregated=aggregated,
            late=late,
            aggregate_window=format_duration(min(self.plan.settings.flow.window_lengths_ms())),
            dead_lettered=dict(sorted(reasons.items())),
            sink_dead_lettered=sink_dead,
            alerts_by_detector=dict(sorted(alerts.by_detector.items())),
            alerts_after_stop=dict(sorted(alerts.after_stop.items())),
            alert_events=dict(sorted(alerts.by_state.items())),
            labels=labels,
            loss=back.ledger.check(sent),
            restarts=self.supervisor.restarts(),
            crashes=self.crashes,
            dashboard_url=(
                f"http://{self.plan.settings.dashboard.host}:{self.plan.dashboard_port}/"
                if dashboard is not None
                else None
            ),
            logs=str(self.supervisor.log_dir),
            notes=self.notes,
        )

    def run(self, live: bool) -> DemoSummary:
        self.plan.workdir.mkdir(parents=True, exist_ok=True)
        with stop_on_signals(self.stop, again=self.hurry.set):
            start = self.prepare()
            try:
                self.launch()
                with _maybe_live(self.console, live) as self.live:
                    self.watch()
                    self.drain(start)
                self.live = None
            finally:
                order = [SIMULATOR, INGESTER, "flow-normal", "flow-high", "status", "dashboard"]
                self.supervisor.stop_all([n for n in order if n in self.supervisor.children])
            summary = self.summarise(start)
            self.clean_up()
        summary.save(self.plan.workdir / f"summary-{self.plan.run_id}.json")
        return summary

    def clean_up(self) -> None:
        """The run's own topics and its recovery database are of no use afterwards."""
        shutil.rmtree(self.plan.values["recovery"], ignore_errors=True)
        if self.plan.own_topics and not self.opts.keep_topics and self.created:
            try:
                delete_topics(self.plan.settings.kafka, self.created)
            except IotpipeError as exc:
                self.console.print(f"could not delete the run's topics: {escape(str(exc))}")
            else:
                self.console.print(f"deleted this run's topics ({self.plan.topics.prefix}*)")


@contextmanager
def _maybe_live(console: Console, live: bool) -> Iterator[Live | None]:
    if not (live and console.is_terminal):
        yield None
        return
    with Live(Text("starting"), console=console, refresh_per_second=2, transient=True) as lv:
        yield lv


def run_demo(
    settings: Settings,
    opts: DemoOptions,
    console: Console | None = None,
    *,
    live: bool = True,
    on_plan: Callable[[Plan], None] | None = None,
) -> DemoSummary:
    """Everything ``iotpipe demo`` does except printing the summary."""
    if opts.devices < 1 or opts.rate <= 0:
        raise ConfigError("--devices must be >= 1 and --rate > 0")
    demo = Demo(settings, opts, console or Console(stderr=True))
    if on_plan is not None:
        on_plan(demo.plan)
    return demo.run(live)
