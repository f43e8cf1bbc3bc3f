"""The InfluxDB schema every part shares: measurement names, tags and fields.

The sink writes these points, the dashboard and the demo query them, and
``iotpipe status --record`` writes the ``pipeline`` measurement. One table
here instead of each spelling the names: a rename or a new field lands in
one place, and ``tests/unit/test_schema.py`` checks the writers against it.
Timestamps are integer milliseconds (``PRECISION``) so a replay overwrites
a point instead of duplicating it.
"""

from __future__ import annotations

from dataclasses import dataclass

PRECISION = "ms"


@dataclass(frozen=True, slots=True)
class Measurement:
    """One measurement: its tag keys, its field keys and what its timestamp means."""

    name: str
    tags: tuple[str, ...]
    fields: tuple[str, ...]
    time: str
    field_suffix: str = ""
    """Fields whose key ends with this are allowed too (``pipeline``'s per-counter rates)."""

    def allows_field(self, key: str) -> bool:
        return key in self.fields or (bool(self.field_suffix) and key.endswith(self.field_suffix))

    def __str__(self) -> str:
        return self.name


_STATS = ("count", "mean", "min", "max", "std", "last")

SENSOR_AGG = Measurement(
    "sensor_agg", ("device_id", "sensor_type", "site", "window"), _STATS, "window start"
)
SITE_AGG = Measurement(
    "site_agg", ("sensor_type", "site", "window"), ("devices", *_STATS), "window start"
)
ANOMALY = Measurement(
    "anomaly",
    ("detector", "device_id", "sensor_type", "severity", "site"),
    ("value", "score", "message", "state", "alert_id"),
    "reading time",
)
READING = Measurement("reading", ("device_id", "sensor_type", "site"), ("value", "seq"), "reading")
PIPELINE = Measurement(
    "pipeline",
    ("kind", "service", "topic", "role", "sensor_type", "group", "component", "reason", "detector"),
    ("collect_s", "up", "messages", "end_offset", "rate", "lag", "count"),
    "snapshot time",
    field_suffix="_rate",
)

MEASUREMENTS: tuple[Measurement, ...] = (SENSOR_AGG, SITE_AGG, ANOMALY, READING, PIPELINE)
