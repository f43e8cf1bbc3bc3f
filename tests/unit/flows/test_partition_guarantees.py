"""PartitionState under duplicates, skewed clocks and outages (no servers needed)."""

from __future__ import annotations

import pickle

from flows.dedupe import SEQ_WINDOW
from flows.partition import FlowConfig, PartitionState
from iotpipe.catalogue import load_catalogue
from iotpipe.codec import encode
from iotpipe.model import Reading

CATALOGUE = load_catalogue()
T0 = 1_764_400_000_000  # a window boundary for 10 s windows
CONFIG = FlowConfig(
    windows_ms=(10_000,), allowed_lateness_ms=1_000, idle_close_ms=5_000, rollup=False
)


def reading(device: str, ts: int, value: float = 1.0, seq: int | None = None) -> bytes:
    return encode(Reading(device_id=device, sensor_type="gas", ts=ts, value=value, seq=seq))


def counts(aggs: list) -> dict[tuple[str, int], tuple[int, float]]:
    return {(a.device_id, a.start): (a.count, a.mean) for a in aggs}


def test_redelivered_readings_are_counted_once_by_seq_and_by_ts() -> None:
    state = PartitionState(CATALOGUE, CONFIG)
    wall = T0 / 1000 + 5
    first = [reading("a", T0 + i * 100, float(i), seq=i) for i in range(20)]
    first += [reading("b", T0 + i * 100, float(i)) for i in range(5)]  # no seq: by ts
    state.on_values(first, now=wall)
    # the same readings again (a QoS 1 redelivery), mixed with new ones, some twice in one batch
    again = first[10:] + [reading("a", T0 + 2_000 + i, 100.0, seq=20 + i) for i in range(3)]
    out = state.on_values(again + again[-1:], now=wall)
    assert out.duplicates == 15 + 1
    assert state.duplicates == 16
    got = counts(state.flush().aggregates)
    assert got[("a", T0)] == (23, (sum(range(20)) + 300) / 23)
    assert got[("b", T0)] == (5, 2.0)


def test_a_seq_with_a_new_value_is_not_mistaken_for_a_duplicate() -> None:
    state = PartitionState(CATALOGUE, CONFIG)
    wall = T0 / 1000 + 5
    state.on_values([reading("a", T0 + 1, seq=5), reading("a", T0 + 1, seq=6)], now=wall)
    # same ts, different seq: two readings; far-back seq: counted, never dropped on a guess
    state.on_values([reading("a", T0 + 2, seq=5 + 2 * SEQ_WINDOW)], now=wall)
    out = state.on_values([reading("a", T0 + 3, seq=4)], now=wall)
    assert out.duplicates == 0
    assert counts(state.flush().aggregates)[("a", T0)][0] == 4


def test_duplicates_are_still_known_after_recovery() -> None:
    state = PartitionState(CATALOGUE, CONFIG)
    wall = T0 / 1000 + 5
    batch = [reading("a", T0 + i, seq=i) for i in range(10)]
    state.on_values(batch, now=wall)
    restored = PartitionState.restore(state.snapshot())
    assert restored.on_values(batch, now=wall).duplicates == 10
    assert pickle.loads(pickle.dumps(restored)).on_values(batch, now=wall).duplicates == 10


def test_one_device_ahead_of_time_makes_no_one_else_late() -> None:
    state = PartitionState(CATALOGUE, CONFIG)
    wall = T0 / 1000 + 1
    devices = [f"d{i}" for i in range(5)]
    late = 0
    for step in range(40):  # 4 s of readings, 10 per second per device
        ts = T0 + step * 100
        batch = [reading(d, ts) for d in devices]
        if step == 3:
            batch.append(reading("skewed", ts + 200_000))  # 200 s ahead, inside the edge bound
        late += len(state.on_values(batch, now=wall + step / 10).late)
    assert late == 0
    # even alone in a batch (a quiet moment), the skewed device is capped at wall time
    state.on_values([reading("skewed", T0 + 300_000)], now=wall + 4)
    assert not state.on_values([reading("d0", T0 + 4_000)], now=wall + 4).late
    # a device behind makes only its own readings late
    assert len(state.on_values([reading("slow", T0 - 60_000)], now=wall + 4).late) == 1


def test_devices_ahead_alone_in_their_micro_batches_make_no_one_else_late() -> None:
    """A flow that keeps up polls one or two readings at a time; a device ahead is then
    often alone in a batch. On-time readings arriving 4 s after their event time (under
    the 5 s lateness) must still count, with 10% of the devices up to 2 minutes ahead."""
    config = FlowConfig(windows_ms=(10_000,), allowed_lateness_ms=5_000, rollup=False)
    state = PartitionState(CATALOGUE, config)
    devices = [f"d{i:02d}" for i in range(40)]
    ahead = {d: 30_000 + 2_000 * i for i, d in enumerate(devices[::10])}
    late: list[str] = []
    for second in range(60):
        for i, device in enumerate(devices):  # each device once a second, in turn
            ts = T0 + second * 1000 + i * 25
            wall = (ts + 4_000) / 1000  # on time, yet slow through the edge
            value = reading(device, ts + ahead.get(device, 0))
            late += [r.device_id for r in state.on_values([value], now=wall).late]
    assert late == []
    assert state.watermark() > T0 + 40_000  # the windows did move on


