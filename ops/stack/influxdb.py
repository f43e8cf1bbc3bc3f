"""InfluxDB 2.7 (v2 HTTP API), built once from its Go module and cached.

``deploy/influxdb/build.sh`` builds ``influxd`` (Go + the Rust Flux engine)
into the state directory. On first start the org, bucket and token (generated,
see ``iotpipe.credentials``) are created through the ``/api/v2/setup``
onboarding endpoint, so influxdb-client talks to it exactly as to a
production InfluxDB 2.x.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from iotpipe.errors import StackError
from iotpipe.settings import InfluxSettings
from ops.stack.base import Service

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "influxdb"
SETUP_USER = "iotpipe"


class InfluxDB(Service):
    name = "influxdb"
    start_timeout_s = 60.0

    def __init__(
        self, state_dir: Path, host: str, port: int, settings: InfluxSettings, password: str
    ) -> None:
        super().__init__(state_dir, host, port)
        self.settings = settings
        self._password = password  # generated on first start, like the token

    @property
    def binary(self) -> Path:
        return self.home / "bin" / "influxd"

    def install(self) -> None:
        if self.binary.exists():
            return
        done = subprocess.run(
            ["bash", str(DEPLOY / "build.sh"), str(self.binary.parent)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0 or not self.binary.exists():
            output = (done.stdout + done.stderr)[-3000:]
            raise StackError(f"building influxd failed ({done.returncode}):\n{output}")

    def command(self) -> list[str]:
        data = self.home / "data"
        return [
            str(self.binary),
            f"--bolt-path={data / 'influxd.bolt'}",
            f"--engine-path={data / 'engine'}",
            f"--sqlite-path={data / 'influxd.sqlite'}",
            f"--http-bind-address={self.host}:{self.port}",
        ]

    def environment(self) -> dict[str, str]:
        return {"INFLUXD_CONFIG_PATH": str(DEPLOY / "config.toml")}

    def probe(self) -> str:
        health = self._request("GET", "/health")
        if health.get("status") != "pass":
            raise StackError(f"/health says {health}")
        return f"InfluxDB {health.get('version', '?')}: {health.get('message', 'ready')}"

    def after_start(self) -> None:
        """Onboard once: create the org, bucket and token named in the settings."""
        if not self._request("GET", "/api/v2/setup").get("allowed"):
            self._check_token()
            return
        self._request(
            "POST",
            "/api/v2/setup",
            {
                "username": SETUP_USER,
                "password": self._password,
                "org": self.settings.org,
                "bucket": self.settings.bucket,
                "token": self.settings.token.get_secret_value(),
                "retentionPeriodSeconds": 0,
            },
        )

    def _check_token(self) -> None:
        """An instance onboarded earlier must accept the token the clients will use."""
        try:
            self._request("GET", "/api/v2/orgs", token=self.settings.token.get_secret_value())
        except StackError as exc:
            raise StackError(
                f"InfluxDB in {self.home / 'data'} was onboarded with another token ({exc}); "
                "set IOTPIPE_INFLUX_TOKEN to that token, or remove that directory to "
                "start afresh with the generated one"
            ) from exc

    def _request(
        self, method: str, path: str, body: dict[str, Any] | None = None, token: str = ""
    ) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            f"http://{self.address}{path}",
            data=data,
            method=method,
            headers={
                "Content-Type": "application/json",
                **({"Authorization": f"Token {token}"} if token else {}),
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=3) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise StackError(f"{method} {path}: HTTP {exc.code} {exc.read()[:300]!r}") from exc
