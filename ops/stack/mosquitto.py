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

from iotpipe.credentials import LocalCredentials, local_ca_file, mqtt_account, write_private
from iotpipe.errors import StackError
from ops.stack.base import Service
from ops.stack.mqtt_auth import DeviceRegistry, render_acl, render_password_file
from ops.stack.system import ensure_debian_packages
from ops.stack.tls import ensure_server_tls

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
        auth: bool = True,
        tls_port: int = 0,
        cert_port: int = 0,
    ) -> None:
        super().__init__(state_dir, host, port)
        self.credentials = credentials
        self.auth = auth
        self.tls_port = tls_port
        self.cert_port = cert_port
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
            .replace("@TLS@", self._tls_directives())
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

    def _tls_directives(self) -> str:
        if not (self.tls_port or self.cert_port):
            return ""
        files = ensure_server_tls(self.state_dir, self.host)
        certs = f"cafile {files.ca_cert}\ncertfile {files.server_cert}\nkeyfile {files.server_key}"
        blocks = []
        if self.tls_port:
            blocks.append(f"listener {self.tls_port} {self.host}\n{certs}\ntls_version tlsv1.2")
        if self.cert_port:
            blocks.append(
                f"listener {self.cert_port} {self.host}\n{certs}\ntls_version tlsv1.2\n"
                "require_certificate true\nuse_identity_as_username true"
            )
        return "\n".join(blocks)

    def write_auth(self) -> None:
        """Render the password file and ACL from the credentials and device accounts."""
        self.home.mkdir(parents=True, exist_ok=True)
        write_private(self.home / "passwd", render_password_file(self.credentials, self.devices))
        write_private(self.home / "acl", render_acl(self.devices))

    def reload_auth(self) -> bool:
        """Re-render and SIGHUP our broker (it rereads both files); False if not ours.

        Only with ``auth``: an anonymous broker has nothing to reread.
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
        """Real MQTT CONNECT/CONNACK handshakes as the admin account, over TLS too."""
        self._connack(self.port, tls=False)
        said = "CONNACK ok, accounts enforced" if self.auth else "CONNACK ok (anonymous allowed)"
        if self.tls_port:
            self._connack(self.tls_port, tls=True)
            said += f"; TLS on {self.tls_port}"
        return said

    def _connack(self, port: int, tls: bool) -> None:
        connected = threading.Event()
        answer: list[Any] = []
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", clean_session=True)
        client.username_pw_set(
            mqtt_account("admin"), self.credentials.mqtt_password("admin").get_secret_value()
        )
        if tls:
            client.tls_set(ca_certs=str(local_ca_file(self.state_dir)))

        def on_connect(*args: Any) -> None:
            answer.append(args[3])  # the reason code
            connected.set()

        client.on_connect = on_connect
        try:
            client.connect(self.host, port, keepalive=5)
        except OSError as exc:  # ssl.SSLError included
            raise StackError(f"port {port}: {exc}") from exc
        client.loop_start()
        try:
            if not connected.wait(3.0):
                raise StackError(f"port {port}: no CONNACK within 3 s")
        finally:
            client.disconnect()
            client.loop_stop()
        if answer[0].is_failure:
            raise StackError(f"port {port}: CONNACK refused the admin account: {answer[0]}")
