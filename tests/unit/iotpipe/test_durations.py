"""The one duration grammar: settings, look-backs, the simulator's start and the window tag."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iotpipe.durations import format_duration, parse_duration_ms, parse_durations, parse_moment

NOW = 1_800_000_000_000


@pytest.mark.parametrize(
    ("text", "ms"),
    [("500ms", 500), ("10s", 10_000), ("1.5m", 90_000), ("2h", 7_200_000), ("7d", 604_800_000)],
)
def test_durations(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("text", ["", "10", "s", "10x", "-2h", "1 0s", "10s,", "1e3s"])
def test_not_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration_ms(text)


def test_signed_durations() -> None:
    assert parse_duration_ms("-2h", signed=True) == -7_200_000
    assert parse_duration_ms("+30m", signed=True) == 1_800_000


def test_window_lists_take_whole_positive_durations() -> None:
    assert parse_durations("10s, 1m,1h") == (10_000, 60_000, 3_600_000)
    for bad in ("0s", "1.5s", "10s,,1m", "-1m"):
        with pytest.raises(ValueError, match="not a duration"):
            parse_durations(bad)


@given(st.integers(min_value=1, max_value=10**10))
def test_a_window_label_reads_back_as_its_length(ms: int) -> None:
    assert parse_durations(format_duration(ms)) == (ms,)


def test_moments() -> None:
    assert parse_moment("30m", NOW, bare_is_past=True) == NOW - 1_800_000
    assert parse_moment("30m", NOW, bare_is_past=False) == NOW + 1_800_000
    assert parse_moment("-2h", NOW, bare_is_past=False) == NOW - 7_200_000
    assert parse_moment("+1d", NOW, bare_is_past=True) == NOW + 86_400_000
    assert parse_moment("1700000000000", NOW, bare_is_past=True) == 1_700_000_000_000
    assert parse_moment("2026-01-01T00:00:00Z", NOW, bare_is_past=True) == 1_767_225_600_000
    with pytest.raises(ValueError, match="timezone"):
        parse_moment("2026-01-01T00:00:00", NOW, bare_is_past=True)
    with pytest.raises(ValueError, match="expected ISO-8601"):
        parse_moment("yesterday", NOW, bare_is_past=True)
