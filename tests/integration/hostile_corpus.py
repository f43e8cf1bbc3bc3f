"""Hostile MQTT payloads and topics for test_hostile.py, each with what must become of it.

Every case carries a marker, ``x<run>-<name>.``, in its MQTT topic or in its
payload (JSON objects get an extra ``"case"`` field, which a reading may carry
and the decoder ignores), so its dead letter can be told apart from every
other case's whatever partition or order it lands in. Readings a case means to
be forwarded have device ids ``g<run>-<name>-<n>``; the canary published after
each case is ``k<run>-<name>``.

Payloads are built at send time (``Case.body(now_ms)``) so that event times are
fresh when the case runs, not when the module was imported.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

RUN = uuid.uuid4().hex[:8]
SITE = f"h{RUN}"  # the site every in-scope case publishes under
LONG_SITE = (f"l{RUN}-" + "s" * 64)[:65]  # a site the settings accept but ID_RE (1-64) refuses
GATEWAY = f"sensors/{SITE}"  # a gateway topic: the payload names type and device
GATEWAY_T = f"sensors/{SITE}/temperature"  # a gateway topic for one sensor type
DAY_MS = 86_400_000
MARK_RE = re.compile(rf"x{RUN}-([a-z0-9-]+)\.")
MAX_PAYLOAD = 256 * 1024  # IOTPIPE_VALIDATION_MAX_PAYLOAD_BYTES (default)
MAX_BATCH = 10_000  # IOTPIPE_VALIDATION_MAX_BATCH_ITEMS (default)

Payload = bytes | Callable[[int], bytes]


@dataclass(frozen=True)
class Good:
    """A reading the case means to be forwarded, and the aggregate it must become."""

    device_id: str
    sensor_type: str
    site: str
    value: float


@dataclass(frozen=True)
class Case:
    name: str
    topic: str
    payload: Payload
    reason: str | None  # the dead letter's ``reason``; None: no dead letter
    # (index, reason) of each rejection; default: one whole-payload rejection (index None)
    items: tuple[tuple[int | None, str], ...] | None = None
    good: tuple[Good, ...] = ()
    qos: int = 1
    retain: bool = False
    truncated: bool = False  # the dead letter keeps only the payload's start, size and SHA-256
    wide: bool = False  # needs an ingester on the default subscription (sensors/#)
    # Published after the case (topic, payload, retain): e.g. clearing a retained message.
    then: tuple[tuple[str, bytes, bool], ...] = field(default_factory=tuple)

    @property
    def marker(self) -> str:
        return mark(self.name)

    @property
    def canary(self) -> str:
        return f"k{RUN}-{self.name}"

    def body(self, now_ms: int) -> bytes:
        return self.payload(now_ms) if callable(self.payload) else self.payload

    def rejections(self) -> list[tuple[int | None, str]]:
        if self.reason is None:
            return []
        return list(self.items) if self.items is not None else [(None, self.reason)]


def mark(name: str) -> str:
    return f"x{RUN}-{name}."


def good_id(name: str, n: int = 0) -> str:
    return f"g{RUN}-{name}-{n}"


def obj(name: str, now: int, **fields: object) -> bytes:
    """A reading-shaped JSON object with the case marker; ``None`` values drop a field."""
    body: dict[str, object] = {"case": mark(name), "ts": now, "value": 21.0}
    body.update(fields)
    return json.dumps({k: v for k, v in body.items() if v is not None}).encode()


def iso(ms: int, tz: bool = True) -> str:
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.isoformat() if tz else moment.replace(tzinfo=None).isoformat()


def padded(data: bytes, size: int) -> bytes:
    assert len(data) <= size
    return data + b" " * (size - len(data))


def _cases() -> list[Case]:  # noqa: PLR0915 - a flat list reads best
    cases: list[Case] = []

    def add(name: str, payload: Payload, reason: str | None, topic: str = "", **kw: object) -> None:
        assert re.fullmatch(r"[a-z0-9-]{1,30}", name), name
        cases.append(Case(name, topic or f"{GATEWAY_T}/{mark(name)}", payload, reason, **kw))  # type: ignore[arg-type]

    def raw(name: str, template: bytes) -> Payload:
        """A byte template: @NOW@ is the current time in ms, @MARK@ the case marker."""
        template = template.replace(b"@MARK@", mark(name).encode())
        return lambda now: template.replace(b"@NOW@", str(now).encode())

    def field_case(name: str, reason: str | None, topic: str = "", **fields: object) -> None:
        add(name, lambda now: obj(name, now, **fields), reason, topic)

    def good_case(name: str, **kw: object) -> None:
        """One good reading (device from the payload) on the gateway topic."""
        g = Good(good_id(name), "temperature", SITE, 21.0)
        payload = lambda now: obj(name, now, device_id=g.device_id)  # noqa: E731
        add(name, payload, None, GATEWAY_T, good=(g,), **kw)

    # --- broken JSON -----------------------------------------------------------
    malformed = {
        "json-open-brace": b"{",
        "json-close-bracket": b"]",
        "json-truncated": b'{"ts": @NOW@, "value": 2',
        "json-garbage": b"hello, world",
        "json-trailing-comma": b'{"ts": @NOW@, "value": 2,}',
        "json-single-quotes": b"{'ts': @NOW@, 'value': 2}",
        "json-unquoted-keys": b"{ts: @NOW@, value: 2}",
        "json-two-objects": b'{"ts":@NOW@,"value":2}{"ts":@NOW@,"value":3}',
        "json-comment": b'{"ts": @NOW@ /* c */, "value": 2}',
        "json-bom": b'\xef\xbb\xbf{"ts":@NOW@,"value":2}',
        "json-nul-byte": b'{"ts":@NOW@,\x00"value":2}',
        "json-hex-number": b'{"ts":@NOW@,"value":0x10}',
        "json-leading-zeros": b'{"ts":@NOW@,"value":007}',
        "json-plus-sign": b'{"ts":@NOW@,"value":+1}',
        "json-bare-fraction": b'{"ts":@NOW@,"value":.5}',
        "json-open-string": b'{"ts":@NOW@,"value":2,"unit":"cel',
        "json-whitespace-only": b" \t\r\n ",
        "json-deep-array": b"[" * 100_000,
        "json-deep-object": b'{"a":' * 50_000,
    }
    for name, template in malformed.items():
        add(name, raw(name, template), "malformed_json")
    # ~200 kB of raw control characters in a string: not JSON; its dead letter
    # (1.2 MB once escaped) is cut to the payload's start, size and SHA-256.
    control = b'{"device_id":"' + b"\x01" * 200_000 + b'"}'
    add("json-control-chars-200k", control, "malformed_json", truncated=True)

    # --- valid JSON that is not a reading object ---------------------------------
    for name, data in {
        "not-object-string": b'"a string"',
        "not-object-number": b"42",
        "not-object-null": b"null",
        "not-object-true": b"true",
    }.items():
        add(name, data, "wrong_type")
    add("batch-of-arrays", b"[[]]", "wrong_type", items=((0, "wrong_type"),))
    add(
        "batch-of-strings",
        b'["a","b"]',
        "wrong_type",
        items=((0, "wrong_type"), (1, "wrong_type")),
    )

    # --- sizes -----------------------------------------------------------------------
    add("empty-payload", b"", "empty_payload")
    add("empty-array", b"[]", "empty_payload")
    add("batch-of-empty-object", b"[{}]", "missing_field", items=((0, "missing_field"),))
    g = Good(good_id("at-payload-limit"), "temperature", SITE, 21.0)
    add(
        "at-payload-limit",  # exactly 256 KiB: still accepted
        lambda now, g=g: padded(obj("at-payload-limit", now, device_id=g.device_id), MAX_PAYLOAD),
        None,
        GATEWAY_T,
        good=(g,),
    )
    add(
        "over-payload-limit",  # one byte more
        lambda now: padded(obj("over-payload-limit", now), MAX_PAYLOAD + 1),
        "payload_too_large",
    )
    add("payload-1mb", b"x" * 1_000_000, "payload_too_large", truncated=True)
    add(
        "batch-over-limit",
        b"[" + b",".join([b'{"ts":1,"value":1}'] * (MAX_BATCH + 1)) + b"]",
        "batch_too_large",
    )
    # 10,000 refused items: one dead letter, its rejections capped at 100 with the payload cut
    add(
        "batch-all-bad",
        b"[" + b",".join([b'{"ts":1,"value":1}'] * MAX_BATCH) + b"]",
        "ts_out_of_bounds",
        items=tuple((i, "ts_out_of_bounds") for i in range(100)),
        truncated=True,
    )

    # --- invalid UTF-8 ---------------------------------------------------------------
    for name, template in {
        "utf8-bare-bytes": b"\xff\xfe\xfd",
        "utf8-bad-continuation": b'{"ts":@NOW@,"value":2,"unit":"\xc3\x28"}',
        "utf8-overlong": b'{"ts":@NOW@,"value":2,"unit":"\xc0\xaf"}',
        "utf8-surrogate": b'{"ts":@NOW@,"value":2,"unit":"\xed\xa0\x80"}',
        "utf8-truncated-sequence": b'{"ts":@NOW@,"value":2,"unit":"\xe2\x82"}',
        "utf8-latin1-device": b'{"device_id":"d\xe9v","ts":@NOW@,"value":2}',
        "utf16-json": '{"ts":1,"value":2}'.encode("utf-16"),
    }.items():
        add(name, raw(name, template), "invalid_utf8")

    # --- every wrong type per field --------------------------------------------------
    wrong = {
        "ts-bool": {"ts": True},
        "ts-float": {"ts": 1.7e12},
        "ts-array": {"ts": [1]},
        "ts-object": {"ts": {"ms": 1}},
        "value-string": {"value": "21.5"},
        "value-nan-string": {"value": "NaN"},
        "value-bool": {"value": True},
        "value-array": {"value": [21.0]},
        "value-object": {"value": {"v": 21.0}},
        "device-id-int": {"device_id": 7},
        "device-id-array": {"device_id": ["dev"]},
        "sensor-type-int": {"sensor_type": 3},
        "site-array": {"site": ["a"]},
        "seq-string": {"seq": "1"},
        "seq-bool": {"seq": True},
        "unit-int": {"unit": 1},
        "seq-negative": {"seq": -1},
        "seq-2-pow-53": {"seq": 2**53},
        "seq-2-pow-64": {"seq": 2**64},
        "seq-float": {"seq": 1.5},
        "seq-integral-float": {"seq": 1.0},
    }
    for name, fields in wrong.items():
        field_case(name, "wrong_type", **fields)
    for name, template in {  # JSON null (obj() drops None)
        "ts-null": b'{"case":"@MARK@","ts":null,"value":21.0}',
        "value-null": b'{"case":"@MARK@","ts":@NOW@,"value":null}',
    }.items():
        add(name, raw(name, template), "wrong_type")
    add("missing-ts", lambda now: obj("missing-ts", now, ts=None), "missing_field")
    add("missing-value", lambda now: obj("missing-value", now, value=None), "missing_field")
    field_case("missing-device-id", "missing_field", GATEWAY_T)
    field_case(
        "missing-sensor-type", "missing_field", GATEWAY, device_id=good_id("missing-sensor-type")
    )

    # --- non-finite numbers ----------------------------------------------------------
    for name, literal in {
        "value-nan": b"NaN",
        "value-infinity": b"Infinity",
        "value-minus-infinity": b"-Infinity",
        "value-1e999": b"1e999",
        "value-minus-1e999": b"-1e999",
    }.items():
        template = b'{"case":"@MARK@","ts":@NOW@,"value":' + literal + b"}"
        add(name, raw(name, template), "non_finite_value")
    add("ts-1e999", raw("ts-1e999", b'{"case":"@MARK@","ts":1e999,"value":1}'), "non_finite_value")

    # --- timestamps --------------------------------------------------------------------
    oob = "ts_out_of_bounds"
    add("ts-in-seconds", lambda now: obj("ts-in-seconds", now, ts=now // 1000), oob)
    add("ts-far-future", lambda now: obj("ts-far-future", now, ts=now + 10 * DAY_MS), oob)
    add("ts-past-future-skew", lambda now: obj("ts-past-future-skew", now, ts=now + 310_000), oob)
    add("ts-far-past", lambda now: obj("ts-far-past", now, ts=now - 31 * DAY_MS), oob)
    field_case("ts-zero", oob, ts=0)
    field_case("ts-negative", oob, ts=-1)
    field_case("ts-int64-max", oob, ts=2**63 - 1)
    field_case("ts-2-pow-64", oob, ts=2**64)
    add(
        "ts-iso-no-timezone",
        lambda now: obj("ts-iso-no-timezone", now, ts=iso(now, tz=False)),
        "bad_timestamp",
    )
    field_case("ts-iso-garbage", "bad_timestamp", ts="yesterday")
    field_case("ts-iso-empty", "bad_timestamp", ts="")
    field_case("ts-digits-string", "bad_timestamp", ts="1764400000123")
    field_case("ts-iso-year-2999", oob, ts="2999-01-01T00:00:00+00:00")
    g = Good(good_id("ts-iso-utc"), "temperature", SITE, 21.0)
    add(
        "ts-iso-utc",  # an ISO time with a zone is fine
        lambda now, g=g: obj("ts-iso-utc", now, ts=iso(now), device_id=g.device_id),
        None,
        GATEWAY_T,
        good=(g,),
    )

    # --- ids in the payload ----------------------------------------------------------
    for name, device in {
        "id-space": "dev 1",
        "id-slash": "dev/1",
        "id-plus": "dev+1",
        "id-hash": "dev#1",
        "id-unicode": "dév-1",
        "id-emoji": "dev-\U0001f525",
        "id-65-chars": "d" * 65,
        "id-empty": "",
        "id-trailing-newline": "dev-1\n",
        "id-nul": "dev\x001",
        "id-leading-space": " dev-1",
    }.items():
        field_case(name, "bad_id", GATEWAY_T, device_id=device)
    field_case("site-space", "bad_id", GATEWAY_T, device_id=good_id("site-space"), site="a b")
    field_case(
        "site-65-chars", "bad_id", GATEWAY_T, device_id=good_id("site-65-chars"), site="s" * 65
    )
    g = Good((good_id("id-64-chars") + "p" * 64)[:64], "temperature", SITE, 21.0)
    add(
        "id-64-chars",
        lambda now, g=g: obj("id-64-chars", now, device_id=g.device_id),
        None,
        GATEWAY_T,
        good=(g,),
    )

    # --- sensor types ------------------------------------------------------------------
    for name, sensor_type in {
        "type-unknown": "nosuch",
        "type-uppercase": "Temperature",
        "type-empty": "",
        "type-65-chars": "t" * 65,
        "type-with-dash": "air-quality",
    }.items():
        field_case(
            name, "unknown_sensor_type", GATEWAY, device_id=good_id(name), sensor_type=sensor_type
        )
    field_case(
        "type-unknown-in-topic",
        "unknown_sensor_type",
        f"sensors/{SITE}/nosuch/{mark('type-unknown-in-topic')}",
    )

    # --- payload contradicting its topic -------------------------------------------
    field_case("mismatch-device", "topic_mismatch", device_id="someone-else")
    field_case("mismatch-type", "topic_mismatch", sensor_type="humidity")
    field_case("mismatch-site", "topic_mismatch", site="elsewhere")

    # --- units ---------------------------------------------------------------------------
    for name, unit in {
        "unit-fahrenheit": "fahrenheit",
        "unit-wrong-case": "Celsius",
        "unit-empty": "",
        "unit-of-humidity": "percent",
    }.items():
        field_case(name, "bad_unit", unit=unit)
    g = Good(good_id("unit-right"), "temperature", SITE, 21.0)
    add(
        "unit-right",
        lambda now, g=g: obj("unit-right", now, device_id=g.device_id, unit="celsius"),
        None,
        GATEWAY_T,
        good=(g,),
    )
    g = Good(good_id("seq-max"), "temperature", SITE, 21.0)
    add(
        "seq-max",  # 2**53 - 1 is the largest seq allowed
        lambda now, g=g: obj("seq-max", now, device_id=g.device_id, seq=2**53 - 1),
        None,
        GATEWAY_T,
        good=(g,),
    )

    # --- bad topics (in this ingester's site) -----------------------------------------
    def topic_case(name: str, topic: str) -> None:
        add(name, lambda now: obj(name, now), "bad_topic", topic)

    m = mark
    topic_case("topic-too-deep", f"{GATEWAY_T}/{m('topic-too-deep')}/extra")
    topic_case("topic-many-levels", f"{GATEWAY}/a/b/c/d/e/f/g")
    topic_case("topic-empty-type", f"{GATEWAY}//{m('topic-empty-type')}")
    topic_case("topic-empty-device", f"{GATEWAY_T}/")
    topic_case("topic-site-trailing-slash", f"{GATEWAY}/")
    topic_case("topic-type-uppercase", f"{GATEWAY}/Temperature/{m('topic-type-uppercase')}")
    topic_case("topic-type-dash", f"{GATEWAY}/air-quality/{m('topic-type-dash')}")
    topic_case("topic-device-space", f"{GATEWAY_T}/{m('topic-device-space')} x")
    topic_case("topic-device-unicode", f"{GATEWAY_T}/{m('topic-device-unicode')}é")
    long_device = (m("topic-device-65") + "d" * 65)[:65]
    topic_case("topic-device-65", f"{GATEWAY_T}/{long_device}")
    topic_case("topic-site-65", f"sensors/{LONG_SITE}/temperature/{m('topic-site-65')}")

    # --- gateway batches: good items forwarded, bad ones listed in one dead letter -----
    def item(name: str, n: int, sensor_type: str = "temperature", **fields: object) -> dict:
        value = {"humidity": 45.0, "pressure": 1013.0}.get(str(sensor_type), 21.0)
        body = {"device_id": good_id(name, n), "sensor_type": sensor_type, "value": value}
        body.update(fields)
        return {k: v for k, v in body.items() if v is not None}

    def batch(name: str, items: list[dict]) -> Payload:
        def make(now: int) -> bytes:
            return json.dumps([{"case": mark(name), "ts": now, **i} for i in items]).encode()

        return make

    def goods(name: str, items: list[tuple[int, str]], site: str = SITE) -> tuple[Good, ...]:
        value = {"temperature": 21.0, "humidity": 45.0, "pressure": 1013.0}
        return tuple(Good(good_id(name, n), t, site, value[t]) for n, t in items)

    name = "batch-mixed-slow-path"  # items the typed decode cannot take
    add(
        name,
        batch(
            name,
            [
                item(name, 0),
                item(name, 1, value="x"),
                item(name, 2, "humidity"),
                item(name, 3, ts=1),
                item(name, 4, device_id="a b"),
            ],
        ),
        "wrong_type",
        GATEWAY,
        items=((1, "wrong_type"), (3, "ts_out_of_bounds"), (4, "bad_id")),
        good=goods(name, [(0, "temperature"), (2, "humidity")]),
    )
    name = "batch-mixed-fast-path"  # every item decodes; some fail the checks
    add(
        name,
        batch(
            name,
            [
                item(name, 0, "pressure"),
                item(name, 1, sensor_type="nosuch"),
                item(name, 2),
                item(name, 3, unit="kelvin"),
                item(name, 4, ts=0),
                item(name, 5, "humidity"),
            ],
        ),
        "unknown_sensor_type",
        GATEWAY,
        items=((1, "unknown_sensor_type"), (3, "bad_unit"), (4, "ts_out_of_bounds")),
        good=goods(name, [(0, "pressure"), (2, "temperature"), (5, "humidity")]),
    )
    name = "batch-mixed-typed-topic"  # the topic names the type: a humidity item contradicts it
    add(
        name,
        batch(
            name,
            [item(name, 0, sensor_type=None), item(name, 1, "humidity"), item(name, 2, seq=-5)],
        ),
        "topic_mismatch",
        GATEWAY_T,
        items=((1, "topic_mismatch"), (2, "wrong_type")),
        good=goods(name, [(0, "temperature")]),
    )
    name = "batch-mixed-not-objects"
    add(
        name,
        lambda now, name=name: (
            b"[1,"
            + json.dumps({"case": mark(name), "ts": now, **item(name, 1)}).encode()
            + b',null,"x",[]]'
        ),
        "wrong_type",
        GATEWAY,
        items=((0, "wrong_type"), (2, "wrong_type"), (3, "wrong_type"), (4, "wrong_type")),
        good=goods(name, [(1, "temperature")]),
    )
    name = "batch-all-good"
    add(
        name,
        batch(name, [item(name, 0), item(name, 1, "humidity"), item(name, 2, "pressure")]),
        None,
        GATEWAY,
        good=goods(name, [(0, "temperature"), (1, "humidity"), (2, "pressure")]),
    )

    # --- QoS 0/1/2 and a retained live publish ---------------------------------------
    add("qos0-malformed", b"{", "malformed_json", qos=0)
    add("qos2-malformed", b"{", "malformed_json", qos=2)
    add("qos2-empty", b"", "empty_payload", qos=2)
    for qos in (0, 1, 2):
        good_case(f"qos{qos}-good", qos=qos)
    name = "retained-live"  # forwarded once; clearing it (empty, retained) is an empty payload
    g = Good(mark(name), "temperature", SITE, 21.0)  # no device id in the payload: the topic's
    add(
        name,
        lambda now: obj("retained-live", now, case=None),
        "empty_payload",
        good=(g,),
        retain=True,
        then=((f"{GATEWAY_T}/{mark(name)}", b"", True),),
    )

    # --- outside any one site: an ingester on the default subscription (sensors/#) --
    for name, topic in {
        "wide-root-only": "sensors",
        "wide-root-trailing-slash": "sensors/",
        "wide-empty-site": f"sensors//temperature/{m('wide-empty-site')}",
        "wide-site-space": f"sensors/a b/temperature/{m('wide-site-space')}",
        "wide-site-unicode": f"sensors/sité/temperature/{m('wide-site-unicode')}",
    }.items():
        add(name, lambda now, name=name: obj(name, now), "bad_topic", topic, wide=True)
    # Not under sensors/: the broker never delivers these to the ingester at all.
    for name, topic in {
        "wide-root-wrong-case": f"Sensors/{SITE}/temperature/{m('wide-root-wrong-case')}",
        "wide-root-singular": f"sensor/{SITE}/temperature/{m('wide-root-singular')}",
        "wide-root-leading-slash": f"/sensors/{SITE}/temperature/{m('wide-root-leading-slash')}",
    }.items():
        add(name, lambda now, name=name: obj(name, now), None, topic, wide=True)
    return cases


CASES = _cases()
assert len({c.name for c in CASES}) == len(CASES), "case names must be unique"
