"""``iotpipe demo`` end to end: real processes, real Mosquitto, Kafka and InfluxDB.

Each run gets its own Kafka topic prefix and InfluxDB bucket; the demo itself
gives every run fresh sites, device ids and an MQTT session, and moves off
metrics/dashboard ports that are taken, so runs by others do not collide.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from iotpipe.connectors.kafka import broker_metadata, delete_topics
from ops.stack import Stack

DEVICES = 600
RATE = 500.0


@pytest.fixture
def demo_env(stack: Stack, bucket: str, unique: str) -> Iterator[dict[str, str]]:
    prefix = f"t{unique}."
    env = {
        **os.environ,
        "IOTPIPE_KAFKA_TOPIC_PREFIX": prefix,
        "IOTPIPE_INFLUX_BUCKET": bucket,
        "IOTPIPE_FLOW_IDLE_CLOSE_S": "5",  # windows close sooner once input stops
        "IOTPIPE_LOG_LEVEL": "INFO",
    }
    yield env
    kafka = stack.settings.kafka
    mine = [t for t in broker_metadata(kafka) if t.startswith(prefix)]
    if mine:
        delete_topics(kafka, mine)


def _start(env: dict[str, str], workdir: Path, duration: float) -> subprocess.Popen[str]:
    argv = [
        sys.executable, "-m", "ops", "demo", "--devices", str(DEVICES), "--rate", str(RATE),
        "--duration", str(duration), "--anomaly-rate", "0.005", "--workdir", str(workdir),
        "--json",
    ]  # fmt: skip
    return subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _finish(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)  # the demo stops its children
        out, err = proc.communicate(timeout=60)
        raise AssertionError(f"demo did not finish in {timeout} s:\n{err[-3000:]}") from None
    assert out.strip(), f"no summary; exit {proc.returncode}:\n{err[-3000:]}"
    summary: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    summary["_stderr"] = err
    summary["_returncode"] = proc.returncode
    print(out.strip().splitlines()[-1])  # shown with -rP, and on failure
    return summary


def _assert_complete(summary: dict[str, Any], duration: float) -> None:
    loss = summary["loss"]
    detail = json.dumps({k: v for k, v in summary.items() if k != "_stderr"}, indent=1)
    assert loss["lost"] == 0, detail
    assert loss["ok"] and summary["ok"], detail
    assert summary["_returncode"] == 0, summary["_stderr"][-3000:]
    # the simulator really sent about RATE readings/s, and all of them came back
    assert summary["sent"] >= 0.8 * RATE * duration, detail
    assert loss["distinct"] == summary["sent"], detail
    assert summary["ingested"] == loss["received"] >= summary["sent"], detail
    assert loss["devices"] >= 0.98 * DEVICES, detail  # a slow device may not report at all
    assert loss["delivered_fraction"] == 1.0
    # the flows aggregated them into InfluxDB and raised alerts
    assert summary["aggregated"] is not None, detail
    # every distinct reading is in one shortest-window aggregate, or was too late for it
    # (a copy redelivered after a crash is on the topic twice; the flows count it once)
    assert summary["aggregated"] + summary["late"] == loss["distinct"], detail
    assert sum(summary["alerts_by_detector"].values()) > 0, detail
    assert summary["dead_lettered"] == {}, detail
    assert summary["sink_dead_lettered"] == 0, detail


def test_demo_run_reports_no_loss(demo_env: dict[str, str], tmp_path: Path) -> None:
    duration = 25.0
    summary = _finish(_start(demo_env, tmp_path, duration), timeout=150)
    _assert_complete(summary, duration)
    assert summary["loss"]["duplicates"] == 0
    assert summary["late"] == 0
    assert not any(summary["restarts"].values()), summary["crashes"]
    # the summary is also kept next to the logs, one log per component
    saved = json.loads((tmp_path / f"summary-{summary['run_id']}.json").read_text())
    assert saved["loss"] == summary["loss"]
    logs = Path(summary["logs"])
    assert {p.stem for p in logs.glob("*.log")} >= {
        "simulator",
        "ingester",
        "flow-normal",
        "flow-high",
    }


def test_demo_restarts_a_killed_ingester_and_stops_on_ctrl_c_without_loss(
    demo_env: dict[str, str], tmp_path: Path
) -> None:
    proc = _start(demo_env, tmp_path, duration=0)  # until Ctrl-C
    pid_file = tmp_path / "pids.json"
    deadline = time.monotonic() + 120
    pids: dict[str, int] = {}
    while time.monotonic() < deadline and "simulator" not in pids and proc.poll() is None:
        time.sleep(0.5)
        if pid_file.exists():
            pids = json.loads(pid_file.read_text())
    if "simulator" not in pids:
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=120)
        raise AssertionError(f"the demo never started its simulator:\n{err[-3000:]}")
    sending = time.monotonic()
    time.sleep(10)  # mid-run: readings flowing through the ingester
    os.kill(pids["ingester"], signal.SIGKILL)
    time.sleep(15)
    proc.send_signal(signal.SIGINT)  # Ctrl-C: stop in order, drain, summarise
    duration = time.monotonic() - sending
    summary = _finish(proc, timeout=150)
    assert summary["restarts"]["ingester"] >= 1, summary["_stderr"][-3000:]
    assert any(c.startswith("ingester: killed by SIGKILL") for c in summary["crashes"])
    assert "ingester crashed" in summary["_stderr"]
    _assert_complete(summary, duration - 3)  # the simulator needs a moment to start
