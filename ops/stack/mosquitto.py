"""Mosquitto from Debian's package, with the project's config and rendered accounts."""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from iotpipe.credentials import LocalCredentials, mqtt_account, write_private
from iotpipe.errors import StackError
from ops.stack.base import Service
from ops.stack.mqtt_auth import ACL, DeviceRegistry, render_password_file
from ops.stack.system import ensure_debian_packages

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"


class Mosquitto(Service):
    name = "mosquitto"
    start_timeout_s = 20.0

    def __init__(
        self,
        state_dir: Path,
        host: str,
        port: int,
        credentials: LocalCredentials,
        auth: bool = False,
    ) -> None:
        super().__init__(state_dir, host, port)
        self.credentials = credentials
        self.auth = auth
        self.devices = DeviceRegistry(self.home / "devices.passwd")

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
            .replace("@AUTH@", self._auth_directives())
        )
        self.config_file.write_text(rendered)
        self.write_auth()

    def _auth_directives(self) -> str:
        if not self.auth:
            return "allow_anonymous true"
        return (
            f"allow_anonymous false\npassword_file {self.home / 'passwd'}\n"
            f"acl_file {self.home / 'acl'}"
        )

    def write_auth(self) -> None:
        """Render the password file and ACL from the credentials and device accounts."""
        self.home.mkdir(parents=True, exist_ok=True)
        write_private(self.home / "passwd", render_password_file(self.credentials, self.devices))
        write_private(self.home / "acl", ACL)

    def reload_auth(self) -> bool:
        """Re-render and SIGHUP our broker (it rereads both files); False if not ours.

        Only with ``auth``: a reload re-checks every session, and Mosquitto 2.0.11
        drops the offline ones restored from disk (no password to check).
        """
        self.prepare()
        pid = self.process.pid()
        if pid is None or not self.auth:
            return False
        os.kill(pid, signal.SIGHUP)
        return True

    def command(self) -> list[str]:
        return [self._binary(), "-c", str(self.config_file)]

    def probe(self) -> str:
        """A real MQTT CONNECT/CONNACK handshake, authenticated as the admin account."""
        connected = threading.Event()
        answer: list[Any] = []
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", clean_session=True)
        client.username_pw_set(
            mqtt_account("admin"), self.credentials.mqtt_password("admin").get_secret_value()
        )

        def on_connect(*args: Any) -> None:
            answer.append(args[3])  # the reason code
            connected.set()

        client.on_connect = on_connect
        client.connect(self.host, self.port, keepalive=5)
        client.loop_start()
        try:
            if not connected.wait(3.0):
                raise StackError("no CONNACK within 3 s")
        finally:
            client.disconnect()
            client.loop_stop()
        if answer[0].is_failure:
            raise StackError(f"CONNACK refused the admin account: {answer[0]}")
        return "CONNACK ok, accounts enforced" if self.auth else "CONNACK ok (anonymous allowed)"
