"""Run a dataflow in this process: workers, recovery database, epochs.

``iotpipe flow run`` lands here. It is ``python -m bytewax.run`` with our
settings: ``cli_main`` is Bytewax's own entry point, so ``-w``/``-i``/``-a``
scaling and recovery behave exactly as Bytewax documents.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main

from flows.dataflow import build_flow
from iotpipe.settings import Settings

log = logging.getLogger("iotpipe.flow")


def recovery_config(settings: Settings) -> RecoveryConfig | None:
    """Create the recovery partitions on first use; None when recovery is off."""
    db_dir = settings.flow.recovery_dir
    if db_dir is None:
        return None
    db_dir = Path(db_dir)
    if not any(db_dir.glob("part-*.sqlite3")):
        db_dir.mkdir(parents=True, exist_ok=True)
        init_db_dir(db_dir, settings.flow.workers)  # type: ignore[no-untyped-call]
        log.info("initialised recovery database in %s", db_dir)
    return RecoveryConfig(str(db_dir))  # type: ignore[no-untyped-call]


def run_flow(
    settings: Settings,
    *,
    tail: bool = True,
    process_id: int | None = None,
    addresses: list[str] | None = None,
) -> None:
    """Build and run the flow until its input ends (``tail=False``) or it is stopped."""
    flow = build_flow(settings, tail=tail)
    cli_main(  # type: ignore[no-untyped-call]  # bytewax.run is not annotated
        flow,
        workers_per_process=settings.flow.workers,
        process_id=process_id,
        addresses=addresses,
        epoch_interval=timedelta(seconds=settings.flow.epoch_interval_s),
        recovery_config=recovery_config(settings),
    )
