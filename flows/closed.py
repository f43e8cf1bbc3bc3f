"""What every kind of window gives back when it closes, and the one way it becomes output.

Tumbling, sliding and session windows keep their open state differently, but
all of them close into the same rows (one per device and window, as parallel
arrays, already in output order); ``to_aggregates`` turns those rows into
``Aggregate`` records and the per-site roll-up reads the same rows. A new
kind of window implements ``Windows`` and nothing else changes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from flows.slots import SlotMap
from iotpipe.model import Aggregate

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]


def mean_var(count: I64, shift: F64, total: F64, total_sq: F64) -> tuple[F64, F64]:
    """Mean and population variance from sums kept relative to ``shift``.

    Relative sums keep the variance of a large, steady signal (pressure at
    1013 hPa) from cancelling away in floating point.
    """
    n = count.astype(np.float64)
    mean_shifted = total / n
    var = np.maximum(total_sq / n - mean_shifted * mean_shifted, 0.0)
    return shift + mean_shifted, var


@dataclass(frozen=True, slots=True)
class Closed:
    """Windows that just closed: one row per (device slot, window), in output order."""

    label: str
    slot: I64
    start: I64
    end: I64
    count: I64
    mean: F64
    var: F64
    low: F64
    high: F64
    last: F64
    last_ts: I64

    def __len__(self) -> int:
        return len(self.slot)


def nothing_closed(label: str) -> Closed:
    i, f = np.zeros(0, np.int64), np.zeros(0, np.float64)
    return Closed(label, i, i, i, i, f, f, f, f, f, i)


def to_aggregates(closed: Closed, slot_map: SlotMap) -> list[Aggregate]:
    """One ``Aggregate`` per closed row.

    Whole columns become Python lists first: indexing numpy scalars row by
    row costs several times more than building the Aggregate itself.
    """
    if not len(closed):
        return []
    types, sites, device_ids = slot_map.type_names, slot_map.site_names, slot_map.device_ids
    label = closed.label
    slots = closed.slot
    return [
        Aggregate(
            device_id=device_ids[slot],
            sensor_type=types[typ],
            site=sites[site],
            window=label,
            start=start,
            end=end,
            count=count,
            mean=avg,
            min=low,
            max=high,
            std=dev,
            last=last,
        )
        for slot, typ, site, start, end, count, avg, low, high, dev, last in zip(
            slots.tolist(),
            slot_map.slot_type[slots].tolist(),
            slot_map.slot_site[slots].tolist(),
            closed.start.tolist(),
            closed.end.tolist(),
            closed.count.tolist(),
            closed.mean.tolist(),
            closed.low.tolist(),
            closed.high.tolist(),
            np.sqrt(closed.var).tolist(),
            closed.last.tolist(),
            strict=True,
        )
    ]


class Windows(ABC):
    """Open windows of one kind and size for every device of a partition."""

    label: str
    rolls_up: bool = False
    """True if closed rows are fixed, aligned windows the per-site roll-up can sum."""

    @property
    @abstractmethod
    def open_windows(self) -> int: ...

    @abstractmethod
    def add(
        self, slots: I64, ts: I64, values: F64, watermark: int, order: I64 | None = None
    ) -> Mask:
        """Fold a batch in; returns the mask of late readings.

        ``order``: the batch sorted by (slot, time, arrival), shared by all windows.
        """

    @abstractmethod
    def close_rows(self, watermark: int) -> Closed:
        """Take out every window the watermark has closed."""

    def close(self, watermark: int, slot_map: SlotMap) -> list[Aggregate]:
        return to_aggregates(self.close_rows(watermark), slot_map)
