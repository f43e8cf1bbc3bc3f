"""Anomalies and faults: visible in the data exactly where the ground truth says."""

from __future__ import annotations

import time
from collections import defaultdict

import numpy as np
import pytest

from iotpipe.catalogue import load_catalogue
from iotpipe.codec import ReadingDecoder, Reason
from iotpipe.errors import ConfigError
from simulators.anomalies import KIND_NAMES, AnomalyConfig, RawLabel, parse_mix
from simulators.faults import MALFORMED_VARIANTS, FaultConfig, FaultInjector, malformed, oversized
from simulators.fleet import Batch, Fleet, FleetConfig
from simulators.outgoing import Outgoing
from simulators.payloads import PayloadEncoder

CATALOGUE = load_catalogue()
START = int(time.time() * 1000) - 86_400_000


def run(anomalies: AnomalyConfig, **options: object) -> tuple[Fleet, Batch, list[RawLabel]]:
    config = {"devices": 140, "start_ms": START, "seed": 11, "interval_s": 5.0, **options}
    f = Fleet(FleetConfig(anomalies=anomalies, **config), CATALOGUE)  # type: ignore[arg-type]
    parts = [f.advance(START + (i + 1) * 60_000) for i in range(60)]  # one simulated hour
    return f, Batch.concat(parts), f.final_labels()


def by_device_ts(b: Batch) -> dict[int, dict[int, float]]:
    out: dict[int, dict[int, float]] = defaultdict(dict)
    for d, t, v in zip(b.device.tolist(), b.ts.tolist(), b.value.tolist(), strict=True):
        out[d][t] = v
    return out


def test_every_anomaly_kind_is_exactly_where_the_labels_say() -> None:
    f, anomalous, labels = run(AnomalyConfig(rate=0.01, min_length=3, max_length=8))
    _, clean, none = run(AnomalyConfig(rate=0.0))
    assert none == []
    assert {lab.kind for lab in labels} == set(KIND_NAMES)
    got, base = by_device_ts(anomalous), by_device_ts(clean)
    covered: dict[int, set[int]] = defaultdict(set)
    for lab in labels:
        d = lab.device
        window = [t for t in base[d] if lab.start_ts <= t <= lab.end_ts]
        assert window and window[0] == lab.start_ts and window[-1] == lab.end_ts
        assert len(window) == lab.readings
        covered[d].update(window)
        low, high = CATALOGUE[f.naming.types[f.stype[d]]].range
        if lab.kind == "dropout":
            assert not any(t in got[d] for t in window), lab
            continue
        values = [got[d][t] for t in window]
        if lab.kind == "stuck":
            assert len(set(values)) == 1 and values[0] == pytest.approx(
                base[d][window[0]], abs=1e-3
            )
        elif lab.kind == "out_of_range":
            assert all(v < low or v > high for v in values), lab
        else:
            # changed, unless the shifted value was clipped back onto a range bound
            # the clean signal sat on (a humidity sensor at 100%)
            assert all(
                abs(got[d][t] - base[d][t]) > 1e-3 or got[d][t] in (low, high) for t in window
            ), lab
            assert all(low <= v <= high for v in values)
        if lab.kind == "spike":
            assert lab.readings == 1
    # Outside the labels, the data is exactly the anomaly-free signal.
    for d, series in base.items():
        for t, v in series.items():
            if t not in covered[d]:
                assert got[d][t] == v


