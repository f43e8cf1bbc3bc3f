"""Running the pipeline.

``iotpipe ingest``, ``flow run``, ``status``, ``dashboard``, ``demo``, ``bench``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from flows.runner import run_flow
from ingest.runner import run_ingester
from iotpipe.options import setting_option
from iotpipe.settings import (
    DashboardSettings,
    DemoSettings,
    FlowSettings,
    IngestSettings,
)
from ops.cli.common import (
    ConfigOption,
    JsonOption,
    _override,
    _settings,
    _setup_logging,
    app,
    console,
    err_console,
    flow_app,
    friendly,
)


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
    settings = _override(
        _settings(config, "ingest"), "ingest", instance=instance, metrics_port=metrics_port
    )
    _setup_logging(settings)
    stats = run_ingester(settings)
    console.print(stats.summary())


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
        _settings(config, "alerts"),
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

    settings = _override(_settings(config, influx="read"), "dashboard", host=host, port=port)
    _setup_logging(settings)
    web = settings.dashboard
    app = create_app(settings, HealthCollector)
    # The one place the token is shown: the login URL, on this terminal only.
    console.print(
        f"dashboard on http://{web.host}:{web.port}/login?token={app.state.token} (Ctrl-C to stop)",
        highlight=False,
    )
    uvicorn.run(app, host=web.host, port=web.port, log_level="warning")


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
    from ops.demo.plan import DemoOptions
    from ops.demo.run import run_demo

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
