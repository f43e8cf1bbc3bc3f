"""The compiled hot path (flows/native) held to msgspec, the decoder it stands in for.

The compiled decoder may leave any value to msgspec ("pending"), but what it
accepts it must read exactly as msgspec reads it; and it must accept what the
ingester writes, or the flow silently runs at msgspec speed.
"""

from __future__ import annotations

import pickle

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows._native import DeviceIndex, KeyIndex
from flows.partition import FlowConfig, PartitionState
from flows.slots import SlotMap, by_slot_then_time
from flows.windows import SLOT_STRIDE, OpenRows
from iotpipe.catalogue import load_catalogue
from iotpipe.codec import decode_reading, encode
from iotpipe.model import Reading
from iotpipe.topics import ID_RE, MAX_SEQ

CATALOGUE = load_catalogue()
TYPES = sorted(CATALOGUE.names)
NOW_MS = 1_764_400_000_000

# What a device id or site may look like on Kafka if someone other than the
# ingester wrote it: anything, including quotes, escapes and non-ASCII.
any_text = st.text(min_size=1, max_size=30)
plain_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters='"\\'),
    min_size=1,
    max_size=30,
)
# What the ingester lets through: the full-match id rule of iotpipe/topics.py.
valid_id = st.from_regex(ID_RE)
readings = st.builds(
    Reading,
    device_id=any_text,
    sensor_type=st.sampled_from(TYPES),
    site=st.one_of(st.just("default"), any_text),
    ts=st.integers(-(2**62), 2**62),
    value=st.one_of(
        st.floats(allow_nan=False, allow_infinity=False),
        st.integers(-(2**60), 2**60).map(float),
    ),
    seq=st.one_of(st.none(), st.integers(0, 2**63 - 1)),
    unit=st.one_of(st.none(), any_text),
    ingest_ts=st.one_of(st.none(), st.integers(0, 2**62)),
)


def decode(values: list[bytes], types: list[str] = TYPES) -> tuple:
    """(ts, value, slot, new, pending); ``decode_seq`` also gives the seq column."""
    ts, value, slot, _seq, new, pending = decode_seq(values, types)
    return ts, value, slot, new, pending


def decode_seq(values: list[bytes], types: list[str] = TYPES) -> tuple:
    ts, value, slot, seq, new, pending = DeviceIndex(types).decode(values)
    return (
        np.frombuffer(ts, np.int64),
        np.frombuffer(value, np.float64),
        np.frombuffer(slot, np.int64),
        np.frombuffer(seq, np.int64),
        new,
        pending,
    )


def msgspec_verdict(value: bytes) -> Reading | None:
    try:
        return decode_reading(value)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


@settings(max_examples=400, deadline=None)
@given(st.lists(readings, min_size=1, max_size=20))
def test_what_the_fast_path_accepts_it_reads_as_msgspec_does(batch: list[Reading]) -> None:
    values = [encode(r) for r in batch]
    ts, value, slot, seq, new, pending = decode_seq(values)
    first_row: dict[str, int] = {}
    for i, r in enumerate(batch):
        if i in pending:
            assert slot[i] == -1
            continue
        assert (ts[i], value[i]) == (r.ts, r.value)
        assert seq[i] == (-1 if r.seq is None else r.seq)
        first_row.setdefault(r.device_id, i)
        assert slot[i] == list(first_row).index(r.device_id)
    # each device is announced once, at its first row, with that row's type and site
    assert [(i, d) for i, d, _, _ in new] == [(i, d) for d, i in first_row.items()]
    for i, _, type_index, site in new:
        assert (TYPES[type_index], site) == (batch[i].sensor_type, batch[i].site)


@settings(max_examples=300, deadline=None)
@given(
    st.builds(
        Reading,
        device_id=valid_id,
        sensor_type=st.sampled_from(TYPES),
        site=valid_id,
        ts=st.integers(0, 2**53),
        value=st.floats(allow_nan=False, allow_infinity=False),
        seq=st.one_of(st.none(), st.integers(0, MAX_SEQ)),
        unit=st.one_of(st.none(), plain_text),
        ingest_ts=st.one_of(st.none(), st.integers(0, 2**53)),
    )
)
def test_the_ingesters_layout_never_falls_back(r: Reading) -> None:
    """Readings as the ingester encodes them take the fast path (or the flow slows 2x)."""
    ts, value, _, _, pending = decode([encode(r)])
    assert pending == []
    assert (ts[0], value[0]) == (r.ts, r.value)


