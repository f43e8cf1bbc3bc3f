"""The CLI without servers: errors are one line, `check` judges payloads."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from cryptography import x509
from typer.testing import CliRunner

from iotpipe.credentials import local_ca_file
from ops.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("IOTPIPE_"):
            monkeypatch.delenv(name)


def test_bad_setting_is_one_line_error_not_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOTPIPE_KAFKA_PARTITIONS", "lots")
    result = runner.invoke(app, ["config", "show"])
    assert result.exit_code == 1
    assert "Error:" in result.output and "IOTPIPE_KAFKA_PARTITIONS" in result.output
    assert "Traceback" not in result.output


def test_config_show_masks_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOTPIPE_INFLUX_TOKEN", "hunter2-secret")
    result = runner.invoke(app, ["config", "show"])
    assert result.exit_code == 0
    assert "hunter2" not in result.output
    assert json.loads(result.output)["kafka"]["partitions"] == 4


def test_check_accepts_and_refuses_like_the_ingester() -> None:
    now = int(time.time() * 1000)
    ok = runner.invoke(app, ["check", "sensors/plant-a/gas/dev-1", f'{{"ts": {now}, "value": 3}}'])
    assert ok.exit_code == 0 and '"device_id":"dev-1"' in ok.output
    bad = runner.invoke(
        app, ["check", "sensors/plant-a/gas/dev-1", f'[{{"ts": {now}, "value": 3}}, {{"ts": 1}}]']
    )
    assert bad.exit_code == 1
    assert "refused [item 1]: missing_field" in bad.output
    topic = runner.invoke(app, ["check", "devices/x", "{}"])
    assert topic.exit_code == 1 and "bad_topic" in topic.output


def test_every_option_shows_its_environment_variable() -> None:
    result = runner.invoke(app, ["stack", "up", "--help"])
    assert "IOTPIPE_CONFIG_FILE" in result.output


def test_variables_lists_every_setting() -> None:
    result = runner.invoke(app, ["config", "variables"])
    assert "IOTPIPE_KAFKA_BOOTSTRAP_SERVERS" in result.output.split()


def test_devices_add_with_cert_issues_a_certificate_from_the_stacks_ca(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No broker running: the account and certificate are made, and apply on its next start."""
    monkeypatch.setenv("IOTPIPE_STATE_DIR", str(tmp_path / "state"))
    out = tmp_path / "certs"
    result = runner.invoke(app, ["devices", "add", "pump-9", "--cert", str(out)])
    assert result.exit_code == 0, result.output
    assert "applies on next start" in result.output
    cert = x509.load_pem_x509_certificate((out / "pump-9.crt").read_bytes())
    ca = x509.load_pem_x509_certificate(local_ca_file(tmp_path / "state").read_bytes())
    cert.verify_directly_issued_by(ca)
    assert (out / "pump-9.key").stat().st_mode & 0o077 == 0
    listed = runner.invoke(app, ["devices", "list", "--json"])
    assert json.loads(listed.output.splitlines()[-1]) == ["pump-9"]
    refused = runner.invoke(app, ["devices", "add", "iotpipe-admin", "--cert", str(out)])
    assert refused.exit_code == 1 and not (out / "iotpipe-admin.crt").exists()
