"""The local stack, topics, settings and the sensor catalogue.

``iotpipe stack|topics|config|sensors|check|version``.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.table import Table

from iotpipe import __version__
from iotpipe.catalogue import load_catalogue
from iotpipe.codec import ReadingDecoder, encode
from iotpipe.connectors.kafka import broker_metadata
from iotpipe.settings import (
    known_variables,
    render_sample_env,
)
from iotpipe.topics import TopicError, parse_mqtt_reading_topic
from ops.cli.common import (
    ConfigOption,
    JsonOption,
    ServicesArg,
    _settings,
    app,
    config_app,
    console,
    friendly,
    stack_app,
    topics_app,
)
from ops.stack import Stack, Status


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
