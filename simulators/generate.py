"""Readings on demand, for tests and benchmarks that need realistic payloads."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from iotpipe.catalogue import Catalogue, load_catalogue
from simulators.fleet import Batch, Fleet, FleetConfig
from simulators.payloads import PayloadEncoder
from simulators.runner import RunConfig, step_ms


def batches(fleet: Fleet, *, step_readings: int = 50_000) -> Iterator[Batch]:
    """The fleet's readings, step after step, as fast as they can be made."""
    run = RunConfig(start_ms=0, speed=0.0, step_readings=step_readings)
    step = step_ms(fleet.readings_per_second(), run, fleet.devices)
    t = float(fleet.config.start_ms)
    while True:
        t += step
        yield fleet.advance(t)


def generate_payloads(
    count: int,
    *,
    devices: int = 1000,
    seed: int = 0,
    start_ms: int | None = None,
    catalogue: Catalogue | None = None,
    **fleet_options: Any,
) -> list[bytes]:
    """``count`` JSON reading payloads (``Reading`` objects) from a seeded fleet.

    ``start_ms`` defaults to now minus the simulated span, so the event times
    end around now and pass the ingester's time bounds. ``fleet_options`` are
    further ``FleetConfig`` fields (types, sites, interval_s, anomalies, ...).
    """
    cat = catalogue or load_catalogue()
    probe = Fleet(FleetConfig(devices=devices, seed=seed, start_ms=0, **fleet_options), cat)
    if start_ms is None:
        span_ms = count / probe.readings_per_second() * 1000.0
        start_ms = int(time.time() * 1000 - span_ms)
    fleet = Fleet(FleetConfig(devices=devices, seed=seed, start_ms=start_ms, **fleet_options), cat)
    encoder = PayloadEncoder(fleet.naming, cat)
    out: list[bytes] = []
    for batch in batches(fleet):
        take = batch if len(batch) <= count - len(out) else _head(batch, count - len(out))
        out += encoder.messages(take, fleet.stype[take.device], fleet.site[take.device])
        if len(out) >= count:
            return out
    raise AssertionError("unreachable")  # pragma: no cover


def _head(batch: Batch, n: int) -> Batch:
    return Batch(batch.device[:n], batch.ts[:n], batch.value[:n], batch.seq[:n])
