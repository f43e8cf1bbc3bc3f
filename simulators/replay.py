"""Replay of a recorded series (CSV of timestamp,value, e.g. NAB files) as devices.

The series keeps its spacing: its first row is placed at ``start_ms`` and every
later row at the same offset, so playing at ``speed`` 1 reproduces the original
pace and a higher speed compresses it. Each of ``devices`` devices replays the
whole series; ``seq`` is the row number.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from iotpipe.catalogue import Catalogue
from iotpipe.errors import ConfigError
from simulators.anomalies import RawLabel
from simulators.fleet import Batch
from simulators.names import Naming


def _parse_time(text: str) -> float:
    """Epoch seconds (or ms if huge), or ISO-8601 / ``YYYY-mm-dd HH:MM:SS`` (UTC if naive)."""
    text = text.strip()
    try:
        number = float(text)
    except ValueError:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    return number / 1000.0 if number > 1e11 else number


def read_series(path: Path) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """(epoch ms int64, value float64) sorted by time; a header row is optional."""
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"replay file {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    times: list[float] = []
    values: list[float] = []
    for lineno, row in enumerate(rows, 1):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 2:
            raise ConfigError(f"replay file {path}:{lineno}: expected timestamp,value")
        try:
            t, v = _parse_time(row[0]), float(row[1])
        except ValueError:
            if lineno == 1:  # header
                continue
            raise ConfigError(f"replay file {path}:{lineno}: bad row {row[:2]}") from None
        if not np.isfinite(v):
            raise ConfigError(f"replay file {path}:{lineno}: value {row[1]!r} is not finite")
        times.append(t)
        values.append(v)
    if not times:
        raise ConfigError(f"replay file {path}: no timestamp,value rows")
    ms = np.rint(np.array(times) * 1000.0).astype(np.int64)
    order = np.argsort(ms, kind="stable")
    return ms[order], np.array(values, np.float64)[order]


class ReplaySource:
    """A recorded series played as ``devices`` devices of one sensor type."""

    def __init__(
        self,
        path: Path,
        catalogue: Catalogue,
        *,
        sensor_type: str,
        devices: int = 1,
        sites: tuple[str, ...] = ("site",),
        device_prefix: str = "replay",
        start_ms: int = 0,
    ) -> None:
        if sensor_type not in catalogue:
            known = ", ".join(sorted(catalogue.names))
            raise ConfigError(f"unknown sensor type {sensor_type!r}; known: {known}")
        self.naming = Naming(devices, (sensor_type,), sites, device_prefix)
        ms, self.series = read_series(path)
        self.offsets = ms - ms[0]
        self.start_ms = start_ms
        self.devices = devices
        self.stype = np.zeros(devices, np.uint8)
        self.site = (np.arange(devices) * len(sites) // devices).astype(np.uint16)
        self._next = 0  # next row to play
        self.first_ts: int | None = None
        self.last_ts: int | None = None

    @property
    def span_s(self) -> float:
        return float(self.offsets[-1]) / 1000.0

    @property
    def exhausted(self) -> bool:
        return bool(self._next >= self.offsets.size)

    @property
    def nbytes(self) -> int:
        return int(self.offsets.nbytes + self.series.nbytes)

    def readings_per_second(self) -> float:
        return float(self.devices * self.offsets.size / max(self.span_s, 1e-3))

    def advance(self, until_ms: float) -> Batch:
        stop = int(np.searchsorted(self.offsets, until_ms - self.start_ms, side="left"))
        rows = np.arange(self._next, max(stop, self._next), dtype=np.int64)
        self._next = max(stop, self._next)
        if rows.size == 0:
            return Batch.empty()
        k = self.devices
        device = np.tile(np.arange(k, dtype=np.int64), rows.size)
        row = np.repeat(rows, k)
        ts = self.start_ms + self.offsets[row]
        if self.first_ts is None:
            self.first_ts = int(ts[0])
        self.last_ts = int(ts[-1])
        return Batch(device, ts, self.series[row], row)

    def take_labels(self) -> list[RawLabel]:
        return []

    def final_labels(self) -> list[RawLabel]:
        return []
