"""Dashboard Flux building: escaping of user input, time bounds, step and window sizing."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dashboard import flux

_UNESCAPE = {"\\": "\\", '"': '"', "n": "\n", "r": "\r", "t": "\t"}


def read_flux_string(text: str, start: int = 0) -> tuple[str, int]:
    """Lex one Flux string literal at ``text[start]``, strictly.

    Returns the value and the index after the closing quote. A raw ``$`` fails
    the test: Flux would start interpolation at ``${`` and take the character
    after any other ``$`` raw, so only the ``\\x24`` byte escape is safe.
    """
    assert text[start] == '"'
    out: list[str] = []
    raw = bytearray()
    i = start + 1
    while True:
        ch = text[i]
        if ch == "\\" and text[i + 1] == "x":
            raw.append(int(text[i + 2 : i + 4], 16))
            i += 4
            continue
        if raw:
            out.append(raw.decode())
            raw.clear()
        if ch == '"':
            return "".join(out), i + 1
        if ch == "\\":
            nxt = text[i + 1]
            assert nxt in _UNESCAPE, f"invalid escape \\{nxt}"
            out.append(_UNESCAPE[nxt])
            i += 2
            continue
        assert ch != "$", "raw $ in a Flux string"
        out.append(ch)
        i += 1


@given(st.text(max_size=60))
def test_flux_string_round_trips_any_text(value: str) -> None:
    literal = flux.flux_string(value)
    parsed, end = read_flux_string(literal)
    assert parsed == value
    assert end == len(literal)  # the literal cannot be closed early


@given(st.text(alphabet=st.characters(categories=["Cc"]), min_size=1, max_size=20))
def test_no_control_character_reaches_the_query_raw(value: str) -> None:
    """NUL, ESC, DEL, the C1 range: each becomes byte escapes, never a raw character."""
    literal = flux.flux_string(value)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in literal), literal
    assert read_flux_string(literal)[0] == value


@pytest.mark.parametrize(
    "attack",
    [
        '") |> drop(columns: ["_value"]) //',
        '" or true or r.x == "',
        "${string(v: 1)}",
        "\\",
        'dev\\"',
        "line\nbreak",
        "$${{",
    ],
)
def test_user_input_stays_inside_its_literal(attack: str) -> None:
    query = flux.device_search("iot", attack, 3600, 20)
    call = "strings.hasPrefix(v: r._value, prefix: "
    at = query.index(call) + len(call)
    value, end = read_flux_string(query, at)
    assert value == attack
    assert query[end:].startswith("))")
    alert_q = flux.alerts("iot", 3600, flux.AlertFilter(detector=attack, device_id=attack), 10)
    assert alert_q.count("r.detector == ") == 1
    at = alert_q.index("r.detector == ") + len("r.detector == ")
    assert read_flux_string(alert_q, at)[0] == attack


def test_spans_come_from_the_menu_only() -> None:
    assert flux.span_s("1h") == 3600
    for bad in ("0m", "1000d", "-1h", "1h) |> drop()"):
        with pytest.raises(ValueError, match="range must be one of"):
            flux.span_s(bad)


@pytest.mark.parametrize(
    ("range_s", "windows", "step", "window"),
    [
        (900, [10_000, 60_000], 10, 10_000),
        (3600, [10_000, 60_000], 30, 10_000),  # 15 s would mix 1 and 2 windows per step
        (6 * 3600, [10_000, 60_000], 120, 60_000),
        (86_400, [10_000, 60_000], 600, 60_000),
        (7 * 86_400, [10_000, 60_000], 3600, 60_000),
        (900, [60_000, 300_000], 60, 60_000),  # never finer than the shortest window
        (3600, [7_000], 21, 7_000),  # odd length: a multiple of it
    ],
)
def test_resolution_is_a_whole_number_of_windows(
    range_s: int, windows: list[int], step: int, window: int
) -> None:
    assert flux.pick_resolution(range_s, windows) == (step, window)
    assert range_s / step <= flux.MAX_POINTS
    assert (step * 1000) % window == 0


def test_resolution_needs_windows() -> None:
    with pytest.raises(ValueError):
        flux.pick_resolution(3600, [])


def _every_query() -> list[str]:
    span = flux.Span(3600, 15, "10s")
    filt = flux.AlertFilter(severity="critical", detector="threshold", sensor_type="gas")
    return [
        flux.throughput("iot", span),
        flux.devices_reporting("iot", "10s", 300),
        flux.alert_counts("iot", 3600),
        flux.type_stats("iot", span),
        flux.type_stats("iot", span, device_id="dev-1"),
        flux.type_stats_rollup("iot", span),
        flux.throughput("iot", span, flux.SITE_AGG),
        flux.alerts("iot", 3600, filt, 50),
        flux.tag_values("iot", "detector", flux.ANOMALY, 86_400),
        flux.device_search("iot", "dev-", 86_400, 20),
    ]


def test_every_query_is_time_bounded_and_downsampled_or_limited() -> None:
    for query in _every_query():
        assert re.search(r"range\(start: -\d+s\)|start: -\d+s,", query), query
        reduced = ("aggregateWindow(", "limit(n:", "count()", "last()")
        assert any(r in query for r in reduced), query


def test_charts_use_the_stored_window_and_the_step() -> None:
    q = flux.type_stats("iot", flux.Span(86_400, 600, "1m"), device_id="dev-7")
    assert 'r.window == "1m"' in q
    assert 'r.device_id == "dev-7"' in q
    # mean: grouped windows (pushed down whole); min/max: per series, then per type.
    assert q.count("aggregateWindow(every: 600s") == 5
    assert q.count("fn: mean)") == 1 and q.count("fn: min)") == 2 and q.count("fn: max)") == 2
    assert q.count("from(bucket:") == 3


def test_rollup_query_weights_site_means_by_count() -> None:
    q = flux.type_stats_rollup("iot", flux.Span(3600, 30, "10s"))
    assert 'r._measurement == "site_agg" and r.window == "10s"' in q
    assert "_value: r.mean * float(v: r.count)" in q
    assert 'set(key: "_field", value: "n")' in q
    assert q.count("aggregateWindow(every: 30s") == 7  # n, min, max twice; wsum once
    assert "sensor_agg" not in q
    assert 'r._measurement == "site_agg"' in flux.throughput(
        "iot", flux.Span(3600, 30, "10s"), flux.SITE_AGG
    )
    with pytest.raises(ValueError):
        flux.throughput("iot", flux.Span(3600, 30, "10s"), "anomaly")


def test_alert_filter_checks_severity_and_skips_empty_filters() -> None:
    with pytest.raises(ValueError, match="severity"):
        flux.AlertFilter(severity="urgent")
    assert flux.AlertFilter().conditions() == ['r._measurement == "anomaly"']
    conds = flux.AlertFilter(severity="warning", sensor_type="gas").conditions()
    assert conds[1:] == ['r.severity == "warning"', 'r.sensor_type == "gas"']


@pytest.mark.parametrize("bad", ['"a${x}"', '"$\\\\"', '"\\$"', '"a"b"'])
def test_the_strict_lexer_refuses_unsafe_literals(bad: str) -> None:
    """The checker above is not a rubber stamp: unsafe literals fail it."""
    with pytest.raises((AssertionError, IndexError)):
        _value, end = read_flux_string(bad)
        assert end == len(bad)
