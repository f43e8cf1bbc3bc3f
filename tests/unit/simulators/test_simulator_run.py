"""The simulation loop, rate control, replay and the command line, without servers."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from iotpipe.catalogue import load_catalogue
from iotpipe.codec import ReadingDecoder
from iotpipe.errors import ConfigError
from simulators.cli import parse_start, simulate
from simulators.fleet import Fleet, FleetConfig
from simulators.outputs import NullOutput
from simulators.payloads import PayloadEncoder
from simulators.rate import TokenBucket
from simulators.replay import ReplaySource
from simulators.runner import RunConfig, Simulation
from simulators.truth import read_truth

CATALOGUE = load_catalogue()
app = typer.Typer()
app.command()(simulate)


def simulation(run: RunConfig, **fleet: object) -> Simulation:
    f = Fleet(FleetConfig(start_ms=run.start_ms, **fleet), CATALOGUE)  # type: ignore[arg-type]
    return Simulation(f, PayloadEncoder(f.naming, CATALOGUE), NullOutput(), run)


def test_token_bucket_holds_the_rate_over_two_seconds() -> None:
    bucket = TokenBucket(5000)
    started = time.monotonic()
    for _ in range(100):
        bucket.acquire(100)
    elapsed = time.monotonic() - started
    assert 1.7 < elapsed < 2.6  # 10,000 tokens at 5,000/s


def test_rate_limited_run_reaches_the_target_rate() -> None:
    now = int(time.time() * 1000)
    run = RunConfig(start_ms=now, speed=0, rate=20_000, duration_s=2.0, progress=False)
    summary = simulation(run, devices=10_000).run()
    assert summary.rate == pytest.approx(20_000, rel=0.2)
    assert not summary.interrupted


def test_accelerated_clock_paces_simulated_time() -> None:
    now = int(time.time() * 1000)
    run = RunConfig(start_ms=now, speed=60, duration_s=1.5, progress=False)
    summary = simulation(run, devices=600, interval_s=60.0).run()  # 10 readings/sim-second
    assert summary.rate == pytest.approx(600, rel=0.3)  # 60 sim-seconds per second


def test_stop_event_ends_the_run_cleanly_with_a_summary() -> None:
    now = int(time.time() * 1000)
    sim = simulation(RunConfig(start_ms=now, speed=1, progress=False), devices=100)
    threading.Timer(0.5, sim.stop.set).start()
    summary = sim.run()
    assert summary.interrupted and summary.duration_s < 3


def test_replay_keeps_the_series_spacing(tmp_path: Path) -> None:
    csv = tmp_path / "nab.csv"
    csv.write_text(
        "timestamp,value\n"
        + "".join(f"2014-04-02 14:{m:02d}:00,{20 + m / 10}\n" for m in range(0, 50, 5))
    )
    now = int(time.time() * 1000)
    src = ReplaySource(csv, CATALOGUE, sensor_type="temperature", devices=2, start_ms=now)
    assert src.span_s == 45 * 60
    b = src.advance(now + 46 * 60_000)
    assert len(b) == 20 and src.exhausted
    d0 = b.ts[b.device == 0]
    assert d0[0] == now and set((d0[1:] - d0[:-1]).tolist()) == {300_000}
    assert b.value[b.device == 1].tolist() == pytest.approx([20 + m / 10 for m in range(0, 50, 5)])


@pytest.mark.parametrize(
    ("text", "error"), [("", "no timestamp,value"), ("a,b\n1,x\n", "bad row"), ("1\n", "expected")]
)
def test_bad_replay_files_are_refused(tmp_path: Path, text: str, error: str) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text(text)
    with pytest.raises(ConfigError, match=error):
        ReplaySource(csv, CATALOGUE, sensor_type="gas")


def test_start_times() -> None:
    now = 1_800_000_000_000
    assert parse_start("now", now, None, False) == now
    assert parse_start("auto", now, None, True) == now
    assert parse_start("auto", now, 3600, False) == now - 3_600_000
    assert parse_start("-2h", now, None, True) == now - 7_200_000
    assert parse_start("2026-01-01T00:00:00Z", now, None, True) == 1_767_225_600_000
    with pytest.raises(ConfigError, match="timezone"):
        parse_start("2026-01-01T00:00:00", now, None, True)


def test_cli_writes_payloads_truth_and_a_json_summary(tmp_path: Path) -> None:
    out, truth = tmp_path / "r.jsonl", tmp_path / "truth.jsonl"
    result = CliRunner().invoke(
        app,
        [
            "--output",
            "file",
            "--file",
            str(out),
            "--truth",
            str(truth),
            "--count",
            "5000",
            "--devices",
            "100",
            "--speed",
            "0",
            "--anomaly-rate",
            "0.02",
            "--seed",
            "9",
            "--json",
            "--fault-duplicate",
            "0.01",
            "--summary-file",
            str(tmp_path / "sub" / "summary.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert json.loads((tmp_path / "sub" / "summary.json").read_text()) == summary
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["summary.json"]  # no temp left
    lines = out.read_bytes().splitlines()
    labels = read_truth(truth)
    dups = sum(lab.kind == "duplicate" for lab in labels)
    assert summary["generated"] == 5000 and summary["sent"] == len(lines) == 5000 + dups
    assert summary["labels"] and sum(summary["labels"].values()) == len(labels)
    decoder = ReadingDecoder(CATALOGUE)
    assert all(not decoder.decode(line).rejections for line in lines)
    last_ts = max(json.loads(line)["ts"] for line in lines)
    assert all(lab.end_ts <= last_ts for lab in labels)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--devices", "0"], {}, "--devices"),
        ([], {"IOTPIPE_SIM_RATE": "-1"}, "IOTPIPE_SIM_RATE"),
        (["--output", "file"], {}, "--file"),
        (["--types", "temperature,plasma"], {}, "plasma"),
        (["--replay", "/does/not/exist.csv", "--replay-type", "gas"], {}, "replay file"),
        (["--output", "kafka", "--batch-size", "10"], {}, "batch-size"),
    ],
)
def test_cli_refuses_bad_options_clearly(
    args: list[str], env: dict[str, str], message: str
) -> None:
    result = CliRunner().invoke(app, [*args, "--output", "null"] if "--output" not in args
                                else args, env=env)  # fmt: skip
    assert result.exit_code == 1
    assert "Error:" in result.output and message in result.output
    assert "Traceback" not in result.output
