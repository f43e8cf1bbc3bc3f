"""SKAB scoring on hand-made recordings in SKAB's own CSV layout (the real data set is
read from outside the repository by the bench; these pin the reading and the maths)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench import skab_quality as q
from flows.detectors import DetectorConfig

COLUMNS = ["Accelerometer1RMS", "Pressure", "Volume Flow RateRMS"]


def write(path: Path, n: int, fault: tuple[int, int] | None, seed: int) -> None:
    """n seconds of noise; inside ``fault`` the pressure drops by 40 sigma."""
    rng = np.random.default_rng(seed)
    lines = ["datetime;" + ";".join(COLUMNS) + ";anomaly;changepoint"]
    for i in range(n):
        on = fault is not None and fault[0] <= i <= fault[1]
        values = [0.03 + 0.001 * rng.standard_normal(), 1.0 + 0.05 * rng.standard_normal(),
                  32.0 + 0.3 * rng.standard_normal()]  # fmt: skip
        if on:
            values[1] -= 2.0
        stamp = f"2020-03-09 {10 + i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}"
        lines.append(f"{stamp};" + ";".join(f"{v:.5f}" for v in values) + f";{float(on)};0.0")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write(tmp_path / "data" / "anomaly-free" / "anomaly-free.csv", 1200, None, 0)
    for k in range(2):
        write(tmp_path / "data" / "valve1" / f"{k}.csv", 900, (400, 700), k + 1)
    write(tmp_path / "data" / "valve2" / "0.csv", 900, None, 5)  # a fault nobody labelled
    (tmp_path / "data" / "other").mkdir()
    return tmp_path


def test_a_recording_is_read_with_its_labelled_runs(root: Path) -> None:
    rec = q.load(root, ("valve1",))[0]
    assert rec.name == "valve1/0.csv" and set(rec.values) == {
        "accelerometer1rms", "pressure", "volume_flow_raterms"
    }  # fmt: skip
    assert rec.ts.size == 900 and len(rec.events) == 1
    start, end = rec.events[0]
    assert (end - start) // 1000 == 300 and start == int(rec.ts[400])


def test_a_labelled_shift_is_found_and_scored_per_event_and_per_reading(root: Path) -> None:
    clean = q.load(root, (q.CLEAN,))[0]
    cat = q.catalogue_for(clean)
    got = q.score(q.load(root, ("valve1",)), cat, DetectorConfig())
    assert got.events == 2 and got.detected == 2
    assert got.false_alerts == 0 and got.precision == 1.0
    assert got.delays_s == [0.0, 0.0]  # the first faulty reading is 40 sigma off
    pw = got.pointwise()
    # flagged while an alarm is on: the return to normal is a shift too, so a few seconds
    # after the label are flagged (pointwise false alarms, inside the event grace)
    assert 0 <= pw["far_pct"] < 5 and 0 < pw["mar_pct"] < 100
    assert got.points["tp"] + got.points["fn"] == 2 * 301


def test_alerts_outside_every_label_are_false(root: Path) -> None:
    rec = q.load(root, ("valve2",))[0]
    rec.values["pressure"][500:] -= 2.0  # a real shift, but no label says so
    got = q.score([rec], q.catalogue_for(q.load(root, (q.CLEAN,))[0]), DetectorConfig())
    assert got.events == 0 and got.true_alerts == 0 and got.false_alerts >= 1
    assert got.recall is None and got.precision == 0.0


def test_missing_data_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="SKAB data not found"):
        q.load(tmp_path, ("valve1",))
