"""``iotpipe simulate``: the device fleet simulator's command line.

Every option also reads the ``IOTPIPE_SIM_*`` variable shown in ``--help``
(the same fields as ``SimulatorSettings``, so a config file works too). Known
errors print ``Error: ...`` and exit 1; Ctrl-C stops cleanly with a summary.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from iotpipe.catalogue import Catalogue, load_catalogue
from iotpipe.durations import parse_moment
from iotpipe.errors import ConfigError, IotpipeError
from iotpipe.options import override, settings_options
from iotpipe.settings import CONFIG_FILE_VAR, Settings, SimulatorSettings, load_settings
from iotpipe.signals import stop_on_signals
from simulators.anomalies import AnomalyConfig, parse_mix
from simulators.faults import FaultConfig, FaultInjector
from simulators.fleet import Fleet, FleetConfig
from simulators.kafka import KafkaOutput
from simulators.mqtt import MqttOutput
from simulators.names import Naming, site_names
from simulators.outputs import JsonLinesOutput, NullOutput, Output
from simulators.payloads import PayloadEncoder
from simulators.replay import ReplaySource
from simulators.runner import RunConfig, Simulation, Source, Summary
from simulators.truth import TruthWriter

DEFAULT_BACKDATE_S = 86_400.0
# Options whose flag is not --field-name; every SimulatorSettings field is an option.
_FLAGS: dict[str, tuple[str, ...]] = {
    "devices": ("--devices", "-n"),
    "interval_s": ("--interval",),
    "duration_s": ("--duration",),
    "output": ("--output", "-o"),
    "with_unit": ("--with-unit/--no-unit",),
    "late_delay_s": ("--late-delay",),
    "skew_max_s": ("--skew-max",),
    "storm_every_s": ("--storm-every",),
}

AsJson = Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")]
SummaryFile = Annotated[
    Path | None,
    typer.Option(
        "--summary-file",
        help="Also write the summary as JSON here (replaced atomically), for supervisors.",
    ),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
Config = Annotated[
    Path | None,
    typer.Option("--config", "-c", envvar=CONFIG_FILE_VAR, help="dotenv file of settings."),
]

_err = Console(stderr=True)


@settings_options(SimulatorSettings, _FLAGS)
def simulate(
    options: dict[str, Any],
    as_json: AsJson = False,
    quiet: Quiet = False,
    summary_file: SummaryFile = None,
    config: Config = None,
) -> None:
    """Simulate a device fleet (or replay a series) into MQTT, Kafka or a file."""
    try:
        settings = load_settings(config, role="fleet")
        sim = merge_options(settings.sim, options)
        summary = run_simulation(settings, sim, progress=not (quiet or as_json))
    except IotpipeError as exc:
        _err.print(f"[bold red]Error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from None
    print_summary(summary, as_json)
    if summary_file is not None:
        try:
            write_summary(summary, summary_file)
        except OSError as exc:
            _err.print(f"[bold red]Error:[/] --summary-file: {escape(str(exc))}", highlight=False)
            raise typer.Exit(1) from None
    if summary.interrupted:
        raise typer.Exit(130)


def merge_options(base: SimulatorSettings, overrides: dict[str, Any]) -> SimulatorSettings:
    """Command-line values over the settings, validated; errors name the option."""
    return override(base, overrides, {k: v[0].split("/")[0] for k, v in _FLAGS.items()})


def parse_start(text: str, now_ms: int, span_s: float | None, realtime: bool) -> int:
    """Simulated start in epoch ms. ``auto``: now in real time; otherwise so that the
    run ends about now (event times must not run ahead of the ingester's bounds)."""
    text = text.strip()
    if text == "auto":
        if realtime:
            return now_ms
        return now_ms - int((span_s if span_s is not None else DEFAULT_BACKDATE_S) * 1000)
    if text == "now":
        return now_ms
    try:
        return parse_moment(text, now_ms, bare_is_past=False)
    except ValueError as exc:
        raise ConfigError(f"--start: {exc} (or auto, now)") from None


def build_source(sim: SimulatorSettings, catalogue: Catalogue, now_ms: int) -> Source:
    """The fleet, or the replay if ``--replay`` names a file."""
    realtime = sim.speed == 1.0 and sim.rate == 0
    sites = site_names(sim.sites, sim.site_prefix)
    if sim.replay is not None:
        if not sim.replay_type:
            raise ConfigError("--replay needs --replay-type (the series' sensor type)")
        probe = ReplaySource(sim.replay, catalogue, sensor_type=sim.replay_type,
                             devices=sim.replay_devices, sites=sites[:1])  # fmt: skip
        start = parse_start(sim.start, now_ms, probe.span_s, realtime)
        return ReplaySource(
            sim.replay, catalogue, sensor_type=sim.replay_type, devices=sim.replay_devices,
            sites=sites[: sim.replay_devices], device_prefix=sim.device_prefix, start_ms=start,
        )  # fmt: skip
    types = tuple(t.strip() for t in sim.types.split(",") if t.strip())
    anomalies = AnomalyConfig(
        rate=sim.anomaly_rate, weights=parse_mix(sim.anomaly_mix),
        min_length=sim.anomaly_min_len, max_length=sim.anomaly_max_len,
    )  # fmt: skip
    fleet_config = FleetConfig(
        devices=sim.devices, types=types, sites=sites, device_prefix=sim.device_prefix,
        interval_s=sim.interval_s, interval_spread=sim.interval_spread, jitter=sim.jitter,
        seed=sim.seed, anomalies=anomalies, skew_fraction=sim.fault_skew,
        skew_max_s=sim.skew_max_s,
    )  # fmt: skip
    span = None
    if sim.count:
        mean_rate = sim.devices / sim.interval_s
        span = sim.count / mean_rate
    elif sim.duration_s and sim.speed > 0:
        span = sim.duration_s * sim.speed
    start = parse_start(sim.start, now_ms, span, realtime)
    return Fleet(FleetConfig(**{**fleet_config.__dict__, "start_ms": start}), catalogue)


def build_output(settings: Settings, sim: SimulatorSettings, naming: Naming) -> Output:
    by_type = sim.gateway_topic == "type"
    if sim.output == "mqtt":
        return MqttOutput(
            settings.mqtt, naming, qos=sim.qos, connections=sim.connections,
            batch_size=sim.batch_size, by_type=by_type,
            client_id=f"sim-{sim.seed}-{time.time_ns() % 10**9}",
            max_pending=sim.max_pending,
        )  # fmt: skip
    if sim.batch_size > 1 and sim.output in ("kafka", "null"):
        raise ConfigError(f"--batch-size applies to MQTT and file output, not {sim.output}")
    if sim.storm_every_s:
        raise ConfigError("--storm-every needs --output mqtt (storms are MQTT connections)")
    if sim.output == "kafka":
        return KafkaOutput(settings.kafka, naming)
    if sim.output == "file":
        if sim.file is None:
            raise ConfigError("--output file needs --file PATH")
        return JsonLinesOutput(sim.file, naming, batch_size=sim.batch_size, by_type=by_type)
    if sim.output == "stdout":
        return JsonLinesOutput(None, naming, batch_size=sim.batch_size, by_type=by_type)
    return NullOutput()


def run_simulation(settings: Settings, sim: SimulatorSettings, *, progress: bool = True) -> Summary:
    """Everything `iotpipe simulate` does, minus printing: build, run, summarise."""
    catalogue = load_catalogue(settings.core.sensors_file)
    if sim.anomaly_min_len > sim.anomaly_max_len:
        raise ConfigError("--anomaly-min-len must not exceed --anomaly-max-len")
    now_ms = int(time.time() * 1000)
    source = build_source(sim, catalogue, now_ms)
    faults = FaultConfig(
        late=sim.fault_late, late_delay_s=sim.late_delay_s, duplicate=sim.fault_duplicate,
        malformed=sim.fault_malformed, oversized=sim.fault_oversized,
        oversize_bytes=sim.oversize_bytes,
    )  # fmt: skip
    run = RunConfig(
        start_ms=source.start_ms,
        speed=sim.speed, rate=sim.rate, count=sim.count, duration_s=sim.duration_s,
        storm_every_s=sim.storm_every_s, storm_size=sim.storm_size,
        progress=progress and (sim.output != "stdout"),
    )  # fmt: skip
    output = build_output(settings, sim, source.naming)
    encoder = PayloadEncoder(source.naming, catalogue, with_unit=sim.with_unit)
    truth = TruthWriter(sim.truth, source.naming)
    simulation = Simulation(
        source, encoder, output, run,
        faults=FaultInjector(faults, sim.seed) if faults.any else None, truth=truth,
    )  # fmt: skip
    with stop_on_signals(simulation.stop):
        return simulation.run()


def write_summary(summary: Summary, path: Path) -> None:
    """Whole or not at all: a reader never sees half a summary."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(summary.as_dict()) + "\n")
    os.replace(tmp, path)


def print_summary(summary: Summary, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary.as_dict()))
        return
    table = Table("", "", title="simulation summary", show_header=False)
    for key, value in summary.as_dict().items():
        text = str(value)
        if key == "labels":
            text = ", ".join(f"{k} {v}" for k, v in value.items()) or "none"
        elif isinstance(value, float):
            text = f"{value:,.3f}" if key == "duration_s" else f"{value:,.1f}"
        elif isinstance(value, int) and not isinstance(value, bool):
            text = f"{value:,}"
        table.add_row(key, text)
    _err.print(table)
