"""Per-slot numpy columns with a declared dtype and fill: what each detector owns.

Why declared: a snapshot stores the columns by name, and a restore fills a
column the snapshot lacks (a detector or field added since) with its fill, so
recovery never depends on a class's layout.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from flows.slots import SlotMap

Spec = Mapping[str, tuple[type[np.generic], float | int]]


class SlotArrays:
    """Named columns, one row per device slot, grown with the ``SlotMap``."""

    def __init__(self, spec: Spec, capacity: int) -> None:
        self.spec = dict(spec)
        self.columns: dict[str, npt.NDArray[Any]] = {
            name: np.full(capacity, fill, dtype=dt) for name, (dt, fill) in self.spec.items()
        }

    def __getitem__(self, name: str) -> npt.NDArray[Any]:
        return self.columns[name]

    def fit(self, slots: SlotMap) -> None:
        """Grow every column when the SlotMap has grown (geometric, via ``SlotMap.fit``)."""
        for name, (_, fill) in self.spec.items():
            if len(self.columns[name]) < slots.capacity:
                self.columns[name] = slots.fit(self.columns[name], fill)

    def copy(self, n: int, prefix: str) -> dict[str, npt.NDArray[Any]]:
        """The first ``n`` rows of every column, keyed ``prefix + name``."""
        return {prefix + name: col[:n].copy() for name, col in self.columns.items()}

    def load(self, arrays: Mapping[str, npt.NDArray[Any]], n: int, prefix: str) -> None:
        """Rows ``:n`` from a ``copy``; columns it lacks keep their fill."""
        for name, col in self.columns.items():
            saved = arrays.get(prefix + name)
            if saved is not None:
                col[:n] = saved[:n]

    def nbytes_per_slot(self) -> int:
        return sum(np.dtype(dt).itemsize for dt, _ in self.spec.values())
