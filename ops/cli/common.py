"""What every ``iotpipe`` command shares: the command groups, the console, errors as
``Error: ...`` with exit status 1, the config option, settings and logging set-up."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from iotpipe.credentials import InfluxAccess, Role
from iotpipe.errors import IotpipeError
from iotpipe.options import override
from iotpipe.settings import (
    CONFIG_FILE_VAR,
    Settings,
    load_settings,
)
from simulators.cli import simulate

app = typer.Typer(help="IoT stream-processing pipeline.", no_args_is_help=True)
stack_app = typer.Typer(help="Run the local Mosquitto, Kafka and InfluxDB.", no_args_is_help=True)
topics_app = typer.Typer(help="Kafka topics of the pipeline.", no_args_is_help=True)
config_app = typer.Typer(help="Inspect the settings.", no_args_is_help=True)
dlq_app = typer.Typer(help="Inspect and replay dead-lettered input.", no_args_is_help=True)
flow_app = typer.Typer(help="Bytewax dataflows.", no_args_is_help=True)
devices_app = typer.Typer(
    help="Device accounts on the local Mosquitto (one per device id).", no_args_is_help=True
)
for group, name in (
    (stack_app, "stack"),
    (topics_app, "topics"),
    (config_app, "config"),
    (dlq_app, "dlq"),
    (flow_app, "flow"),
    (devices_app, "devices"),
):
    app.add_typer(group, name=name)
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


def _settings(
    config: Path | None, role: Role = "admin", influx: InfluxAccess | None = None
) -> Settings:
    """Settings for a command; a stage connects with its own account (least privilege)."""
    return load_settings(config, role, influx)


def _override(settings: Settings, component: str, **values: Any) -> Settings:
    """Apply command-line options over one settings component, validated again."""
    flags = {"duration_s": "--duration"}
    updated = override(getattr(settings, component), values, flags)
    return settings.model_copy(update={component: updated})


def _setup_logging(settings: Settings) -> None:
    import logging

    logging.basicConfig(
        level=settings.core.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