def test_dropout_keeps_seq_contiguous_and_mix_selects_kinds() -> None:
    _, b, labels = run(AnomalyConfig(rate=0.02, weights=parse_mix("dropout=1")))
    assert labels and {lab.kind for lab in labels} == {"dropout"}
    for d in np.unique(b.device).tolist():
        seq = b.seq[b.device == d]
        assert seq.tolist() == list(range(seq.size))  # silent, not lost


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: AnomalyConfig(rate=1.5), "rate"),
        (lambda: parse_mix("spike=1,wobble=2"), "wobble"),
        (lambda: parse_mix("spike=x"), "kind=weight"),
        (lambda: AnomalyConfig(min_length=10, max_length=2), "lengths"),
        (lambda: FaultConfig(duplicate=2.0), "duplicate"),
    ],
)
def test_bad_anomaly_and_fault_options_fail_fast(build: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build()  # type: ignore[operator]


def _outgoing(f: Fleet, b: Batch) -> Outgoing:
    st, site = f.stype[b.device].astype(np.int64), f.site[b.device].astype(np.int64)
    return Outgoing(PayloadEncoder(f.naming, CATALOGUE).messages(b, st, site), b.device, st, site)


def test_faults_are_labelled_and_malformed_ones_refused() -> None:
    f = Fleet(FleetConfig(devices=500, start_ms=int(time.time() * 1000) - 600_000), CATALOGUE)
    b = f.advance(f.config.start_ms + 120_000)
    config = FaultConfig(late=0.02, late_delay_s=30, duplicate=0.02, malformed=0.02,
                         oversized=0.01, oversize_bytes=300_000)  # fmt: skip
    injector = FaultInjector(config, seed=5)
    out = injector.apply(_outgoing(f, b), b.ts, b.seq, now_ms=int(b.ts[-1]))
    out = out.extend(injector.drain())
    labels = injector.take_labels()
    kinds = {lab.kind for lab in labels}
    assert kinds == {"late", "duplicate", "malformed", "oversized"}
    count = {k: sum(lab.kind == k for lab in labels) for k in kinds}
    assert len(out) == len(b) + count["duplicate"]  # late ones arrive, just later
    decoder = ReadingDecoder(CATALOGUE)
    refused = [r for rec in out.records for r in decoder.decode(rec).rejections]
    assert len(refused) == count["malformed"] + count["oversized"]
    assert sum(r.reason == Reason.PAYLOAD_TOO_LARGE for r in refused) == count["oversized"]
    # Late readings come after newer ones of their device: out of order.
    late_seq = {
        (lab.device, int(lab.detail.split()[0][4:])) for lab in labels if lab.kind == "late"
    }
    assert late_seq
    position = {}
    for i, rec in enumerate(out.records):
        r = decoder.decode(rec).readings
        if r:
            position.setdefault((int(out.device[i]), r[0].seq), i)
    for d, s in late_seq:
        later = [
            pos
            for (dd, ss), pos in position.items()
            if dd == d and ss > s and (dd, ss) not in late_seq
        ]
        assert not later or min(later) < position[(d, s)]


@pytest.mark.parametrize("variant", MALFORMED_VARIANTS)
def test_each_malformed_variant_is_refused_with_its_reason(variant: str) -> None:
    good = (b'{"device_id":"dev-000001","sensor_type":"gas","site":"s","ts":'
            + str(int(time.time() * 1000)).encode() + b',"value":2.5,"seq":3}')  # fmt: skip
    decoder = ReadingDecoder(CATALOGUE)
    assert not decoder.decode(good).rejections
    (rejection,) = decoder.decode(malformed(good, variant)).rejections
    expected = {
        "broken_json": Reason.MALFORMED_JSON,
        "wrong_type": Reason.WRONG_TYPE,
        "nan_value": Reason.NON_FINITE_VALUE,
        "missing_value": Reason.MISSING_FIELD,
    }
    assert rejection.reason == expected[variant]
    assert len(oversized(good, 300_000)) >= 299_000


def test_clock_skew_shifts_ts_and_is_labelled() -> None:
    _, b, labels = run(AnomalyConfig(), skew_fraction=0.1, skew_max_s=60)
    _, clean, _ = run(AnomalyConfig())
    skewed = {
        lab.device: int(lab.detail.split("=")[1]) for lab in labels if lab.kind == "clock_skew"
    }
    assert 3 <= len(skewed) <= 30
    for d, skew in skewed.items():
        assert (b.ts[b.device == d] - clean.ts[clean.device == d] == skew).all()
    assert {lab.kind for lab in labels} == {"clock_skew"}
