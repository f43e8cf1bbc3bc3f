"""InfluxDB line protocol for the pipeline's measurements, built in bulk.

Why not influxdb-client's ``Point``: one object per reading is several times
slower, and it mangles a tag value that ends in a backslash. Here each point
is one f-string; the escaped tag set of a series is cached, because a batch
repeats the same devices over and over.

Escaping (checked against InfluxDB 2.7's parser, see the integration tests):

- tag values: ``,``, ``=`` and space get a backslash. InfluxDB treats any
  separator right after a backslash as escaped and has no escape for the
  backslash itself, so a value is *unrepresentable* when it is empty, holds
  a newline, or has a backslash right before ``,``/``=``/space or at its end
  (``dev\\``). Such points are returned as rejections (the writer
  dead-letters them with the reason), never written altered.
- string fields: ``"`` and ``\\`` get a backslash; newlines are fine inside quotes.
- measurement names and keys come from ``iotpipe.schema`` (the shared contract).

Types are fixed per field: floats always carry a decimal point or exponent
(``21.0``, never ``21``), counts are integers (``3i``), NaN and infinities
(which InfluxDB cannot store) are left out of the point, and a point left
with no fields is rejected. Timestamps are integer milliseconds
(``iotpipe.schema.PRECISION``), so the same input always gives the same line and a replay
overwrites instead of duplicating.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from iotpipe import schema
from iotpipe.model import Aggregate, Alert, Reading, SiteAggregate

AGG_MEASUREMENT = schema.SENSOR_AGG.name
SITE_AGG_MEASUREMENT = schema.SITE_AGG.name
ANOMALY_MEASUREMENT = schema.ANOMALY.name
READING_MEASUREMENT = schema.READING.name

Item = Aggregate | SiteAggregate | Alert | Reading

_TAG_TABLE = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_STR_TABLE = str.maketrans({'"': '\\"', "\\": "\\\\"})
_TAG_SPECIAL = re.compile(r"[,= \n\\]")
# A backslash directly before a separator or the end: the parser would read
# the separator after it as escaped.
_BAD_BACKSLASH = re.compile(r"\\(?=[,= ]|$)")
_SERIES_CACHE = 1 << 18


class UnrepresentableError(ValueError):
    """A tag value line protocol cannot carry unambiguously."""


def escape_tag(value: str) -> str:
    """Escape a tag value; raises ``UnrepresentableError`` (see module docstring)."""
    if not value:
        raise UnrepresentableError("empty tag value")
    if _TAG_SPECIAL.search(value) is None:
        return value
    if "\n" in value:
        raise UnrepresentableError(f"tag value {value!r} holds a newline")
    if "\\" in value and _BAD_BACKSLASH.search(value):
        raise UnrepresentableError(
            f"tag value {value!r} has a backslash before a separator or at its end"
        )
    return value.translate(_TAG_TABLE)


def escape_string_field(value: str) -> str:
    """A string field value, quotes included."""
    return '"' + value.translate(_STR_TABLE) + '"'


@lru_cache(maxsize=_SERIES_CACHE)
def _agg_series(device_id: str, sensor_type: str, site: str, window: str) -> str:
    return (
        f"{AGG_MEASUREMENT},device_id={escape_tag(device_id)},sensor_type={escape_tag(sensor_type)}"
        f",site={escape_tag(site)},window={escape_tag(window)}"
    )


@lru_cache(maxsize=_SERIES_CACHE)
def _site_agg_series(site: str, sensor_type: str, window: str) -> str:
    return (
        f"{SITE_AGG_MEASUREMENT},sensor_type={escape_tag(sensor_type)}"
        f",site={escape_tag(site)},window={escape_tag(window)}"
    )


@lru_cache(maxsize=_SERIES_CACHE)
def _anomaly_series(
    device_id: str, sensor_type: str, site: str, detector: str, severity: str
) -> str:
    return (
        f"{ANOMALY_MEASUREMENT},detector={escape_tag(detector)},device_id={escape_tag(device_id)}"
        f",sensor_type={escape_tag(sensor_type)},severity={escape_tag(severity)}"
        f",site={escape_tag(site)}"
    )


@lru_cache(maxsize=_SERIES_CACHE)
def _reading_series(device_id: str, sensor_type: str, site: str) -> str:
    return (
        f"{READING_MEASUREMENT},device_id={escape_tag(device_id)}"
        f",sensor_type={escape_tag(sensor_type)},site={escape_tag(site)}"
    )


@dataclass(frozen=True, slots=True)
class Rejected:
    """An item that could not become a point, and why (goes to ``dlq.sink``)."""

    item: object
    reason: str
    detail: str


@dataclass(slots=True)
class Lines:
    """Line-protocol lines (no trailing newline) plus the items refused."""

    lines: list[str] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)

    def extend(self, other: Lines) -> None:
        self.lines.extend(other.lines)
        self.rejected.extend(other.rejected)


def _float_fields(pairs: Iterable[tuple[str, float]]) -> str:
    """Slow path: drop non-finite floats (InfluxDB cannot store them)."""
    return ",".join(f"{k}={v!r}" for k, v in pairs if math.isfinite(v))


def point_line(
    measurement: schema.Measurement,
    tags: dict[str, str | None],
    fields: dict[str, float | int],
    ts: int,
) -> str:
    """One point of a low-volume measurement (``pipeline``), checked against the schema.

    Empty tags are left out, as are non-finite floats; a point left with no
    field, or a key the schema does not name, is a ``ValueError`` (a bug in
    the caller, not bad input).
    """
    for key in tags:
        if key not in measurement.tags:
            raise ValueError(f"{measurement.name} has no tag {key!r}")
    body = []
    for key, value in fields.items():
        if not measurement.allows_field(key):
            raise ValueError(f"{measurement.name} has no field {key!r}")
        if isinstance(value, bool | int):
            body.append(f"{key}={int(value)}i")
        elif math.isfinite(value):
            body.append(f"{key}={float(value)!r}")
    if not body:
        raise ValueError(f"{measurement.name} point with no finite field")
    tagset = "".join(f",{k}={escape_tag(v)}" for k, v in sorted(tags.items()) if v)
    return f"{measurement.name}{tagset} {','.join(body)} {int(ts)}"


def aggregate_lines(aggs: Iterable[Aggregate]) -> Lines:
    """``sensor_agg`` points, timestamped at the window start."""
    out = Lines()
    for a in aggs:
        try:
            series = _agg_series(a.device_id, a.sensor_type, a.site, a.window)
        except UnrepresentableError as exc:
            out.rejected.append(Rejected(a, "unrepresentable_tag", str(exc)))
            continue
        out.lines.append(f"{series} {_stat_fields(a)} {int(a.start)}")
    return out


def site_aggregate_lines(aggs: Iterable[SiteAggregate]) -> Lines:
    """``site_agg`` points (per-site, per-type roll-ups), timestamped at the window start."""
    out = Lines()
    for a in aggs:
        try:
            series = _site_agg_series(a.site, a.sensor_type, a.window)
        except UnrepresentableError as exc:
            out.rejected.append(Rejected(a, "unrepresentable_tag", str(exc)))
            continue
        out.lines.append(f"{series} devices={int(a.devices)}i,{_stat_fields(a)} {int(a.start)}")
    return out


def _stat_fields(a: Aggregate | SiteAggregate) -> str:
    """count, mean, min, max, std, last; non-finite floats left out."""
    mean, lo, hi, std, last = (
        float(a.mean),
        float(a.min),
        float(a.max),
        float(a.std),
        float(a.last),
    )
    total = mean + lo + hi + std + last
    if total - total == 0.0:  # all finite (NaN/inf would make this NaN)
        return (
            f"count={int(a.count)}i,mean={mean!r},min={lo!r},max={hi!r},std={std!r},last={last!r}"
        )
    floats = _float_fields((("mean", mean), ("min", lo), ("max", hi), ("std", std), ("last", last)))
    return f"count={int(a.count)}i" + ("," + floats if floats else "")


def anomaly_lines(alerts: Iterable[Alert]) -> Lines:
    """``anomaly`` points, timestamped at the reading's time; ``state`` (raised, escalated,
    cleared) and ``alert_id`` say which episode and step of the lifecycle each one is."""
    out = Lines()
    append = out.lines.append
    for a in alerts:
        try:
            series = _anomaly_series(a.device_id, a.sensor_type, a.site, a.detector, a.severity)
        except UnrepresentableError as exc:
            out.rejected.append(Rejected(a, "unrepresentable_tag", str(exc)))
            continue
        value, score = float(a.value), float(a.score)
        if value - value == 0.0 and score - score == 0.0:
            fields = f"value={value!r},score={score!r}"
        else:
            fields = _float_fields((("value", value), ("score", score)))
        fields = (fields + "," if fields else "") + "message=" + escape_string_field(a.message)
        fields += ",state=" + escape_string_field(a.state)
        fields += ",alert_id=" + escape_string_field(a.alert_id)
        append(f"{series} {fields} {int(a.ts)}")
    return out


def reading_lines(readings: Iterable[Reading]) -> Lines:
    """Raw ``reading`` points (optional in the schema)."""
    out = Lines()
    append = out.lines.append
    for r in readings:
        try:
            series = _reading_series(r.device_id, r.sensor_type, r.site)
        except UnrepresentableError as exc:
            out.rejected.append(Rejected(r, "unrepresentable_tag", str(exc)))
            continue
        value = float(r.value)
        if not math.isfinite(value):
            out.rejected.append(Rejected(r, "non_finite_value", f"value {value} is not finite"))
            continue
        seq = f",seq={int(r.seq)}i" if r.seq is not None else ""
        append(f"{series} value={value!r}{seq} {int(r.ts)}")
    return out


_BUILDERS: dict[type, Callable[[list[object]], Lines]] = {
    Aggregate: aggregate_lines,  # type: ignore[dict-item]
    SiteAggregate: site_aggregate_lines,  # type: ignore[dict-item]
    Alert: anomaly_lines,  # type: ignore[dict-item]
    Reading: reading_lines,  # type: ignore[dict-item]
}


def build_lines(items: Iterable[object]) -> Lines:
    """Lines for a mixed batch; lists are flattened, unknown objects rejected."""
    groups: dict[type, list[object]] = {}
    out = Lines()
    for item in items:
        for one in item if isinstance(item, list | tuple) else (item,):
            kind = type(one)
            if kind in _BUILDERS:
                groups.setdefault(kind, []).append(one)
            else:
                out.rejected.append(Rejected(one, "unsupported_item", f"not a point: {kind!r}"))
    for kind, group in groups.items():
        out.extend(_BUILDERS[kind](group))
    return out