def test_windows_wait_while_the_source_does_not_vouch_for_idleness() -> None:
    """A flow held back by a sink or a Kafka outage sees no heartbeats: nothing closes early."""
    state = PartitionState(CATALOGUE, CONFIG)
    wall = T0 / 1000 + 2
    state.on_values([reading("a", T0 + 1_000)], now=wall)
    assert state.on_tick().aggregates == []  # a timer alone never closes a window
    # 60 s later (the outage is over) the backlog arrives: none of it is late
    out = state.on_values(
        [reading("a", T0 + 1_000 + i * 1_000) for i in range(1, 60)], now=wall + 60
    )
    assert out.late == []
    assert counts(out.aggregates)[("a", T0)][0] == 9


def test_vouched_idleness_closes_windows_and_the_watermark_never_goes_back() -> None:
    state = PartitionState(CATALOGUE, CONFIG)
    wall = T0 / 1000 + 2
    state.on_values([reading("a", T0 + 1_000)], now=wall)
    closed = []
    for second in range(1, 30):  # heartbeats once a second
        closed += state.on_idle(now=wall + second).aggregates
        if second == 4:
            assert closed == []  # not idle long enough yet
    assert counts(closed) == {("a", T0): (1, 1.0)}
    wm = state.watermark()
    # data resumes with an event time behind the idle-advanced watermark: late, not a new window
    out = state.on_values([reading("a", T0 + 2_000)], now=wall + 31)
    assert len(out.late) == 1 and out.aggregates == []
    assert state.watermark() >= wm


def test_after_an_outage_the_idle_clock_starts_again() -> None:
    """Heartbeats stopped for 60 s (Kafka away, a sink blocking): that was no idle time."""
    state = PartitionState(CATALOGUE, CONFIG)
    wall = T0 / 1000 + 2
    state.on_values([reading("a", T0 + 1_000)], now=wall)
    state.on_idle(now=wall + 1)
    assert state.on_idle(now=wall + 61).aggregates == []
    # the backlog written during the outage arrives now: on time, not late
    out = state.on_values(
        [reading("a", T0 + 1_000 + i * 1_000) for i in range(1, 9)], now=wall + 62
    )
    assert out.late == []


def test_after_an_outage_heartbeats_alone_wait_longer_for_the_upstream_backlog() -> None:
    """Kafka came back, the flow reconnected first: the ingester's queue is still to come."""
    config = FlowConfig(
        windows_ms=(10_000,),
        allowed_lateness_ms=1_000,
        idle_close_ms=5_000,
        idle_close_after_gap_ms=30_000,
        rollup=False,
    )
    state = PartitionState(CATALOGUE, config)
    wall = T0 / 1000 + 2
    state.on_values([reading("a", T0 + 1_000)], now=wall)
    state.on_idle(now=wall + 1)
    # a 40 s outage, then 20 s of heartbeats with nothing new on the partition
    closed = []
    for second in range(41, 61):
        closed += state.on_idle(now=wall + second).aggregates
    assert closed == []  # idle_close_ms alone would have closed the window (and made the rest late)
    # the ingester's backlog arrives: on time, counted
    out = state.on_values(
        [reading("a", T0 + 1_000 + i * 1_000) for i in range(1, 9)], now=wall + 61
    )
    assert out.late == []
    # data came in again: the ordinary idle close applies from here on
    for second in range(62, 70):
        closed += state.on_idle(now=wall + second).aggregates
    assert counts(closed) == {("a", T0): (9, 1.0)}


def test_heartbeats_alone_close_windows_after_the_longer_wait() -> None:
    """Devices that really stopped during the outage: their windows still close."""
    config = FlowConfig(
        windows_ms=(10_000,), idle_close_ms=5_000, idle_close_after_gap_ms=30_000, rollup=False
    )
    state = PartitionState(CATALOGUE, config)
    wall = T0 / 1000 + 2
    state.on_values([reading("a", T0 + 1_000)], now=wall)
    state.on_idle(now=wall + 1)
    closed = []
    for second in range(41, 120):
        closed += state.on_idle(now=wall + second).aggregates
    assert counts(closed) == {("a", T0): (1, 1.0)}


def test_a_restart_is_not_an_outage() -> None:
    """Restored from a snapshot: the first heartbeats start the ordinary idle clock."""
    config = FlowConfig(
        windows_ms=(10_000,), idle_close_ms=5_000, idle_close_after_gap_ms=300_000, rollup=False
    )
    state = PartitionState(CATALOGUE, config)
    wall = T0 / 1000 + 2
    state.on_values([reading("a", T0 + 1_000)], now=wall)
    restored = PartitionState.restore(state.snapshot())
    closed = []
    for second in range(100, 120):
        closed += restored.on_idle(now=wall + second).aggregates
    assert counts(closed) == {("a", T0): (1, 1.0)}
