"""The fleet simulator without servers: determinism, ranges, payload validity, memory."""

from __future__ import annotations

import time

import numpy as np
import pytest

from iotpipe.catalogue import load_catalogue
from iotpipe.codec import ReadingDecoder
from iotpipe.errors import ConfigError
from iotpipe.topics import TopicContext, parse_mqtt_reading_topic
from simulators.anomalies import AnomalyConfig
from simulators.fleet import Batch, Fleet, FleetConfig
from simulators.generate import batches, generate_payloads
from simulators.names import site_names
from simulators.outgoing import Outgoing, gateway_batches
from simulators.payloads import PayloadEncoder

CATALOGUE = load_catalogue()
NOW_MS = int(time.time() * 1000)


def fleet(**options: object) -> Fleet:
    config = {"devices": 200, "start_ms": NOW_MS - 3_600_000, "seed": 7, **options}
    return Fleet(FleetConfig(**config), CATALOGUE)  # type: ignore[arg-type]


def run(f: Fleet, until_ms: int, step_ms: int) -> Batch:
    t, parts = f.config.start_ms, []
    while t < until_ms:
        t = min(t + step_ms, until_ms)
        parts.append(f.advance(t))
    return Batch.concat(parts)


def rows(b: Batch) -> set[tuple[int, int, float, int]]:
    return set(zip(b.device.tolist(), b.ts.tolist(), b.value.tolist(), b.seq.tolist(), strict=True))


def test_same_seed_same_payloads_and_another_seed_differs() -> None:
    assert generate_payloads(2000, seed=3, start_ms=NOW_MS) == generate_payloads(
        2000, seed=3, start_ms=NOW_MS
    )
    assert generate_payloads(2000, seed=3, start_ms=NOW_MS) != generate_payloads(
        2000, seed=4, start_ms=NOW_MS
    )


def test_content_does_not_depend_on_step_size() -> None:
    end = NOW_MS - 3_600_000 + 600_000
    anomalies = AnomalyConfig(rate=0.02)
    coarse = run(fleet(anomalies=anomalies), end, 60_000)
    fine = run(fleet(anomalies=anomalies), end, 1_700)
    assert len(coarse) > 10_000
    assert rows(coarse) == rows(fine)


def test_values_within_each_types_range_without_anomalies() -> None:
    f = fleet(devices=700)  # 100 of each type
    b = run(f, f.config.start_ms + 2 * 86_400_000, 3_600_000)  # two simulated days
    st = f.stype[b.device]
    for i, name in enumerate(f.naming.types):
        low, high = CATALOGUE[name].range
        values = b.value[st == i]
        assert values.size > 1000
        assert low <= values.min() and values.max() <= high, name
        mean, amp, sd = CATALOGUE[name].typical or (0.0, 0.0, 0.0)
        assert abs(np.median(values) - mean) < 2 * amp + 3 * sd, name  # realistic level
        assert np.std(np.diff(values[:50])) > 0  # not constant


def test_reporting_interval_jitter_and_seq() -> None:
    f = fleet(devices=50, interval_s=5.0, interval_spread=0.0, jitter=0.1)
    b = run(f, f.config.start_ms + 600_000, 10_000)
    for d in range(50):
        mine = b.device == d
        gaps = np.diff(b.ts[mine])
        assert gaps.min() >= 4400 and gaps.max() <= 5600
        assert gaps.std() > 50  # jittered, not a metronome
        assert b.seq[mine].tolist() == list(range(int(mine.sum())))
    assert (np.diff(b.ts) >= 0).all()  # time order within the run


def test_every_payload_is_accepted_by_the_ingesters_decoder() -> None:
    f = fleet(devices=1400, start_ms=NOW_MS - 600_000, sites=site_names(3, "plant"))
    decoder = ReadingDecoder(CATALOGUE)
    for with_unit in (False, True):
        enc = PayloadEncoder(f.naming, CATALOGUE, with_unit=with_unit)
        b = f.advance(f.config.start_ms + 60_000 * (1 + with_unit))
        msgs = enc.messages(b, f.stype[b.device], f.site[b.device])
        assert len(msgs) == len(b) > 5000
        for msg, d, v, s in zip(msgs, b.device, b.value, b.seq, strict=True):
            st, site = f.naming.types[f.stype[d]], f.naming.sites[f.site[d]]
            topic = parse_mqtt_reading_topic(f"sensors/{site}/{st}/{f.naming.device_id(int(d))}")
            result = decoder.decode(msg, topic)
            assert not result.rejections, (msg, result.rejections)
            (r,) = result.readings
            assert r.seq == s and abs(r.value - v) <= 0.0005 + 1e-9
            assert (r.unit is not None) == with_unit


def test_value_text_matches_json_numbers() -> None:
    values = np.array([0, -0.0004, -0.5, 1.5, 2.0, 123456.789, -7.001, 99.9996, 1e12, -3.0])
    texts = PayloadEncoder.value_text(values)
    assert texts == [
        b"0", b"0", b"-0.5", b"1.5", b"2", b"123456.789", b"-7.001", b"100",
        b"9999999999.999", b"-3",
    ]  # fmt: skip


def test_gateway_batches_are_valid_arrays_per_site() -> None:
    f = fleet(devices=300, start_ms=NOW_MS - 600_000, sites=site_names(4, "gw"))
    enc = PayloadEncoder(f.naming, CATALOGUE)
    b = f.advance(f.config.start_ms + 60_000)
    st, site = f.stype[b.device].astype(np.int64), f.site[b.device].astype(np.int64)
    out = Outgoing(enc.messages(b, st, site), b.device, st, site)
    decoder = ReadingDecoder(CATALOGUE)
    total = 0
    for by_type in (False, True):
        for msg in gateway_batches(out, 50, by_type=by_type):
            assert msg.readings <= 50
            stype = f.naming.types[msg.stype] if msg.stype is not None else None
            ctx = TopicContext(site=f.naming.sites[msg.site], sensor_type=stype)
            result = decoder.decode(msg.payload, ctx)
            assert not result.rejections and len(result.readings) == msg.readings
            total += msg.readings
    assert total == 2 * len(b)


def test_memory_per_device_is_small() -> None:
    f = Fleet(FleetConfig(devices=100_000), CATALOGUE)
    assert f.nbytes / f.devices < 200


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"devices": 0}, "devices"),
        ({"types": ("temperature", "nope")}, "unknown sensor type"),
        ({"interval_s": -1.0}, "interval"),
        ({"device_prefix": "bad id"}, "device prefix"),
    ],
)
def test_bad_fleet_options_fail_fast(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Fleet(FleetConfig(**options), CATALOGUE)  # type: ignore[arg-type]


def test_batches_helper_yields_forever_in_time_order() -> None:
    f = fleet(devices=10)
    it = batches(f, step_readings=100)
    first, second = next(it), next(it)
    assert len(first) and len(second) and first.ts[-1] <= second.ts[0]
