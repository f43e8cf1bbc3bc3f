"""Per-site roll-ups: partials merged across partitions equal numpy over all readings."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from flows.partition import FlowConfig, PartitionState
from flows.rollup import Progress, RollupState, SitePartial
from iotpipe.catalogue import load_catalogue
from iotpipe.codec import encode
from iotpipe.model import Reading, SiteAggregate

CATALOGUE = load_catalogue()
T0 = 1_764_400_000_000 - 1_764_400_000_000 % 60_000
TYPES = ("temperature", "pressure")
BASE = {"temperature": 21.0, "pressure": 1013.0}


def readings(seed: int, devices: int = 40, steps: int = 50) -> list[Reading]:
    rng = np.random.default_rng(seed)
    out = []
    for step in range(steps):
        for d in rng.permutation(devices).tolist():
            if rng.random() < 0.2:
                continue  # devices skip readings: sites have varying device counts
            t = TYPES[d % 2]
            out.append(
                Reading(
                    device_id=f"dev-{d}",
                    sensor_type=t,
                    site=f"site-{d % 3}",
                    ts=T0 + step * 1000 + int(rng.integers(0, 1000)),
                    value=float(BASE[t] + rng.normal(0, 2)),
                )
            )
    return out


def expected(rs: list[Reading], length: int) -> dict[tuple[str, str, int], tuple]:
    groups: dict[tuple[str, str, int], list[Reading]] = defaultdict(list)
    for r in rs:
        groups[(r.site, r.sensor_type, r.ts - r.ts % length)].append(r)
    out = {}
    for key, group in groups.items():
        values = np.array([r.value for r in group])
        latest = max(group, key=lambda r: (r.ts, r.value))
        devices = len({r.device_id for r in group})
        out[key] = (
            devices,
            len(values),
            values.mean(),
            values.min(),
            values.max(),
            values.std(),
            latest.value,
        )
    return out


def partition_progress(
    rs: list[Reading], partitions: int, batch: int
) -> list[tuple[str, Progress]]:
    """Run each partition's state over its readings; the progress they emit, interleaved."""
    config = FlowConfig(windows_ms=(10_000, 60_000), allowed_lateness_ms=60_000)
    per_part: dict[int, list[Reading]] = defaultdict(list)
    for r in rs:
        per_part[int(r.device_id.split("-")[1]) % partitions].append(r)
    streams = []
    for p, part in sorted(per_part.items()):
        state = PartitionState(CATALOGUE, config)
        emitted: list[tuple[str, Progress]] = []
        for i in range(0, len(part), batch):
            values = [encode(r) for r in part[i : i + batch]]
            emitted += [(f"p{p}", g) for g in state.on_values(values, now=0.0).progress]
        emitted += [(f"p{p}", g) for g in state.flush().progress]
        streams.append(emitted)
    mixed = []
    while any(streams):  # round robin, like Bytewax polling partitions in turn
        for stream in streams:
            if stream:
                mixed.append(stream.pop(0))
    return mixed


def final(outputs: list[SiteAggregate]) -> dict[tuple[str, str, str, int], SiteAggregate]:
    """The last write per series and time wins, as in InfluxDB."""
    return {(a.site, a.sensor_type, a.window, a.start): a for a in outputs}


@pytest.mark.parametrize(("seed", "partitions", "batch"), [(1, 4, 37), (2, 2, 500), (3, 1, 13)])
def test_merged_partials_equal_statistics_over_all_readings(
    seed: int, partitions: int, batch: int
) -> None:
    rs = readings(seed)
    states = {t: RollupState() for t in TYPES}
    out: list[SiteAggregate] = []
    for source, progress in partition_progress(rs, partitions, batch):
        out += states[progress.sensor_type].on_progress(source, progress)
    for state in states.values():
        out += state.flush()
    got = final(out)
    for label, length in (("10s", 10_000), ("1m", 60_000)):
        want = expected(rs, length)
        mine = {(k[0], k[1], k[3]): v for k, v in got.items() if k[2] == label}
        assert set(mine) == set(want)
        for key, (devices, count, mean, lo, hi, std, last) in want.items():
            a = mine[key]
            assert (a.devices, a.count, a.min, a.max, a.last) == (devices, count, lo, hi, last)
            assert a.mean == pytest.approx(mean, rel=1e-12)
            assert a.std == pytest.approx(std, rel=1e-9, abs=1e-9)
            assert a.end - a.start == length


def partial(start: int, value: float, devices: int = 1) -> SitePartial:
    return SitePartial(
        site="s", sensor_type="temperature", window="10s", start=start, end=start + 10_000,
        devices=devices, count=1, mean=value, m2=0.0, min=value, max=value,
        last_ts=start, last=value,
    )  # fmt: skip


def test_a_window_waits_for_every_partition_heard_from() -> None:
    state = RollupState()
    assert state.on_progress("a", Progress("temperature", 0, ())) == []
    assert state.on_progress("b", Progress("temperature", 0, ())) == []
    # "a" is past the window and sends its partial; "b" is not there yet
    assert state.on_progress("a", Progress("temperature", 10_000, (partial(0, 1.0),))) == []
    out = state.on_progress("b", Progress("temperature", 10_000, (partial(0, 3.0),)))
    assert [(a.count, a.mean, a.devices) for a in out] == [(2, 2.0, 2)]


def test_a_partition_first_heard_late_updates_the_emitted_window() -> None:
    state = RollupState(retain_s=60)
    out = state.on_progress("a", Progress("temperature", 100_000, (partial(0, 1.0),)), now=0)
    assert [a.count for a in out] == [1]
    # a partition that had no data until now (or started late in a drain) closes the window
    out = state.on_progress("c", Progress("temperature", 100_000, (partial(0, 5.0),)), now=59)
    assert [(a.count, a.mean, a.max) for a in out] == [(2, 3.0, 5.0)]


def test_partials_after_retirement_are_counted_never_written_over() -> None:
    state = RollupState(retain_s=60)
    state.on_progress("a", Progress("temperature", 100_000, (partial(0, 1.0),)), now=0)
    state.on_progress("c", Progress("temperature", 100_000, ()), now=1)
    state.on_progress("a", Progress("temperature", 100_000, ()), now=61)  # retires window 0
    out = state.on_progress("c", Progress("temperature", 100_000, (partial(0, 5.0),)), now=62)
    assert out == []
    assert state.dropped == 1
    # nor from a partition never heard from before
    out = state.on_progress("d", Progress("temperature", 100_000, (partial(0, 7.0),)), now=63)
    assert out == []
    assert state.dropped == 2
    # windows after the retired ones are still taken from anyone
    out = state.on_progress("d", Progress("temperature", 100_000, (partial(10_000, 7.0),)), now=64)
    assert [(a.start, a.mean) for a in out] == [(10_000, 7.0)]


def test_a_re_emitted_window_is_kept_for_the_full_time_after_its_last_update() -> None:
    state = RollupState(retain_s=60)
    state.on_progress("a", Progress("temperature", 100_000, (partial(0, 1.0),)), now=0)
    state.on_progress("c", Progress("temperature", 100_000, (partial(0, 5.0),)), now=50)
    state.on_progress("a", Progress("temperature", 100_000, ()), now=70)  # 70 s after emission
    out = state.on_progress("d", Progress("temperature", 100_000, (partial(0, 3.0),)), now=100)
    assert [(a.count, a.mean) for a in out] == [(3, 3.0)]  # still held: updated at 50
    state.on_progress("a", Progress("temperature", 100_000, ()), now=161)
    assert state.emitted == {} and state.retired_end == 10_000
