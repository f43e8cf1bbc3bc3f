"""The ``iotpipe`` command line.

Every option can also be set through the environment variable shown in
``--help``. Known errors print ``Error: ...`` and exit 1, never a traceback.
"""

from __future__ import annotations

import faulthandler
import json
import signal
import sys
import time
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import msgspec
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from flows.runner import run_flow
from ingest.dlq import DlqFilter, inspect, make_fixup, read_dead_letters, replay
from ingest.runner import run_ingester
from iotpipe import __version__
from iotpipe.catalogue import load_catalogue
from iotpipe.codec import ReadingDecoder, encode
from iotpipe.connectors.kafka import broker_metadata
from iotpipe.durations import parse_moment
from iotpipe.errors import ConfigError, IotpipeError
from iotpipe.options import override, setting_option
from iotpipe.settings import (
    CONFIG_FILE_VAR,
    DashboardSettings,
    DemoSettings,
    FlowSettings,
    IngestSettings,
    Settings,
    known_variables,
    load_settings,
    render_sample_env,
)
from iotpipe.topics import TopicError, parse_mqtt_reading_topic
from ops.stack import Stack, Status
from simulators.cli import simulate

app = typer.Typer(help="IoT stream-processing pipeline.", no_args_is_help=True)
stack_app = typer.Typer(help="Run the local Mosquitto, Kafka and InfluxDB.", no_args_is_help=True)
topics_app = typer.Typer(help="Kafka topics of the pipeline.", no_args_is_help=True)
config_app = typer.Typer(help="Inspect the settings.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
app.add_typer(topics_app, name="topics")
app.add_typer(config_app, name="config")
dlq_app = typer.Typer(help="Inspect and replay dead-lettered input.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
flow_app = typer.Typer(help="Bytewax dataflows.", no_args_is_help=True)
app.add_typer(flow_app, name="flow")
app.command(help="Device fleet simulator: MQTT, Kafka or file output, labelled anomalies.")(
    simulate
)

console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", envvar=CONFIG_FILE_VAR, help="dotenv file of IOTPIPE_* settings."
    ),
]
ServicesArg = Annotated[
    list[str] | None, typer.Argument(help="mosquitto, kafka, influxdb (default: all).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def friendly(func: F) -> F:
    """Turn our own errors into 'Error: ...' and exit status 1."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except IotpipeError as exc:
            err_console.print(f"[bold red]Error:[/] {escape(str(exc))}", highlight=False)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _settings(config: Path | None) -> Settings:
    return load_settings(config)


def _print_statuses(statuses: list[Status], as_json: bool) -> None:
    if as_json:
        print(json.dumps([s.__dict__ for s in statuses]))
        return
    table = Table("service", "state", "address", "pid", "detail")
    colours = {"up": "green", "external": "cyan", "down": "red", "unhealthy": "yellow"}
    for s in statuses:
        table.add_row(
            s.name, f"[{colours[s.state]}]{s.state}[/]", s.address, str(s.pid or ""), s.detail
        )
    console.print(table)


@app.command()
@friendly
def ingest(
    instance: Annotated[
        str | None,
        setting_option(IngestSettings, "instance", "--instance", "-i"),
    ] = None,
    metrics_port: Annotated[int | None, setting_option(IngestSettings, "metrics_port")] = None,
    config: ConfigOption = None,
) -> None:
    """MQTT -> Kafka ingester: validate, route by sensor type, dead-letter bad input."""
    settings = _override(_settings(config), "ingest", instance=instance, metrics_port=metrics_port)
    _setup_logging(settings)
    stats = run_ingester(settings)
    console.print(stats.summary())


ReasonOption = Annotated[str | None, typer.Option(help="Only this rejection reason.")]
DeviceOption = Annotated[str | None, typer.Option(help="Only this device id.")]
SinceOption = Annotated[
    str | None, typer.Option(help="Received at or after: ISO-8601, epoch ms, or 30m/2h/7d ago.")
]
UntilOption = Annotated[str | None, typer.Option(help="Received at or before (same forms).")]


def _dlq_filter(
    reason: str | None, device: str | None, since: str | None, until: str | None
) -> DlqFilter:
    return DlqFilter(
        reason=reason,
        device=device,
        since_ms=_moment("--since", since),
        until_ms=_moment("--until", until),
    )


def _moment(option: str, text: str | None) -> int | None:
    if not text:
        return None
    try:
        return parse_moment(text, int(time.time() * 1000), bare_is_past=True)
    except ValueError as exc:
        raise ConfigError(f"{option}: {exc}") from exc


@dlq_app.command("inspect")
@friendly
def dlq_inspect(
    reason: ReasonOption = None,
    device: DeviceOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    samples: Annotated[int, typer.Option(help="Sample payloads shown per reason.")] = 3,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Counts of refused items by reason, with sample payloads."""
    settings = _settings(config)
    filt = _dlq_filter(reason, device, since, until)
    result = inspect(read_dead_letters(settings), filt, samples)
    if as_json:
        print(
            json.dumps(
                {
                    "records": result.records,
                    "items_by_reason": dict(result.items_by_reason),
                    "samples": {
                        k: [msgspec.to_builtins(r) for r in v] for k, v in result.samples.items()
                    },
                }
            )
        )
        return
    table = Table("reason", "items")
    for name, count in result.items_by_reason.most_common():
        table.add_row(name, f"{count:,}")
    console.print(f"{result.records:,} dead-lettered messages match")
    console.print(table)
    for name, records in result.samples.items():
        for r in records:
            console.print(
                f"[bold]{name}[/] {r.mqtt_topic} {r.detail}\n  {r.payload[:200]}",
                highlight=False,
                markup=False,
            )


@dlq_app.command("replay")
@friendly
def dlq_replay(
    reason: ReasonOption = None,
    device: DeviceOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Fix-up: set a field in every item, e.g. --set unit=celsius."),
    ] = None,
    rename_type: Annotated[
        list[str] | None, typer.Option(help="Fix-up: rename a sensor type, e.g. temp=temperature.")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Decode and count, write nothing.")] = False,
    config: ConfigOption = None,
) -> None:
    """Decode refused items again (after optional fix-ups); produce those that now pass."""
    settings = _settings(config)
    catalogue = load_catalogue(settings.core.sensors_file)
    report = replay(
        settings,
        catalogue,
        read_dead_letters(settings),
        _dlq_filter(reason, device, since, until),
        fixup=make_fixup(set_ or [], rename_type or []),
        dry_run=dry_run,
    )
    verb = "would replay" if dry_run else "replayed"
    console.print(
        f"{report.records:,} messages: {verb} {report.replayed:,} readings; "
        f"still refused: {dict(report.still_refused) or 'none'}"
    )


def _override(settings: Settings, component: str, **values: Any) -> Settings:
    """Apply command-line options over one settings component, validated again."""
    flags = {"duration_s": "--duration"}
    updated = override(getattr(settings, component), values, flags)
    return settings.model_copy(update={component: updated})


@flow_app.command("run")
@friendly
def flow_run(
    priority: Annotated[str | None, setting_option(FlowSettings, "priority")] = None,
    workers: Annotated[
        int | None, setting_option(FlowSettings, "workers", "--workers", "-w")
    ] = None,
    recovery_dir: Annotated[Path | None, setting_option(FlowSettings, "recovery_dir")] = None,
    windows: Annotated[str | None, setting_option(FlowSettings, "windows")] = None,
    process_id: Annotated[
        int | None, typer.Option("--process-id", "-i", help="This process's index (cluster).")
    ] = None,
    addresses: Annotated[
        str | None,
        typer.Option("--addresses", "-a", help="host:port of every process, ';'-separated."),
    ] = None,
    to_end: Annotated[
        bool, typer.Option("--to-end", help="Stop at the end of the topics (batch run).")
    ] = False,
    metrics_port: Annotated[int | None, setting_option(FlowSettings, "metrics_port")] = None,
    config: ConfigOption = None,
) -> None:
    """Windowed aggregation and anomaly detection from Kafka to InfluxDB and alerts."""
    settings = _override(
        _settings(config),
        "flow",
        priority=priority,
        workers=workers,
        recovery_dir=recovery_dir,
        windows=windows,
        metrics_port=metrics_port,
    )
    _setup_logging(settings)
    run_flow(
        settings,
        tail=not to_end,
        process_id=process_id,
        addresses=addresses.split(";") if addresses else None,
    )


def _setup_logging(settings: Settings) -> None:
    import logging

    logging.basicConfig(
        level=settings.core.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@app.command()
def version() -> None:
    """Print the version."""
    print(__version__)


@stack_app.command("install")
@friendly
def stack_install(services: ServicesArg = None, config: ConfigOption = None) -> None:
    """Install the services without starting them (apt, Maven jars, InfluxDB build)."""
    stack = Stack(_settings(config))
    for service in stack.select(services):
        with console.status(f"installing {service.name} (cached after the first time)"):
            service.install()
        console.print(f"{service.name}: installed")


@stack_app.command("up")
@friendly
def stack_up(
    services: ServicesArg = None, config: ConfigOption = None, as_json: JsonOption = False
) -> None:
    """Install (first time), start and health-check the services; create topics."""
    stack = Stack(_settings(config))
    with console.status("starting services (first run installs them, which takes minutes)"):
        statuses = stack.up(services)
    _print_statuses(statuses, as_json)


@stack_app.command("down")
@friendly
def stack_down(services: ServicesArg = None, config: ConfigOption = None) -> None:
    """Stop the services this stack started (never someone else's)."""
    for name, stopped in Stack(_settings(config)).down(services).items():
        console.print(f"{name}: {'stopped' if stopped else 'was not running (or not ours)'}")


@stack_app.command("status")
@friendly
def stack_status(
    services: ServicesArg = None, config: ConfigOption = None, as_json: JsonOption = False
) -> None:
    """Health of each service; exit status 1 if any is not healthy."""
    statuses = Stack(_settings(config)).status(services)
    _print_statuses(statuses, as_json)
    if any(s.state not in {"up", "external"} for s in statuses):
        raise typer.Exit(1)


@app.command()
@friendly
def status(
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Refresh until Ctrl-C.")] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=0.5, help="Seconds between snapshots (--watch).")
    ] = 2.0,
    record: Annotated[
        bool, typer.Option("--record", help="Write each snapshot to InfluxDB (`pipeline`).")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No screen (for --record).")] = False,
    bucket: Annotated[
        str | None, typer.Option(help="Bucket for --record (default IOTPIPE_INFLUX_BUCKET).")
    ] = None,
    count: Annotated[
        int | None, typer.Option(min=1, help="Stop --watch after this many snapshots.")
    ] = None,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """The whole pipeline: services, throughput, topics and lag, dead letters, alerts."""
    from ops.status import run_status

    run_status(
        _settings(config),
        console=console,
        watch=watch,
        interval_s=interval,
        as_json=as_json,
        record=record,
        quiet=quiet,
        bucket=bucket,
        count=count,
    )


@stack_app.command("logs")
@friendly
def stack_logs(
    service: Annotated[str, typer.Argument(help="mosquitto, kafka or influxdb.")],
    lines: Annotated[int, typer.Option("--lines", "-n")] = 50,
    config: ConfigOption = None,
) -> None:
    """Show the last lines of a service's output."""
    (svc,) = Stack(_settings(config)).select([service])
    print(svc.process.tail(lines))


@topics_app.command("create")
@friendly
def topics_create(config: ConfigOption = None) -> None:
    """Create every pipeline topic that does not exist (idempotent)."""
    created = Stack(_settings(config)).create_topics()
    console.print(f"created: {', '.join(created) if created else 'nothing (all exist)'}")


@topics_app.command("list")
@friendly
def topics_list(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Topics on the broker with their partition counts."""
    meta = broker_metadata(_settings(config).kafka)
    visible = {k: v for k, v in sorted(meta.items()) if not k.startswith("__")}
    if as_json:
        print(json.dumps(visible))
        return
    for name, partitions in visible.items():
        console.print(f"{name}\t{partitions}")


@config_app.command("show")
@friendly
def config_show(config: ConfigOption = None) -> None:
    """Print the effective settings as JSON (secrets masked)."""
    print(_settings(config).model_dump_json(indent=2))


@config_app.command("sample")
def config_sample() -> None:
    """Print a commented sample config file with every setting and its default."""
    print(render_sample_env(), end="")


@config_app.command("variables")
def config_variables() -> None:
    """List every IOTPIPE_* variable."""
    for name in sorted(known_variables()):
        print(name)


@app.command()
@friendly
def sensors(config: ConfigOption = None) -> None:
    """The sensor-type catalogue in use."""
    catalogue = load_catalogue(_settings(config).core.sensors_file)
    table = Table("type", "unit", "range", "warning", "critical", "priority")
    for t in catalogue.types.values():
        table.add_row(t.name, t.unit, str(t.range), str(t.warning), str(t.critical), t.priority)
    console.print(table)


@app.command()
@friendly
def check(
    topic: Annotated[str, typer.Argument(help="MQTT topic, e.g. sensors/plant-a/gas/dev-1.")],
    payload: Annotated[str, typer.Argument(help="Payload text; '-' reads stdin.")],
    config: ConfigOption = None,
) -> None:
    """Validate one MQTT payload as the ingester would; exit 1 if anything is refused."""
    settings = _settings(config)
    data = sys.stdin.buffer.read() if payload == "-" else payload.encode()
    decoder = ReadingDecoder(load_catalogue(settings.core.sensors_file), settings.validation)
    try:
        ctx = parse_mqtt_reading_topic(topic)
    except TopicError as exc:
        print(f"refused: bad_topic: {exc}")
        raise typer.Exit(1) from None
    result = decoder.decode(data, ctx)
    for reading in result.readings:
        print("ok: " + encode(reading).decode())
    for rej in result.rejections:
        where = f" [item {rej.index}]" if rej.index is not None else ""
        print(f"refused{where}: {rej.reason.value}: {rej.detail}")
    if result.rejections:
        raise typer.Exit(1)


@app.command()
@friendly
def dashboard(
    host: Annotated[str | None, setting_option(DashboardSettings, "host")] = None,
    port: Annotated[int | None, setting_option(DashboardSettings, "port")] = None,
    config: ConfigOption = None,
) -> None:
    """Web dashboard: fleet overview, live alerts, device drill-down, pipeline health."""
    import uvicorn

    from dashboard import create_app
    from ops.health import HealthCollector

    settings = _override(_settings(config), "dashboard", host=host, port=port)
    _setup_logging(settings)
    web = settings.dashboard
    console.print(f"dashboard on http://{web.host}:{web.port}/ (Ctrl-C to stop)")
    uvicorn.run(
        create_app(settings, HealthCollector), host=web.host, port=web.port, log_level="warning"
    )


@app.command()
@friendly
def demo(
    devices: Annotated[int | None, setting_option(DemoSettings, "devices")] = None,
    rate: Annotated[float | None, setting_option(DemoSettings, "rate")] = None,
    duration: Annotated[
        float | None, setting_option(DemoSettings, "duration_s", "--duration")
    ] = None,
    anomaly_rate: Annotated[float | None, setting_option(DemoSettings, "anomaly_rate")] = None,
    workdir: Annotated[
        Path | None, typer.Option(help="Logs, recovery, summaries (default <state_dir>/demo).")
    ] = None,
    keep_topics: Annotated[
        bool, typer.Option(help="Keep the run's own Kafka topics (demo-<run>.*) afterwards.")
    ] = False,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """The whole pipeline, supervised, with a loss-checked summary; exit 1 on loss."""
    from ops.demo.run import DemoOptions, run_demo

    settings = _override(
        _settings(config),
        "demo",
        devices=devices,
        rate=rate,
        duration_s=duration,
        anomaly_rate=anomaly_rate,
    )
    d = settings.demo
    options = DemoOptions(
        d.devices,
        d.rate,
        d.duration_s,
        d.anomaly_rate,
        workdir=workdir,
        config_file=config,
        keep_topics=keep_topics,
    )
    summary = run_demo(settings, options, err_console, live=not as_json)
    if as_json:
        print(json.dumps(summary.to_dict()))
    else:
        summary.render(console)
    if not summary.ok:
        raise typer.Exit(1)


@app.command()
def bench(
    quick: Annotated[bool, typer.Option("--quick", help="Small sizes, under 3 minutes.")] = False,
    full: Annotated[bool, typer.Option("--full", help="Full sizes, fixed rates, a ramp.")] = False,
    repeat: Annotated[int, typer.Option(min=1, help="Runs per part; medians and ranges.")] = 1,
    only: Annotated[str, typer.Option(help="Parts: stage,peers,e2e,scaling.")] = (
        "stage,peers,e2e,scaling"
    ),
    out: Annotated[Path, typer.Option(help="Results directory.")] = Path("bench/results"),
) -> None:
    """Benchmark suite against the running stack: JSON, Markdown report and plots."""
    from bench.suite import bench as run_bench  # heavy imports only for this command

    if quick and full:
        raise typer.BadParameter("choose --quick or --full")
    command = " ".join(sys.argv[1:]) if sys.argv[1:] else "bench"
    run_bench(full, repeat, only, out, f"iotpipe {command}")


def main() -> None:
    # `kill -USR1 <pid>` prints every thread's stack to stderr: how to see where a
    # process that will not stop is waiting, without stopping it.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    app()
