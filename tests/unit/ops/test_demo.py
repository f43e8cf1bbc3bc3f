"""The demo's logic without servers: loss check, plan, components, summary parsing."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import msgspec
import pytest

from iotpipe.settings import load_settings
from ops.demo.components import COMPONENTS, SIMULATOR, Component, child_specs, fill
from ops.demo.losscheck import SeqLedger
from ops.demo.metrics import parse
from ops.demo.plan import DemoOptions, free_port, make_plan
from ops.demo.summary import ReadBack, count_alerts, count_reasons, simulator_summaries


def _ledger(per_device: dict[str, list[int]]) -> SeqLedger:
    ledger = SeqLedger()
    for device, seqs in per_device.items():
        for s in seqs:
            ledger.add(device, s)
    return ledger


# -- loss check ---------------------------------------------------------------
def test_every_seq_once_is_no_loss() -> None:
    report = _ledger({"a": [0, 1, 2], "b": [1, 0]}).check(sent=5)
    assert report.ok
    assert (report.lost, report.duplicates, report.distinct) == (0, 0, 5)
    assert report.delivered_fraction == 1.0


def test_duplicates_are_counted_but_are_not_loss() -> None:
    report = _ledger({"a": [0, 1, 1, 2], "b": [0, 0, 0]}).check(sent=4)
    assert report.ok
    assert report.duplicates == 3
    assert report.devices_with_duplicates == 2
    assert report.received == 7


def test_a_gap_is_loss_and_names_the_device() -> None:
    report = _ledger({"a": [0, 1, 4], "b": [0, 1]}).check(sent=7)
    assert not report.ok
    assert report.missing_gaps == 2
    assert report.missing_tail == 0
    assert report.worst_devices == {"a": 2}
    assert report.delivered_fraction == pytest.approx(5 / 7)


def test_readings_lost_at_the_end_show_up_against_the_sent_count() -> None:
    # seq 3 of device a never arrived: no gap, but the total falls short
    report = _ledger({"a": [0, 1, 2], "b": [0, 1]}).check(sent=6)
    assert not report.ok
    assert report.missing_tail == 1
    assert report.lost == 1
    assert f"{report.delivered_fraction:.3%}" == "83.333%"


def test_unknown_sent_count_cannot_pass() -> None:
    report = _ledger({"a": [0, 1]}).check(sent=None)
    assert report.lost == 0
    assert not report.ok


def test_nothing_sent_nothing_received_is_no_loss() -> None:
    report = SeqLedger().check(sent=0)
    assert report.ok and report.delivered_fraction == 1.0


def test_report_as_json() -> None:
    data = _ledger({"a": [0, 2]}).check(sent=3).to_dict()
    assert json.loads(json.dumps(data))["lost"] == 1
    assert data["delivered_fraction"] == pytest.approx(2 / 3, abs=1e-6)


# -- reading back -------------------------------------------------------------
def _reading(device: str, seq: int | None, sensor_type: str = "temperature") -> bytes:
    obj: dict[str, object] = {"device_id": device, "sensor_type": sensor_type, "ts": 1, "value": 1}
    if seq is not None:
        obj["seq"] = seq
    return json.dumps(obj).encode()


def test_read_back_keeps_this_runs_devices_only() -> None:
    back = ReadBack()
    back.add(
        [
            _reading("dabc-1-000001", 0),
            _reading("dabc-1-000001", 1, "humidity"),
            _reading("dxyz-1-000001", 0),  # another run's device
            _reading("dabc-1-000002", None),
        ],
        "dabc-",
    )
    assert back.ingested == 3
    assert back.by_type == {"temperature": 2, "humidity": 1}
    assert back.other_devices == 1
    assert back.without_seq == 1
    assert back.ledger.devices == 1


def test_alerts_and_dead_letters_are_counted() -> None:
    def alert(device: str, detector: str, state: str, ts: int = 100) -> bytes:
        return msgspec.json.encode(
            {"device_id": device, "detector": detector, "state": state, "ts": ts}
        )

    counts = count_alerts(
        [
            alert("dr-1-1", "threshold", "raised"),
            alert("dr-1-1", "threshold", "cleared"),
            alert("dr-1-2", "stuck", "raised"),
            alert("other-1", "stuck", "raised"),
            alert("dr-1-2", "silence", "raised", ts=200),  # after the last reading
        ],
        "dr-",
        cutoff_ms=150,
    )
    assert counts.by_detector == {"threshold": 1, "stuck": 1}
    assert counts.after_stop == {"silence": 1}
    assert counts.by_state == {"raised": 3, "cleared": 1}
    reasons = count_reasons([b'{"reason": "bad_json"}', b'{"reason": "bad_json"}', b"{"])
    assert reasons == {"bad_json": 2, "undecodable": 1}


def test_simulator_summaries_are_read_from_their_files(tmp_path: Path) -> None:
    (tmp_path / "1.json").write_text('{"output": "mqtt", "sent": 10, "failed": 0}')
    (tmp_path / "2.json").write_text('{"output": "mqtt", "sent": 5, "failed": 1, "labels": {}}')
    (tmp_path / "3.json").write_text('{"output": "mqtt", "se')  # cut short
    (tmp_path / "4.json").write_text('{"unrelated": true}')
    paths = [tmp_path / f"{n}.json" for n in range(1, 6)]  # 5.json: killed before writing
    assert [s["sent"] for s in simulator_summaries(paths)] == [10, 5]


def test_prometheus_text_is_summed_over_labels() -> None:
    text = (
        "# TYPE iotpipe_ingest_produced counter\n"
        'iotpipe_ingest_produced_total{sensor_type="a"} 3.0\n'
        'iotpipe_ingest_produced_total{sensor_type="b"} 4.0\n'
        "# TYPE iotpipe_ingest_inflight gauge\n"
        "iotpipe_ingest_inflight 2.0\n"
    )
    samples = parse(text)
    assert samples["iotpipe_ingest_produced_total"] == 7.0
    assert samples["iotpipe_ingest_inflight"] == 2.0


# -- plan and components --------------------------------------------------------
def test_plan_isolates_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IOTPIPE_KAFKA_TOPIC_PREFIX", raising=False)
    monkeypatch.delenv("IOTPIPE_MQTT_SITES", raising=False)
    settings = load_settings()
    plan = make_plan(settings, DemoOptions(devices=1000, rate=250, workdir=tmp_path), "r1")
    assert plan.settings.kafka.topic_prefix == "demo-r1."  # the run's own topics
    assert plan.env["IOTPIPE_KAFKA_TOPIC_PREFIX"] == "demo-r1."
    assert plan.own_topics
    assert plan.values["recovery"] == str(tmp_path.resolve() / "recovery" / "r1")
    sites = plan.env["IOTPIPE_MQTT_SITES"].split(",")
    assert len(sites) == settings.sim.sites
    assert sites[0] == "demo-r1-000"
    assert plan.env["IOTPIPE_INGEST_INSTANCE"] == "demo-r1"
    assert plan.values["interval"] == "4"  # 1000 devices at 250 readings/s
    assert plan.device_prefix == "dr1-"
    assert plan.workdir == tmp_path.resolve()
    ports = {plan.ingest_port, plan.flow_port, plan.flow_port + 1, plan.dashboard_port}
    assert len(ports) == 4


def test_plan_keeps_a_configured_topic_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IOTPIPE_KAFKA_TOPIC_PREFIX", "mine.")
    plan = make_plan(load_settings(), DemoOptions(devices=10, rate=10, workdir=tmp_path), "r2")
    assert plan.env["IOTPIPE_KAFKA_TOPIC_PREFIX"] == "mine."
    assert not plan.own_topics  # configured topics are never deleted


def test_free_port_moves_off_a_busy_one() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        port = free_port(taken)
        assert port != taken
        pair = free_port(taken - 1, span=2)
        assert taken not in (pair, pair + 1)


def test_components_fill_in_and_leave_attempt_for_the_supervisor() -> None:
    values = {"devices": "7", "device_prefix": "dx", "recovery": "/r"}
    assert fill("{device_prefix}-{attempt}", values) == "dx-{attempt}"
    specs = child_specs(
        [
            Component("late", ("simulate", "--devices", "{devices}"), stage=2, finishes=True),
            Component("early", ("ingest",), stage=0),
        ],
        values,
        ("python", "-m", "ops"),
    )
    assert [s.name for s in specs] == ["early", "late"]
    assert specs[1].argv == ("python", "-m", "ops", "simulate", "--devices", "7")
    assert specs[1].finishes


def available_commands() -> set[str]:
    """``name`` and ``name --option`` for every CLI command, sub-commands as ``group name``."""
    import typer.main

    from ops.cli import app

    out: set[str] = set()

    def walk(cmd: Any, path: str) -> None:  # Typer's (vendored) click objects
        if path:
            out.add(path)
            for param in cmd.params:
                out.update(f"{path} {o}" for o in param.opts)
        for name, sub in (getattr(cmd, "commands", None) or {}).items():
            walk(sub, f"{path} {name}".strip())

    walk(typer.main.get_command(app), "")
    return out


def test_the_real_component_list_runs_real_commands() -> None:
    """Every component names a command (and options) the CLI really has."""
    have = available_commands()
    for c in COMPONENTS:
        words = []
        for a in c.args:
            if a.startswith("--"):
                break
            words.append(a)
        command = " ".join(words)
        assert command in have, c.name
        for option in (a for a in c.args if a.startswith("--")):
            assert f"{command} {option}" in have, (c.name, option)
    names = [c.name for c in COMPONENTS]
    assert names[-1] == SIMULATOR  # started last, once the ingester listens
    assert len(set(names)) == len(names)
