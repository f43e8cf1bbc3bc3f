"""Turn Flux rows and health snapshots into the JSON the pages draw.

Charts (uPlot) want columns: one shared, sorted time axis and one value array
per series, ``None`` where a series has no point. Everything here is pure, so
unit tests check it without a server.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from iotpipe import metrics as m

Row = Mapping[str, Any]
STAT_FIELDS = ("mean", "min", "max")
ALERT_COLUMNS = (
    "device_id",
    "sensor_type",
    "site",
    "detector",
    "severity",
    "state",
    "alert_id",
    "value",
    "score",
    "message",
)


def throughput(rows: Iterable[Row], step_s: int) -> dict[str, list[Any]]:
    """Summed ``count`` per bucket -> readings per second, oldest first."""
    pairs = sorted(
        (int(r["_time"]), float(r["_value"])) for r in rows if r.get("_value") is not None
    )
    return {"t": [t for t, _ in pairs], "v": [round(v / step_s, 3) for _, v in pairs]}


def stats_by_type(rows: Iterable[Row]) -> dict[str, dict[str, list[Any]]]:
    """Rows of (sensor_type, _time, _field, _value) -> mean/min/max columns per type.

    ``_field`` is ``mean``/``min``/``max`` (``flux.type_stats``), or
    ``min``/``max`` plus ``wsum`` and ``n`` (``flux.type_stats_rollup``), in
    which case the mean is ``wsum / n``: the mean of all readings.
    """
    cells: dict[str, dict[int, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        field, value = r.get("_field"), r.get("_value")
        if field not in (*STAT_FIELDS, "wsum", "n") or value is None:
            continue
        cell = cells[str(r["sensor_type"])][int(r["_time"])]
        cell[str(field)] = float(value)
        if "wsum" in cell and cell.get("n"):
            cell["mean"] = cell["wsum"] / cell["n"]
    out: dict[str, dict[str, list[Any]]] = {}
    for sensor_type in sorted(cells):
        by_time = cells[sensor_type]
        times = sorted(by_time)
        cols: dict[str, list[Any]] = {"t": times}
        for field in STAT_FIELDS:
            cols[field] = [by_time[t].get(field) for t in times]
        out[sensor_type] = cols
    return out


def alert_rows(rows: Iterable[Row]) -> list[dict[str, Any]]:
    """Pivoted anomaly rows -> feed items, newest first, with a stable key."""
    items = []
    for r in rows:
        item: dict[str, Any] = {"ts": int(r["_time"])}
        for col in ALERT_COLUMNS:
            item[col] = r.get(col)
        # points written before the lifecycle was stored have no state
        state = f"|{item['state']}" if item["state"] else ""
        item["key"] = f"{item['device_id']}|{item['detector']}|{item['ts']}{state}"
        items.append(item)
    items.sort(key=lambda i: i["ts"], reverse=True)
    return items


def with_anomalies(
    stats: Mapping[str, list[Any]], anomalies: Iterable[Mapping[str, Any]]
) -> dict[str, list[Any]]:
    """One device/type's mean/min/max columns plus an ``anomaly`` column.

    Anomalies happen at reading times, which are not window starts, so their
    times are merged into the axis; the stat columns get ``None`` there (the
    chart spans those gaps) and the anomaly column holds the reading's value.
    """
    marks: dict[int, float] = {}
    for a in anomalies:
        if a.get("value") is not None:
            marks[int(a["ts"])] = float(a["value"])
    base = {int(t): i for i, t in enumerate(stats.get("t", []))}
    times = sorted(set(base) | set(marks))
    out: dict[str, list[Any]] = {"t": times}
    for field in STAT_FIELDS:
        column = stats.get(field, [])
        out[field] = [column[base[t]] if t in base else None for t in times]
    out["anomaly"] = [marks.get(t) for t in times]
    return out


def alert_totals(rows: Iterable[Row]) -> dict[str, Any]:
    """Count rows grouped by severity -> total and per severity."""
    by_severity = {str(r["severity"]): int(r["_value"]) for r in rows if r.get("severity")}
    return {"total": sum(by_severity.values()), "by_severity": by_severity}


def first_count(rows: Iterable[Row]) -> int:
    """The single ``_value`` of a ``count()`` result; 0 for no rows (empty bucket)."""
    for r in rows:
        return int(r.get("_value") or 0)
    return 0


def _sample_sum(samples: Iterable[Mapping[str, Any]], name: str) -> float:
    return sum(float(s["value"]) for s in samples if s["name"] == name)


def pipeline_view(health: Mapping[str, Any]) -> dict[str, Any]:
    """The pipeline page's figures from ``PipelineHealth.to_dict()``.

    Cumulative counters (sink retries, dead letters) are summed over their
    labels; rates (per second, since the previous snapshot) are passed on.
    """
    components = []
    for c in health.get("components", []):
        samples = c.get("samples", [])
        up = c.get("state") == "up"
        entry: dict[str, Any] = {
            "name": c["name"],
            "kind": c["kind"],
            "state": c["state"],
            "error": c.get("error", ""),
            "rates": c.get("rates", {}),
        }
        if up and c["kind"] == "flow":
            entry["totals"] = {
                "readings": _sample_sum(samples, m.FLOW_READINGS.sample),
                "aggregates": _sample_sum(samples, m.FLOW_AGGREGATES.sample),
                "alerts": _sample_sum(samples, m.FLOW_ALERTS.sample),
                "late": _sample_sum(samples, m.FLOW_LATE.sample),
                "bad": _sample_sum(samples, m.FLOW_BAD.sample),
                "sink_points": _sample_sum(samples, m.SINK_POINTS.sample),
                "sink_retries": _sample_sum(samples, m.SINK_RETRIES.sample),
                "sink_dead_lettered": _sample_sum(samples, m.SINK_DEAD_LETTERED.sample),
            }
        elif up:
            entry["totals"] = {
                "messages": _sample_sum(samples, m.INGEST_MESSAGES.sample),
                "readings": _sample_sum(samples, m.INGEST_READINGS.sample),
                "produced": _sample_sum(samples, m.INGEST_PRODUCED.sample),
                "dead_lettered": _sample_sum(samples, m.INGEST_DEAD_LETTERED.sample),
            }
        components.append(entry)
    return {
        "at_ms": health.get("at_ms"),
        "services": health.get("services", []),
        "kafka_error": health.get("kafka_error"),
        "components": components,
        "lag": health.get("lag", []),
        "lag_by_topic": health.get("lag_by_topic", []),
        "topics": health.get("topics", []),
        "dead_letters": health.get("dead_letters", {}),
        "alerts": health.get("alerts", {}),
    }


def rate_point(view: Mapping[str, Any]) -> dict[str, Any]:
    """One point of the pipeline page's throughput history (readings/s per component)."""
    point: dict[str, Any] = {"t": view.get("at_ms")}
    for c in view.get("components", []):
        point[c["name"]] = (c.get("rates") or {}).get("readings")
    return point
