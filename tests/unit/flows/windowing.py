"""Shared by the window tests: random out-of-order micro-batches and result comparison."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest


@dataclass
class Batch:
    devices: list[str]
    ts: list[int]
    values: list[float]


def cut_into_batches(
    rng: np.random.Generator,
    devices: list[str],
    ts: npt.NDArray[np.int64],
    values: npt.NDArray[np.float64],
    pieces: int = 12,
) -> list[Batch]:
    """Split one stream into micro-batches at random places."""
    n = len(devices)
    cuts = sorted(set(rng.integers(1, n, pieces).tolist()))
    out, prev = [], 0
    for cut in [*cuts, n]:
        out.append(Batch(devices[prev:cut], ts[prev:cut].tolist(), values[prev:cut].tolist()))
        prev = cut
    return out


def random_batches(seed: int, devices: int, n: int, disorder_ms: int, base: float) -> list[Batch]:
    """Two minutes of readings from `devices` devices, up to `disorder_ms` out of order."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, 120_000, n)) + rng.integers(-disorder_ms, disorder_ms + 1, n)
    t = np.maximum(t, 0)
    devs = [f"d{int(i)}" for i in rng.integers(0, devices, n)]
    vals = base + rng.normal(0, 0.01, n)
    return cut_into_batches(rng, devs, t, vals)


def assert_same(
    got: Sequence[tuple[Any, ...]], want: Sequence[tuple[Any, ...]], exact: int = 3
) -> None:
    """The first `exact` fields equal; the statistics after them equal to 1e-9."""
    assert len(got) == len(want)
    for g, w in zip(sorted(got), sorted(want), strict=True):
        assert g[:exact] == w[:exact]
        assert g[exact:] == pytest.approx(w[exact:], rel=1e-9, abs=1e-9)
