"""Encoded readings on their way out, and their grouping into gateway batches."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]


@dataclass(slots=True)
class Outgoing:
    """One JSON object per reading, with the reading's device, type and site indices."""

    records: list[bytes]
    device: I64
    stype: I64
    site: I64

    def __len__(self) -> int:
        return len(self.records)

    @staticmethod
    def empty() -> Outgoing:
        z = np.zeros(0, np.int64)
        return Outgoing([], z, z, z)

    def slice(self, start: int, stop: int) -> Outgoing:
        return Outgoing(
            self.records[start:stop],
            self.device[start:stop],
            self.stype[start:stop],
            self.site[start:stop],
        )

    def extend(self, other: Outgoing) -> Outgoing:
        return Outgoing(
            self.records + other.records,
            np.concatenate([self.device, other.device]),
            np.concatenate([self.stype, other.stype]),
            np.concatenate([self.site, other.site]),
        )


@dataclass(frozen=True, slots=True)
class GatewayMessage:
    """A JSON array of readings for ``sensors/<site>`` (or ``sensors/<site>/<type>``)."""

    site: int
    stype: int | None
    payload: bytes
    readings: int


def gateway_batches(out: Outgoing, size: int, *, by_type: bool) -> Iterator[GatewayMessage]:
    """Group readings by site (and type), in order, into arrays of at most ``size``."""
    if not len(out):
        return
    key = out.site * 256 + out.stype if by_type else out.site
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    bounds = np.flatnonzero(np.diff(sorted_key)) + 1
    starts = [0, *bounds.tolist()]
    ends = [*bounds.tolist(), len(order)]
    records = out.records
    for a, b in zip(starts, ends, strict=True):
        first = int(order[a])
        site = int(out.site[first])
        stype = int(out.stype[first]) if by_type else None
        rows = order[a:b].tolist()
        for c in range(0, len(rows), size):
            chunk = rows[c : c + size]
            payload = b"[" + b",".join([records[i] for i in chunk]) + b"]"
            yield GatewayMessage(site, stype, payload, len(chunk))
