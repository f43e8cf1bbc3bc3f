"""``iotpipe status``: the whole pipeline on one screen, as JSON, or into InfluxDB.

The screen is drawn from a ``PipelineHealth`` snapshot (``ops.health``);
``--watch`` redraws it in place with ``rich.live.Live``. ``--record`` writes
each snapshot to InfluxDB as the ``pipeline`` measurement, so Grafana's
pipeline-health dashboard has a history to draw:

| kind | tags | fields |
|---|---|---|
| ``service`` | service | up (0/1) |
| ``topic`` | topic, role, sensor_type (readings only) | messages, end_offset, rate |
| ``lag`` | group, topic | lag (summed over partitions; absent before the first commit) |
| ``component`` | component | up (0/1), ``<counter>_rate`` (e.g. readings_rate) |
| ``dead_letter`` | reason | count (ingester counter since it started) |
| ``alert`` | detector | count (flow counters since they started) |
| ``snapshot`` | | collect_s |

Every point carries the tag ``kind``; timestamps are the snapshot time in ms.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime

from rich.columns import Columns
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from iotpipe import schema
from iotpipe.errors import IotpipeError
from iotpipe.settings import Settings
from iotpipe.topics import KafkaTopics
from ops.health import HealthCollector
from ops.pipeline_health import ComponentMetrics, PipelineHealth
from sinks.influx import InfluxWriter
from sinks.lineprotocol import point_line

log = logging.getLogger(__name__)

_STATE_STYLE = {"up": "green", "external": "cyan", "down": "red", "unhealthy": "yellow"}


# -- the screen -----------------------------------------------------------------


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "[dim]-[/]"
    return f"{value:,.{digits}f}"


def _services(health: PipelineHealth) -> Table:
    table = Table("service", "state", "address", "detail", title="Services", title_justify="left")
    for s in health.services:
        style = _STATE_STYLE.get(s.state, "white")
        table.add_row(s.name, f"[{style}]{s.state}[/]", s.address, Text(s.detail[:60]))
    return table


def _stage_rows(c: ComponentMetrics) -> list[tuple[str, str]]:
    if c.kind == "ingest":
        return [
            ("messages/s", _num(c.rates.get("messages"), 1)),
            ("readings/s", _num(c.rates.get("readings"), 1)),
            ("to Kafka/s", _num(c.rates.get("produced"), 1)),
        ]
    return [
        ("readings/s", _num(c.rates.get("readings"), 1)),
        ("aggregates/s", _num(c.rates.get("aggregates"), 1)),
        ("points/s", _num(c.rates.get("sink_points"), 1)),
    ]


def _throughput(health: PipelineHealth) -> Table:
    table = Table("stage", "state", "rate", "value", title="Throughput", title_justify="left")
    for c in health.components:
        if not c.up:
            shown = "[dim]off[/]" if c.state == "off" else "[red]not running[/]"
            table.add_row(c.name, shown, "", "")
            continue
        for i, (label, value) in enumerate(_stage_rows(c)):
            table.add_row(c.name if i == 0 else "", "[green]up[/]" if i == 0 else "", label, value)
    return table


def _topics(health: PipelineHealth, settings: Settings) -> Table:
    lag = health.lag_by_topic()
    names = KafkaTopics(settings.kafka.topic_prefix)
    groups = {p: names.flow_group(p) for p in ("normal", "high")}
    table = Table(
        "topic",
        "parts",
        "messages",
        "msgs/s",
        "flow lag",
        title="Kafka topics" + (f"  [red]{health.kafka_error}[/]" if health.kafka_error else ""),
        title_justify="left",
    )
    for t in health.topics:
        if not t.exists:
            table.add_row(t.topic, "", "[yellow]missing[/]", "", "")
            continue
        if t.messages is None:
            table.add_row(t.topic, str(t.partitions), "[yellow]unavailable[/]", "", t.error)
            continue
        lag_text = ""
        for group in groups.values():
            if (group, t.topic) in lag:
                value = lag[(group, t.topic)]
                lag_text = _num(value) if value is not None else "[dim]no commit[/]"
        table.add_row(t.topic, str(t.partitions), _num(t.messages), _num(t.rate, 1), lag_text)
    return table


def _dead_letters(health: PipelineHealth) -> Table:
    d = health.dead_letters
    table = Table("dead letters", "count", title="Dead letters", title_justify="left")
    for reason, n in d.by_reason.items():
        table.add_row(f"ingest: {reason}", _num(n))
    if d.source == "kafka topics":
        table.add_row("[dim]by reason: ingester not running[/]", "")
    table.add_row("dlq.ingest topic", _num(d.ingest_topic))
    table.add_row("dlq.sink topic", _num(d.sink_topic))
    if d.sink_from_flows is not None:
        table.add_row("sink (flow counters)", _num(d.sink_from_flows))
    return table


def _alerts(health: PipelineHealth) -> Table:
    a = health.alerts
    table = Table("alerts", "count", title="Alerts", title_justify="left")
    table.add_row("alerts topic", _num(a.topic_total))
    for detector, n in a.by_detector.items():
        table.add_row(f"detector {detector}", _num(n))
    for severity, n in a.by_severity.items():
        table.add_row(f"severity {severity}", _num(n))
    for state, n in a.by_state.items():
        table.add_row(f"state {state}", _num(n))
    if not a.by_detector:
        table.add_row("[dim]by detector: no flow running or no alerts yet[/]", "")
    return table


def render(health: PipelineHealth, settings: Settings) -> RenderableType:
    """One screen: services, throughput, topics with lag, dead letters, alerts."""
    at = datetime.fromtimestamp(health.at_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    header = Text.from_markup(
        f"[bold]iotpipe status[/]  {at}  (collected in {health.elapsed_s:.2f} s)"
    )
    return Panel(
        Group(
            header,
            Columns([_services(health), _throughput(health)]),
            _topics(health, settings),
            Columns([_dead_letters(health), _alerts(health)]),
        ),
        expand=False,
    )


# -- the record -----------------------------------------------------------------


def _line(kind: str, tags: dict[str, str | None], fields: dict[str, float | int], ts: int) -> str:
    return point_line(schema.PIPELINE, {"kind": kind, **tags}, fields, ts)


def pipeline_lines(health: PipelineHealth) -> list[str]:
    """The ``pipeline`` measurement for one snapshot (see the module docstring)."""
    ts = health.at_ms
    lines = [_line("snapshot", {}, {"collect_s": health.elapsed_s}, ts)]
    lines += [_line("service", {"service": s.name}, {"up": int(s.up)}, ts) for s in health.services]
    for t in health.topics:
        if t.messages is None or t.end_offset is None:
            continue
        fields: dict[str, float | int] = {"messages": t.messages, "end_offset": t.end_offset}
        if t.rate is not None:
            fields["rate"] = float(t.rate)
        lines.append(
            _line(
                "topic",
                {"topic": t.topic, "role": t.role, "sensor_type": t.sensor_type},
                fields,
                ts,
            )
        )
    for (group, topic), lag in health.lag_by_topic().items():
        if lag is not None:
            lines.append(_line("lag", {"group": group, "topic": topic}, {"lag": lag}, ts))
    for c in health.components:
        cfields: dict[str, float | int] = {"up": int(c.up)}
        cfields.update({f"{k}_rate": float(v) for k, v in c.rates.items() if v is not None})
        lines.append(_line("component", {"component": c.name}, cfields, ts))
    for reason, n in health.dead_letters.by_reason.items():
        lines.append(_line("dead_letter", {"reason": reason}, {"count": n}, ts))
    for detector, n in health.alerts.by_detector.items():
        lines.append(_line("alert", {"detector": detector}, {"count": n}, ts))
    return lines


class Recorder:
    """Writes snapshots to InfluxDB through the sink's writer; a failure is logged, not fatal."""

    def __init__(self, settings: Settings, bucket: str | None = None) -> None:
        sink = settings.sink.model_copy(update={"retry_max_attempts": 2, "retry_initial_s": 0.2})
        self.writer = InfluxWriter(settings.influx, sink, bucket=bucket)
        self.writer.check()  # a wrong bucket or token stops the command at once
        self.last_error: str | None = None

    def record(self, health: PipelineHealth) -> int:
        lines = pipeline_lines(health)
        try:
            self.writer.write_lines(lines)
        except IotpipeError as exc:
            self.last_error = str(exc)
            log.warning("recording the snapshot failed: %s", exc)
            return 0
        self.last_error = None
        return len(lines)

    def close(self) -> None:
        self.writer.close()


