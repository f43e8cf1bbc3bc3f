"""``iotpipe devices add|remove|list``: who may publish to the local Mosquitto.

A device's account is its device id; with ``IOTPIPE_MQTT_BROKER_AUTH`` it may
publish only under its own ``sensors/<site>/<type>/<device_id>`` (see
``ops/stack/mqtt_auth.py``). The password is printed once, to stdout only, and
stored only as a hash; a running broker of ours rereads its accounts at once.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

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

DeviceArg = Annotated[str, typer.Argument(help="The device id (its MQTT username).")]


def _reload(stack: Stack) -> str:
    if not stack.mosquitto.auth:
        return "enforced once IOTPIPE_MQTT_BROKER_AUTH=true"
    return "broker reloaded" if stack.mosquitto.reload_auth() else "applies on next start"


@devices_app.command("add")
@friendly
def devices_add(device_id: DeviceArg, config: ConfigOption = None) -> None:
    """Create a device account (or reset its password) and print the password once."""
    stack = Stack(_settings(config))
    password = stack.mosquitto.devices.add(device_id)
    print(password)
    err_console.print(
        f"[green]device {device_id}[/]: may publish sensors/<site>/<type>/{device_id} "
        f"({_reload(stack)}); the password above is not stored in clear anywhere",
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