@settings(max_examples=500, deadline=None)
@given(readings, st.data())
def test_mangled_values_are_never_misread(r: Reading, data: st.DataObject) -> None:
    """Truncated, spliced or bit-flipped values: accepted only if msgspec agrees exactly."""
    raw = bytearray(encode(r))
    cut = data.draw(st.integers(0, len(raw)))
    edit = data.draw(st.sampled_from(["truncate", "flip", "insert", "json", "delete"]))
    if edit == "truncate":
        raw = raw[:cut]
    elif edit == "flip" and cut < len(raw):
        raw[cut] ^= 1 << data.draw(st.integers(0, 7))
    elif edit == "insert":
        raw[cut:cut] = data.draw(st.binary(min_size=1, max_size=4))
    elif edit == "json":  # the characters that change what a number or string is
        chars = st.text('0123456789-+.eE"\\ ,:{}[]nul', min_size=1, max_size=3)
        raw[cut:cut] = data.draw(chars).encode()
    elif cut < len(raw):
        del raw[cut]
    value = bytes(raw)
    ts, val, _, new, pending = decode([value])
    if pending:
        return
    verdict = msgspec_verdict(value)
    assert verdict is not None, f"fast path accepted what msgspec refuses: {value!r}"
    assert (ts[0], val[0]) == (verdict.ts, verdict.value)
    assert new[0][1] == verdict.device_id
    assert (TYPES[new[0][2]], new[0][3]) == (verdict.sensor_type, verdict.site)


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"not json",
        b"[]",
        b'{"device_id":"d","sensor_type":"temperature","ts":1}',  # no value
        b'{"device_id":"d","sensor_type":"temperature","ts":1.5,"value":1}',  # float ts
        b'{"device_id":"d","sensor_type":"temperature","ts":01,"value":1}',  # not JSON
        b'{"device_id":"d","sensor_type":"temperature","ts":1,"value":1,"seq":01}',
        b'{"device_id":"d","sensor_type":"temperature","ts":1,"value":1,"seq":1.0}',
        b'{"device_id":"d","sensor_type":"temperature","ts":1,"value":-}',
        b'{"device_id":"d","sensor_type":"temperature","ts":1,"value":1.}',
        b'{"device_id":"d","sensor_type":"temperature","ts":1,"value":.5}',
        b'{"device_id":"d","sensor_type":"temperature","ts":1,"value":1e}',
        b'{"device_id":"d","sensor_type":"temperature","ts":1,"value":"1"}',  # string value
        b'{"device_id":"d","sensor_type":"temperature","ts":1,"value":1e999}',  # overflows
        b'{"device_id":"d","sensor_type":"temperature","ts":1,"value":01}',  # not JSON
        b'{"device_id":"d","sensor_type":"temperature","ts":1,"value":1} x',  # trailing
        b'{"device_id":"d\\u0041","sensor_type":"temperature","ts":1,"value":1}',  # escape
        b'{"sensor_type":"temperature","device_id":"d","ts":1,"value":1}',  # other key order
        b'{"device_id": "d", "sensor_type": "temperature", "ts": 1, "value": 1}',  # spaces
        b'{"device_id":"d","sensor_type":"nuclear","ts":1,"value":1}',  # type not served
        b'{"device_id":"\xff","sensor_type":"temperature","ts":1,"value":1}',  # not UTF-8
    ],
)
def test_anything_else_is_left_to_msgspec(value: bytes) -> None:
    ts, value_col, slot, new, pending = decode([value])
    assert (pending, new, slot.tolist(), ts.tolist(), value_col.tolist()) == (
        [0],
        [],
        [-1],
        [0],
        [0.0],
    )


def test_values_that_are_not_bytes_are_left_to_the_caller() -> None:
    good = encode(Reading(device_id="a", sensor_type="gas", ts=NOW_MS, value=1.0))
    _, _, slot, _, pending = decode([None, good, "text"])  # type: ignore[list-item]
    assert (pending, slot.tolist()) == ([0, 2], [-1, 0, -1])


def test_a_known_device_keeps_its_slot_and_type_whatever_a_reading_says() -> None:
    index = DeviceIndex(TYPES)
    first = encode(Reading(device_id="a", sensor_type="gas", ts=NOW_MS, value=1.0))
    other = encode(Reading(device_id="a", sensor_type="humidity", ts=NOW_MS + 1, value=2.0))
    assert index.decode([first])[4] == [(0, "a", TYPES.index("gas"), "default")]
    _, _, slot, _, new, pending = index.decode([other])
    assert (np.frombuffer(slot, np.int64).tolist(), new, pending) == ([0], [], [])


def test_device_index_register_get_extend() -> None:
    index = DeviceIndex(TYPES)
    assert index.get("a") is None
    assert index.register("a") == 0
    index.extend(["b", "c"])
    assert (len(index), index.get("c")) == (3, 2)
    with pytest.raises(ValueError, match="already registered"):
        index.register("b")


