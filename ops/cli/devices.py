"""``iotpipe devices add|remove|list``: who may publish to the local Mosquitto.

A device's account is its device id; it may publish only under its own
``sensors/<site>/<type>/<device_id>`` (see ``ops/stack/mqtt_auth.py``). The
password is printed once, to stdout only, and stored only as a hash; a running
broker of ours rereads its accounts at once. ``--cert`` also issues a client
certificate from the stack's CA (``ops/stack/tls.py``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from iotpipe.credentials import local_ca_file
from ops.cli.common import (
    ConfigOption,
    JsonOption,
    _settings,
    console,
    devices_app,
    err_console,
    friendly,
)
from ops.stack import Stack
from ops.stack.tls import issue_device_cert

DeviceArg = Annotated[str, typer.Argument(help="The device id (its MQTT username).")]


def _reload(stack: Stack) -> str:
    if not stack.mosquitto.auth:
        return "not enforced: IOTPIPE_MQTT_BROKER_AUTH=false"
    return "broker reloaded" if stack.mosquitto.reload_auth() else "applies on next start"


@devices_app.command("add")
@friendly
def devices_add(
    device_id: DeviceArg,
    cert: Annotated[
        Path | None,
        typer.Option(
            help="Also write ID.key and ID.crt here: a client certificate from the stack's"
            " CA for the certificate listener (IOTPIPE_MQTT_BROKER_CERT_PORT).",
            file_okay=False,
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Create a device account (or reset its password) and print the password once."""
    stack = Stack(_settings(config))
    password = stack.mosquitto.devices.add(device_id)
    print(password)
    err_console.print(
        f"[green]device {device_id}[/]: may publish sensors/<site>/<type>/{device_id} "
        f"({_reload(stack)}); the password above is not stored in clear anywhere",
        highlight=False,
    )
    if cert is not None:
        cert.mkdir(parents=True, exist_ok=True)
        key_file, cert_file = issue_device_cert(stack.mosquitto.state_dir, device_id, cert)
        ca = local_ca_file(stack.mosquitto.state_dir)
        err_console.print(
            f"client certificate {cert_file}, key {key_file} (0600); the broker's CA is {ca}",
            highlight=False,
        )


@devices_app.command("remove")
@friendly
def devices_remove(device_id: DeviceArg, config: ConfigOption = None) -> None:
    """Delete a device account; its new connections are refused."""
    stack = Stack(_settings(config))
    if not stack.mosquitto.devices.remove(device_id):
        raise typer.BadParameter(f"no device account {device_id!r}")
    console.print(f"removed {device_id} ({_reload(stack)})", highlight=False)


@devices_app.command("list")
@friendly
def devices_list(as_json: JsonOption = False, config: ConfigOption = None) -> None:
    """Device accounts (ids only; passwords are stored as hashes)."""
    names = Stack(_settings(config)).mosquitto.devices.list()
    if as_json:
        print(json.dumps(names))
        return
    for name in names:
        print(name)