# -- the command ----------------------------------------------------------------


def run_status(
    settings: Settings,
    *,
    console: Console,
    watch: bool = False,
    interval_s: float = 2.0,
    as_json: bool = False,
    record: bool = False,
    quiet: bool = False,
    bucket: str | None = None,
    count: int | None = None,
) -> PipelineHealth | None:
    """Show (or print, or record) snapshots; with ``watch`` until Ctrl-C or ``count``."""
    recorder = Recorder(settings, bucket) if record else None
    previous: PipelineHealth | None = None
    taken = 0
    live: Live | None = None
    try:
        with HealthCollector(settings) as collector:
            while True:
                started = time.monotonic()
                health = collector.collect(previous)
                taken += 1
                if recorder is not None:
                    recorder.record(health)
                if as_json:
                    print(json.dumps(health.to_dict()), flush=True)
                elif not quiet:
                    screen = render(health, settings)
                    if not watch:
                        console.print(screen)
                    elif live is None:
                        live = Live(screen, console=console, auto_refresh=False)
                        live.start()
                    else:
                        live.update(screen, refresh=True)
                previous = health
                if not watch or (count is not None and taken >= count):
                    return health
                time.sleep(max(0.0, interval_s - (time.monotonic() - started)))
    except KeyboardInterrupt:  # the normal way out of --watch
        return previous
    finally:
        if live is not None:
            live.stop()
        if recorder is not None:
            recorder.close()
