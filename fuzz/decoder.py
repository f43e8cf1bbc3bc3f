"""Fuzz target: the edge decoder, ``iotpipe.codec.ReadingDecoder.decode``.

Input layout (what the seeds in ``fuzz/corpus/decoder/`` look like): an MQTT
topic, a NUL byte, then the payload. An input with no NUL is a payload alone,
decoded with no topic (``ctx=None``). The topic bytes are read as UTF-8 with
replacement, so any byte string is some topic; a topic that
``parse_mqtt_reading_topic`` refuses is the ingester's ``bad_topic`` and is
skipped, as the ingester never decodes its payload.

What must hold for every input:

* ``decode`` never raises, and says something about every payload (at least
  one reading or one rejection);
* every rejection's reason is a ``Reason``;
* every accepted reading has ``device_id`` and ``site`` fully matching
  ``[A-Za-z0-9_.:-]{1,64}`` (so ``"dev\\n"`` must not pass), a ``sensor_type`` in
  the catalogue, the unit the catalogue gives (or none), a finite ``value``,
  ``seq`` None or in ``0..2**53-1``, an integer ``ts`` inside the accepted
  window, and agrees with every level the topic names;
* ``encode`` then decode again (by the decoder, and by the flow's
  ``decode_reading``) gives an equal reading.

Run (see ``fuzz/README.md``)::

    .venv/bin/python fuzz/decoder.py -dict=fuzz/decoder.dict fuzz/corpus/decoder
"""

from __future__ import annotations

import math
import re
import sys

import atheris

with atheris.instrument_imports(include=["iotpipe"]):
    from iotpipe.catalogue import load_catalogue
    from iotpipe.codec import DecodeResult, ReadingDecoder, Reason, decode_reading, encode
    from iotpipe.model import Reading
    from iotpipe.settings import ValidationSettings
    from iotpipe.topics import TopicContext, TopicError, parse_mqtt_reading_topic

# A fixed clock, so a finding replays the same way on any day. Seeds use event
# times near it (2025-11-29T07:06:40Z).
NOW_S = 1_764_400_000
MAX_PAST_S = 30 * 86_400
MAX_FUTURE_S = 300
# Small payload and batch limits, so that the fuzzer reaches both refusals.
BOUNDS = ValidationSettings(
    max_past_s=MAX_PAST_S, max_future_s=MAX_FUTURE_S, max_payload_bytes=2048, max_batch_items=16
)
WINDOW_MS = ((NOW_S - MAX_PAST_S) * 1000, (NOW_S + MAX_FUTURE_S) * 1000)
ID_FULL = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
MAX_SEQ = 2**53 - 1

CATALOGUE = load_catalogue()
UNITS = {name: t.unit for name, t in CATALOGUE.types.items()}
DECODER = ReadingDecoder(CATALOGUE, BOUNDS, clock=lambda: NOW_S)


def split(data: bytes) -> tuple[str | None, bytes]:
    """(topic or None, payload) of one fuzz input."""
    head, sep, payload = data.partition(b"\0")
    if not sep:
        return None, data
    return head.decode("utf-8", "replace"), payload


def check_reading(reading: Reading, ctx: TopicContext | None, where: str) -> None:
    assert isinstance(reading, Reading), f"{where}: not a Reading: {reading!r}"
    for name in ("device_id", "site"):
        value = getattr(reading, name)
        assert isinstance(value, str), f"{where}: {name} {value!r} is not a str"
        assert ID_FULL.fullmatch(value), f"{where}: {name} {value!r} is not a valid id"
    assert reading.sensor_type in CATALOGUE.names, (
        f"{where}: sensor_type {reading.sensor_type!r} is not in the catalogue"
    )
    assert reading.unit is None or reading.unit == UNITS[reading.sensor_type], (
        f"{where}: unit {reading.unit!r} for {reading.sensor_type}"
    )
    assert isinstance(reading.value, float), f"{where}: value {reading.value!r} is not a float"
    assert math.isfinite(reading.value), f"{where}: value {reading.value!r} is not finite"
    seq = reading.seq
    assert seq is None or (type(seq) is int and 0 <= seq <= MAX_SEQ), f"{where}: seq {seq!r}"
    ts = reading.ts
    assert type(ts) is int, f"{where}: ts {ts!r} is not an int"
    assert WINDOW_MS[0] <= ts <= WINDOW_MS[1], f"{where}: ts {ts} outside {WINDOW_MS}"
    if ctx is not None:
        for name in ("site", "sensor_type", "device_id"):
            said = getattr(ctx, name)
            assert said is None or getattr(reading, name) == said, (
                f"{where}: {name} {getattr(reading, name)!r} but the topic says {said!r}"
            )


def check_result(result: DecodeResult, ctx: TopicContext | None) -> None:
    assert isinstance(result, DecodeResult), f"decode returned {result!r}"
    assert result.readings or result.rejections, "neither a reading nor a rejection"
    for rejection in result.rejections:
        assert isinstance(rejection.reason, Reason), f"reason {rejection.reason!r} is not a Reason"
        assert isinstance(rejection.detail, str), f"detail {rejection.detail!r} is not a str"
    for reading in result.readings:
        check_reading(reading, ctx, "accepted")
        wire = encode(reading)
        again = DECODER.decode(wire)
        assert not again.rejections and again.readings == [reading], (
            f"re-decoding {wire!r} gave {again!r}, not {reading!r}"
        )
        assert decode_reading(wire) == reading, f"decode_reading({wire!r}) != {reading!r}"


@atheris.instrument_func
def test_one_input(data: bytes) -> None:
    topic, payload = split(data)
    ctx: TopicContext | None = None
    if topic is not None:
        try:
            ctx = parse_mqtt_reading_topic(topic)
        except TopicError:
            return  # bad_topic: the ingester dead-letters it without decoding
    check_result(DECODER.decode(payload, ctx), ctx)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
