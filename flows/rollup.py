"""Per-site, per-type roll-ups: every device of a site in one window, across partitions.

A site's devices are spread over the Kafka partitions of their type's topic
(readings are keyed by device), so no single partition can compute a site's
statistics. Each partition therefore sends, with every window it closes, one
*partial* per (site, window): device count, reading count, mean, M2 (sum of
squared deviations), min, max and the latest reading. A second stage keyed by
sensor type merges the partials of all partitions (Chan's parallel variance
formula, so the result equals the statistics over all readings) and emits a
``SiteAggregate`` once every partition it has heard from has a watermark past
the window's end.

A partition heard from for the first time after a window was emitted (it had
no data before, or it started later in a backlog drain) can still add to it:
an emitted window is kept for ``retain_s`` of wall time and emitted again with
the new partial merged in. The InfluxDB point has the same series and time,
so the second write replaces the first. A partial that comes after its window
was retired is counted in ``dropped`` (the device aggregates still hold those
readings), never written over a complete roll-up.
"""

from __future__ import annotations

import heapq
import math
import time
from collections import deque
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from flows.closed import Closed
from flows.slots import SlotMap
from iotpipe.model import SiteAggregate

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class SitePartial:
    """One partition's share of one site's window (population statistics)."""

    site: str
    sensor_type: str
    window: str
    start: int
    end: int
    devices: int
    count: int
    mean: float
    m2: float
    min: float
    max: float
    last_ts: int
    last: float

    def merge(self, other: SitePartial) -> SitePartial:
        n = self.count + other.count
        delta = other.mean - self.mean
        newer = (other.last_ts, other.last) > (self.last_ts, self.last)
        return replace(
            self,
            devices=self.devices + other.devices,
            count=n,
            mean=self.mean + delta * other.count / n,
            m2=self.m2 + other.m2 + delta * delta * self.count * other.count / n,
            min=min(self.min, other.min),
            max=max(self.max, other.max),
            last_ts=other.last_ts if newer else self.last_ts,
            last=other.last if newer else self.last,
        )

    def result(self) -> SiteAggregate:
        return SiteAggregate(
            site=self.site,
            sensor_type=self.sensor_type,
            window=self.window,
            start=self.start,
            end=self.end,
            devices=self.devices,
            count=self.count,
            mean=self.mean,
            min=self.min,
            max=self.max,
            std=math.sqrt(max(self.m2 / self.count, 0.0)),
            last=self.last,
        )


@dataclass(frozen=True, slots=True)
class Progress:
    """What one partition tells the roll-up stage about one sensor type."""

    sensor_type: str
    watermark: int
    partials: tuple[SitePartial, ...] = ()


def site_partials(rows: Closed, slot_map: SlotMap) -> list[SitePartial]:
    """Group closed device windows by (type, site, window): one partial per group, vectorised."""
    if not len(rows):
        return []
    site_of = slot_map.slot_site[rows.slot].astype(np.int64)
    type_of = slot_map.slot_type[rows.slot].astype(np.int64)
    order = np.lexsort((site_of, type_of, rows.start))
    site, typ, begin = site_of[order], type_of[order], rows.start[order]
    change = (site[1:] != site[:-1]) | (typ[1:] != typ[:-1]) | (begin[1:] != begin[:-1])
    starts = np.flatnonzero(np.r_[True, change])
    n = rows.count[order].astype(np.float64)
    mean = rows.mean[order]
    totals = np.add.reduceat(n, starts)
    group_mean = np.add.reduceat(n * mean, starts) / totals
    low = np.minimum.reduceat(rows.low[order], starts)
    high = np.maximum.reduceat(rows.high[order], starts)
    devices = np.diff(np.r_[starts, len(n)])
    group_of = np.repeat(np.arange(len(starts)), devices)
    # the latest reading of each group: the row with the greatest (last_ts, last)
    by_last = np.lexsort((rows.last[order], rows.last_ts[order], group_of))
    latest = by_last[np.r_[starts[1:], len(n)] - 1]
    deviation = mean - group_mean[group_of]
    m2 = np.add.reduceat(rows.var[order] * n + n * deviation * deviation, starts)
    last_ts, last = rows.last_ts[order][latest], rows.last[order][latest]
    end = rows.end[order]
    site_names, type_names = slot_map.site_names, slot_map.type_names
    return [
        SitePartial(
            site=site_names[int(site[s])],
            sensor_type=type_names[int(typ[s])],
            window=rows.label,
            start=int(begin[s]),
            end=int(end[s]),
            devices=int(devices[g]),
            count=int(totals[g]),
            mean=float(group_mean[g]),
            m2=float(m2[g]),
            min=float(low[g]),
            max=float(high[g]),
            last_ts=int(last_ts[g]),
            last=float(last[g]),
        )
        for g, s in enumerate(starts.tolist())
    ]