def test_key_index() -> None:
    index = KeyIndex()
    index.insert(np.array([5, 7], np.int64), np.array([0, 1], np.int64))
    rows = np.frombuffer(index.get(np.array([7, 6, 5], np.int64)), np.int64)
    assert rows.tolist() == [1, -1, 0]
    with pytest.raises(ValueError, match="already there"):
        index.insert(np.array([5], np.int64), np.array([9], np.int64))
    index.remove(np.array([5], np.int64))
    with pytest.raises(ValueError, match="not there"):
        index.remove(np.array([5], np.int64))
    assert len(index) == 1
    with pytest.raises(ValueError, match="differ in length"):
        index.insert(np.array([1, 2], np.int64), np.array([1], np.int64))


def test_slot_map_and_open_rows_survive_pickling() -> None:
    """Recovery snapshots pickle both; the compiled indexes are rebuilt on restore."""
    slots = SlotMap(TYPES)
    s = slots.lookup(["a", "b", "c"], ["gas", "gas", "co2"], ["x", "y", "x"])
    restored = pickle.loads(pickle.dumps(slots))
    assert restored.lookup(["c", "a", "d"], ["gas"] * 3, ["x"] * 3).tolist() == [2, 0, 3]
    rows = OpenRows()
    keys = 5 * SLOT_STRIDE + s  # window 5 of devices a, b, c
    rows.rows_for(keys, np.zeros(3), s)
    rows.release(np.array([1], np.int64))  # b's window closed
    back = pickle.loads(pickle.dumps(rows))
    assert np.frombuffer(back.index.get(keys), np.int64).tolist() == [0, -1, 2]


def test_bad_values_go_to_bad_and_the_rest_is_processed() -> None:
    """Pending values are judged by msgspec in batch position; bad ones are kept, not dropped."""
    state = PartitionState(CATALOGUE, FlowConfig(windows_ms=(10_000,), rollup=False))
    good = [
        Reading(device_id=f"d{i}", sensor_type="temperature", ts=NOW_MS + i, value=20.0 + i)
        for i in range(4)
    ]
    spaced = b'{"device_id": "d9", "sensor_type": "temperature", "ts": %d, "value": 5}' % NOW_MS
    unknown_type = b'{"device_id":"x","sensor_type":"nuclear","ts":%d,"value":1}' % NOW_MS
    batch = [encode(good[0]), b"garbage", spaced, encode(good[1]), None, unknown_type]
    batch += [encode(good[2]), encode(good[3])]
    out = state.on_values(batch, now=0.0)  # type: ignore[arg-type]
    assert out.bad == [b"garbage", b"", unknown_type]
    assert state.readings == 5
    assert state.slots.device_ids == ["d0", "d1", "d2", "d3", "d9"]
    flushed = state.flush().aggregates
    assert sorted((a.device_id, a.count, a.mean) for a in flushed) == [
        ("d0", 1, 20.0),
        ("d1", 1, 21.0),
        ("d2", 1, 22.0),
        ("d3", 1, 23.0),
        ("d9", 1, 5.0),
    ]


def test_late_readings_come_back_whole() -> None:
    state = PartitionState(CATALOGUE, FlowConfig(windows_ms=(10_000,), allowed_lateness_ms=0))
    now = Reading(device_id="a", sensor_type="gas", site="s", ts=NOW_MS + 60_000, value=1.0, seq=1)
    late = Reading(device_id="b", sensor_type="gas", site="t", ts=NOW_MS, value=2.0, seq=7)
    wall = (NOW_MS + 60_000) / 1000
    state.on_values([encode(now)], now=wall)
    assert state.on_values([b"junk", encode(late)], now=wall).late == [late]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2**24 - 1), st.integers(-(2**62), 2**62)), max_size=50),
    st.booleans(),
)
def test_slot_then_time_order_is_a_stable_lexsort(
    rows: list[tuple[int, int]], narrow: bool
) -> None:
    slots = np.array([s for s, _ in rows], np.int64)
    ts = np.array([t for _, t in rows], np.int64)
    if narrow:  # the packed-key path: a batch spanning less than 2**39 ms
        ts = ts % 1000
    expected = np.lexsort((np.arange(len(rows)), ts, slots))
    assert by_slot_then_time(slots, ts).tolist() == expected.tolist()


def test_integer_negative_zero_reads_as_msgspec_reads_it() -> None:
    """Found by fuzz/scanner.py: the JSON integer ``-0`` is the int 0 to msgspec, so +0.0."""
    value = b'{"device_id":"d","sensor_type":"gas","ts":1764399940000,"value":-0}'
    _ts, got, _slot, _new, pending = decode([value])
    assert pending == []
    want = decode_reading(value).value
    assert np.signbit(got[0]) == np.signbit(want) and got[0] == want
