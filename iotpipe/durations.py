"""One grammar for durations and moments, used by settings, the CLI and the labels.

Window lengths (``IOTPIPE_FLOW_WINDOWS=10s,1m``), dead-letter look-backs
(``--since 30m``) and the simulator's start (``--start -2h``) all read the
same ``<number><unit>`` text, and the ``window`` tag in InfluxDB is written by
``format_duration``, its inverse, so a label read back parses to the same
length.
"""

from __future__ import annotations

import re
from datetime import datetime

UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"([+-]?)(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")


def parse_duration_ms(text: str, *, signed: bool = False) -> int:
    """'500ms', '10s', '1.5m', '2h', '7d' -> milliseconds; with ``signed``, '-2h' too.

    Raises ``ValueError`` naming the text.
    """
    match = _DURATION.fullmatch(text.strip())
    if not match or (match.group(1) and not signed):
        example = "-2h, +30m" if signed else "500ms, 10s, 1m, 2h or 7d"
        raise ValueError(f"{text!r} is not a duration like {example}")
    sign = -1 if match.group(1) == "-" else 1
    return sign * round(float(match.group(2)) * UNITS_MS[match.group(3)])


def parse_durations(text: str) -> tuple[int, ...]:
    """'10s,1m' -> (10000, 60000): whole, positive durations (window lengths)."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        ms = parse_duration_ms(part) if re.fullmatch(r"\d+\s*[a-z]+", part) else 0
        if ms <= 0:
            raise ValueError(f"{part!r} is not a duration like 500ms, 10s, 1m or 1h")
        out.append(ms)
    return tuple(out)


def format_duration(ms: int) -> str:
    """10000 -> '10s', 60000 -> '1m', 3600000 -> '1h' (the largest whole unit up to hours)."""
    for unit in ("h", "m", "s"):
        if ms % UNITS_MS[unit] == 0:
            return f"{ms // UNITS_MS[unit]}{unit}"
    return f"{ms}ms"


def parse_moment(text: str, now_ms: int, *, bare_is_past: bool) -> int:
    """ISO-8601 with a timezone, epoch ms, or a duration from now -> epoch ms.

    '-2h' is two hours ago and '+30m' half an hour ahead; a bare '2h' means
    ago when ``bare_is_past`` (a look-back such as ``--since``), else ahead.
    Raises ``ValueError`` saying what was expected.
    """
    text = text.strip()
    if text.isdigit():
        return int(text)
    if _DURATION.fullmatch(text):
        delta = parse_duration_ms(text, signed=True)
        if bare_is_past and text[0] not in "+-":
            delta = -delta
        return now_ms + delta
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r}: expected ISO-8601 with a timezone, epoch ms, or a duration such as"
            " 30m, -2h, +1d"
        ) from None
    if moment.tzinfo is None:
        raise ValueError(f"{text!r}: give a timezone, e.g. {text}Z")
    return int(moment.timestamp() * 1000)