WindowKey = tuple[str, str, int]  # (site, window label, start)


class RollupState:
    """The merge stage for one sensor type: partials in, complete site windows out."""

    def __init__(self, retain_s: float = 300.0) -> None:
        self.retain_s = retain_s
        self.watermarks: dict[str, int] = {}  # partition -> highest watermark reported
        self.open: dict[WindowKey, SitePartial] = {}
        self.emitted: dict[WindowKey, tuple[SitePartial, float]] = {}  # with emission time
        self.retired_end = np.iinfo(np.int64).min  # latest end of a window forgotten so far
        self.dropped = 0
        # Work per message stays proportional to what changes, not to how many
        # site windows are held (thousands of sites x 5 minutes of windows):
        self._by_end: list[tuple[int, WindowKey]] = []  # heap of open windows
        self._by_time: deque[tuple[float, WindowKey]] = deque()  # emissions, oldest first

    def on_progress(
        self, source: str, progress: Progress, now: float | None = None
    ) -> list[SiteAggregate]:
        now = time.time() if now is None else now
        out = []
        for partial in progress.partials:
            key = (partial.site, partial.window, partial.start)
            done = self.emitted.get(key)
            if done is not None:  # from a partition not heard from when it was emitted
                merged = done[0].merge(partial)
                self.emitted[key] = (merged, now)
                self._by_time.append((now, key))
                out.append(merged.result())
            elif partial.end <= self.retired_end and key not in self.open:
                self.dropped += 1  # its roll-up may have been emitted and retired: keep that
            else:
                current = self.open.get(key)
                if current is None:
                    self.open[key] = partial
                    heapq.heappush(self._by_end, (partial.end, key))
                else:
                    self.open[key] = current.merge(partial)
        if progress.watermark > self.watermarks.get(source, np.iinfo(np.int64).min):
            self.watermarks[source] = progress.watermark
        return out + self._emit(self._complete_up_to(), now)

    def flush(self) -> list[SiteAggregate]:
        """End of a bounded input: every open window is as complete as it will get."""
        return self._emit(np.iinfo(np.int64).max, time.time())

    def _complete_up_to(self) -> int:
        return min(self.watermarks.values(), default=np.iinfo(np.int64).min)

    def _emit(self, watermark: int, now: float) -> list[SiteAggregate]:
        out = []
        while self._by_end and self._by_end[0][0] <= watermark:
            _end, key = heapq.heappop(self._by_end)
            partial = self.open.pop(key)
            self.emitted[key] = (partial, now)
            self._by_time.append((now, key))
            out.append(partial.result())
        retire = now - self.retain_s
        while self._by_time and self._by_time[0][0] < retire:
            at, key = self._by_time.popleft()
            entry = self.emitted.get(key)
            if entry is not None and entry[1] == at:  # else re-emitted later: a later item
                del self.emitted[key]
                self.retired_end = max(self.retired_end, entry[0].end)
        return out
