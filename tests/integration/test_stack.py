"""`iotpipe stack` against the real services: idempotent up, honest status."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ops.stack import Stack


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ops", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=180,
    )


def states(out: str) -> dict[str, str]:
    return {s["name"]: s["state"] for s in json.loads(out)}


def test_status_reports_every_service_healthy(stack: Stack) -> None:
    done = cli("stack", "status", "--json")
    assert done.returncode == 0, done.stderr
    assert set(states(done.stdout).values()) <= {"up", "external"}
    assert set(states(done.stdout)) == {"mosquitto", "kafka", "influxdb"}


def test_up_twice_is_a_no_op(stack: Stack) -> None:
    before = {s.name: s.pid for s in stack.status()}
    done = cli("stack", "up", "--json")
    assert done.returncode == 0, done.stderr
    assert {s["name"]: s["pid"] for s in json.loads(done.stdout)} == before


def test_status_reports_a_stopped_service_as_down(stack: Stack) -> None:
    mosquitto = stack.services["mosquitto"]
    if mosquitto.status().state == "external":
        pytest.skip("mosquitto is not ours to stop")
    try:
        assert cli("stack", "down", "mosquitto").returncode == 0
        done = cli("stack", "status", "--json")
        assert done.returncode == 1
        assert states(done.stdout) == {
            "mosquitto": "down",
            "kafka": states(done.stdout)["kafka"],
            "influxdb": states(done.stdout)["influxdb"],
        }
        assert states(done.stdout)["kafka"] in {"up", "external"}
    finally:
        assert cli("stack", "up", "mosquitto").returncode == 0
    assert mosquitto.status().state == "up"


def test_logs_show_service_output(stack: Stack) -> None:
    done = cli("stack", "logs", "kafka", "-n", "5")
    assert done.returncode == 0
    bad = cli("stack", "logs", "postgres")
    assert bad.returncode == 1 and bad.stderr.startswith("Error:") and "Traceback" not in bad.stderr
