"""Dense integer slots for devices, so per-device state lives in numpy arrays.

With 100,000 devices a batch holds about one reading per device; per-key
numpy calls would be slower than plain Python. Instead every device gets a
slot once, and all devices' state is updated in one vectorised pass indexed by
slot (DESIGN.md section 6).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import repeat

import numpy as np
import numpy.typing as npt

Int64Array = npt.NDArray[np.int64]


class SlotMap:
    """device id -> slot, plus each slot's sensor type and site (as small ints)."""

    def __init__(self, sensor_types: Sequence[str]) -> None:
        self.type_names: list[str] = list(sensor_types)
        self._type_index = {name: i for i, name in enumerate(self.type_names)}
        self._slot: dict[str, int] = {}
        self.device_ids: list[str] = []
        self.site_names: list[str] = []
        self._site_index: dict[str, int] = {}
        self.slot_type = np.zeros(1024, dtype=np.int16)
        self.slot_site = np.zeros(1024, dtype=np.int32)
        self.types_seen: set[str] = set()

    def __len__(self) -> int:
        return len(self.device_ids)

    @property
    def capacity(self) -> int:
        return len(self.slot_type)

    def type_index(self, name: str) -> int:
        return self._type_index[name]

    def lookup(
        self, device_ids: Sequence[str], sensor_types: Sequence[str], sites: Sequence[str]
    ) -> Int64Array:
        """Slots for a batch, registering devices seen for the first time."""
        return self.lookup_described(device_ids, lambda i: (sensor_types[i], sites[i]))

    def lookup_described(
        self, device_ids: Sequence[str], describe: Callable[[int], tuple[str, str]]
    ) -> Int64Array:
        """``lookup``, asking ``describe(i)`` for (sensor type, site) only of unseen devices,
        so the hot path builds no per-reading type and site columns."""
        n = len(device_ids)
        slots = np.fromiter(map(self._slot.get, device_ids, repeat(-1, n)), np.int64, count=n)
        missing = np.flatnonzero(slots < 0)
        for i in missing.tolist():
            device = device_ids[i]
            slot = self._slot.get(device)
            if slot is None:
                slot = self._register(device, *describe(i))
            slots[i] = slot
        return slots

    def _register(self, device: str, sensor_type: str, site: str) -> int:
        slot = len(self.device_ids)
        if slot >= self.capacity:
            grow = self.capacity * 2
            self.slot_type = np.resize(self.slot_type, grow)
            self.slot_site = np.resize(self.slot_site, grow)
        site_idx = self._site_index.get(site)
        if site_idx is None:
            site_idx = self._site_index[site] = len(self.site_names)
            self.site_names.append(site)
        self._slot[device] = slot
        self.device_ids.append(device)
        self.slot_type[slot] = self._type_index[sensor_type]
        self.types_seen.add(sensor_type)
        self.slot_site[slot] = site_idx
        return slot

    def fit(self, arr: np.ndarray, fill: float | int = 0) -> np.ndarray:
        """``arr`` (per-slot state) resized to the current capacity; new slots get ``fill``."""
        if len(arr) >= self.capacity:
            return arr
        bigger = np.full(self.capacity, fill, dtype=arr.dtype)
        bigger[: len(arr)] = arr
        return bigger
