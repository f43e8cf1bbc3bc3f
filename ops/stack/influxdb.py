"""InfluxDB 2.7 (v2 HTTP API), built once from its Go module and cached.

``deploy/influxdb/build.sh`` builds ``influxd`` (Go + the Rust Flux engine)
into the state directory. On first start the org, bucket and token (generated,
see ``iotpipe.credentials``) are created through the ``/api/v2/setup``
onboarding endpoint, so influxdb-client talks to it exactly as to a
production InfluxDB 2.x; then the stage tokens (write-only, read-only)
through ``/api/v2/authorizations``.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from iotpipe.credentials import ensure_local_credentials, store_influx_stage_tokens
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

    def ensure_stage_tokens(self) -> bool:
        """A write-only token for the flow's sink and a read-only one for the dashboard.

        InfluxDB makes the token strings, so they are stored in credentials.json
        once made, and made again if the server no longer knows them (a data
        directory started afresh). Scoped to the org's buckets, not one bucket:
        every bucket a flow is pointed at (tests use one each) must work.
        Returns whether new ones were made.
        """
        operator = self.settings.token.get_secret_value()
        known = self._request("GET", "/api/v2/authorizations", token=operator)
        active = {a.get("token") for a in known.get("authorizations", [])}
        local = ensure_local_credentials(self.state_dir)
        if local.influx_write_token in active and local.influx_read_token in active:
            return False
        (org,) = self._request(
            "GET", f"/api/v2/orgs?{urlencode({'org': self.settings.org})}", token=operator
        )["orgs"]
        made = {}
        for access, what in (
            ("write", "flow sink: write points, no reads"),
            ("read", "dashboard: read only"),
        ):
            body = {
                "orgID": org["id"],
                "description": f"iotpipe {what}",
                "permissions": [
                    {"action": access, "resource": {"type": "buckets", "orgID": org["id"]}}
                ],
            }
            made[access] = self._request("POST", "/api/v2/authorizations", body, operator)["token"]
        store_influx_stage_tokens(self.state_dir, made["write"], made["read"])
        return True

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
