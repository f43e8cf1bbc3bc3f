"""``iotpipe dlq``: look into dead-lettered input and replay it after a fix-up."""

from __future__ import annotations

import json
import time
from typing import Annotated

import msgspec
import typer
from rich.table import Table

from ingest.dlq import DlqFilter, inspect, make_fixup, read_dead_letters, replay
from iotpipe.catalogue import load_catalogue
from iotpipe.durations import parse_moment
from iotpipe.errors import ConfigError
from ops.cli.common import (
    ConfigOption,
    JsonOption,
    _settings,
    console,
    dlq_app,
    friendly,
)

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
