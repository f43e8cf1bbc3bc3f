"""Run a dataflow in this process: workers, recovery database, epochs.

``iotpipe flow run`` lands here. It is ``python -m bytewax.run`` with our
settings: ``cli_main`` is Bytewax's own entry point, so ``-w``/``-i``/``-a``
scaling and recovery behave exactly as Bytewax documents.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from types import FrameType

from bytewax.dataflow import Dataflow
from bytewax.errors import BytewaxRuntimeError
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main
from prometheus_client import CollectorRegistry, start_http_server

from flows.dataflow import build_flow
from flows.stats import FlowStats, FlowStatsCollector
from iotpipe.errors import ConfigError
from iotpipe.metrics import flow_metrics_port
from iotpipe.settings import Settings
from iotpipe.signals import STOP_SIGNALS

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
    stats = FlowStats(settings.flow.priority)
    serve_metrics(settings, stats, process_id or 0)
    flow = build_flow(settings, tail=tail, stats=stats)
    with _stop_on_signals(settings.flow.stop_grace_s):
        _run(settings, flow, stats, process_id, addresses)


def _run(
    settings: Settings,
    flow: Dataflow,
    stats: FlowStats,
    process_id: int | None,
    addresses: list[str] | None,
) -> None:
    try:
        cli_main(  # type: ignore[no-untyped-call]  # bytewax.run is not annotated
            flow,
            workers_per_process=settings.flow.workers,
            process_id=process_id,
            addresses=addresses,
            epoch_interval=timedelta(seconds=settings.flow.epoch_interval_s),
            recovery_config=recovery_config(settings),
        )
    except (KeyboardInterrupt, BytewaxRuntimeError) as exc:
        # Ctrl-C / SIGINT is the normal way to stop a tailing flow (Bytewax reports
        # it as "signal received"); with recovery on it resumes from the last
        # snapshot, so a log line says so instead of a traceback.
        if isinstance(exc, BytewaxRuntimeError) and not _by_signal(exc):
            raise
        log.info("stopped by a signal after %d readings", stats.readings)


@contextmanager
def _stop_on_signals(grace_s: float) -> Iterator[None]:
    """SIGINT and SIGTERM stop the flow the way Bytewax expects (``KeyboardInterrupt``);
    the first also starts a watchdog: a flow still running ``grace_s`` later prints
    every thread's stack (where it is stuck) and exits 1, so a supervisor waiting for
    it is never left waiting and the cause is in the log."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    done, asked = threading.Event(), threading.Event()

    def watchdog(signum: int) -> None:
        if done.wait(grace_s):
            return
        name = signal.Signals(signum).name
        log.error("still running %.0f s after %s; thread stacks follow; exit 1", grace_s, name)
        faulthandler.dump_traceback(all_threads=True)
        os._exit(1)

    def handler(signum: int, _frame: FrameType | None) -> None:
        if not asked.is_set():
            asked.set()
            threading.Thread(target=watchdog, args=(signum,), daemon=True).start()
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        done.set()
        for s, h in previous.items():
            signal.signal(s, h)


def _by_signal(exc: BaseException) -> bool:
    """Bytewax's own "signal received", or a Ctrl-C that landed inside one of our steps
    (a sink waiting for Kafka, say), which Bytewax wraps as that step's error."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt) or "signal received" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def serve_metrics(settings: Settings, stats: FlowStats, process_id: int = 0) -> None:
    port = flow_metrics_port(settings.flow.metrics_port, settings.flow.priority, process_id)
    if not port:
        return
    registry = CollectorRegistry()
    registry.register(FlowStatsCollector(stats))
    try:
        start_http_server(port, addr=settings.flow.metrics_host, registry=registry)
    except OSError as exc:
        raise ConfigError(
            f"IOTPIPE_FLOW_METRICS_PORT: cannot serve metrics on port {port}: {exc}"
            " (another flow running? set another port, or 0 for none)"
        ) from exc
    log.info("metrics on http://%s:%d/metrics", settings.flow.metrics_host, port)
