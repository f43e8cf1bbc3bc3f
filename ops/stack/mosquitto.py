"""Mosquitto from Debian's package, with the project's config."""

from __future__ import annotations

import getpass
import shutil
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from iotpipe.errors import StackError
from ops.stack.base import Service
from ops.stack.system import ensure_debian_packages

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"


class Mosquitto(Service):
    name = "mosquitto"
    start_timeout_s = 20.0

    @property
    def config_file(self) -> Path:
        return self.home / "mosquitto.conf"

    def install(self) -> None:
        ensure_debian_packages({"mosquitto": "mosquitto", "mosquitto_pub": "mosquitto-clients"})
        self._binary()

    def _binary(self) -> str:
        found = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(found).exists():
            raise StackError("mosquitto is not installed (Debian package 'mosquitto')")
        return found

    def prepare(self) -> None:
        data, logs = self.home / "data", self.home / "log"
        data.mkdir(parents=True, exist_ok=True)
        logs.mkdir(parents=True, exist_ok=True)
        template = (DEPLOY / "mosquitto.conf").read_text()
        rendered = (
            template.replace("@PORT@", str(self.port))
            .replace("@BIND@", self.host)
            .replace("@DATA_DIR@", str(data))
            .replace("@LOG_DIR@", str(logs))
            .replace("@USER@", getpass.getuser())
        )
        self.config_file.write_text(rendered)

    def command(self) -> list[str]:
        return [self._binary(), "-c", str(self.config_file)]

    def probe(self) -> str:
        """A real MQTT CONNECT/CONNACK handshake."""
        connected = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", clean_session=True)
        client.on_connect = lambda *_args: connected.set()
        client.connect(self.host, self.port, keepalive=5)
        client.loop_start()
        try:
            if not connected.wait(3.0):
                raise StackError("no CONNACK within 3 s")
        finally:
            client.disconnect()
            client.loop_stop()
        return "CONNACK ok"
