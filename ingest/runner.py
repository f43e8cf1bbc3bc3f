"""Run an ingester as a process: topics, metrics endpoint, summaries, clean stop."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, start_http_server

from ingest.ingester import Ingester
from ingest.stats import IngestStats, StatsCollector
from iotpipe.catalogue import load_catalogue
from iotpipe.connectors.kafka import ensure_topics
from iotpipe.errors import ConnectorError
from iotpipe.settings import Settings
from iotpipe.signals import stop_on_signals
from iotpipe.topics import KafkaTopics

log = logging.getLogger("iotpipe.ingest")
LIVENESS_CHECK_S = 0.5


def summary_line(stats: IngestStats, previous: IngestStats | None, seconds: float) -> str:
    """One line for the log: rates since the last line, totals, dead letters."""
    rate = (stats.messages - (previous.messages if previous else 0)) / max(seconds, 1e-9)
    readings = (stats.readings - (previous.readings if previous else 0)) / max(seconds, 1e-9)
    dead = ", ".join(f"{k} {v}" for k, v in sorted(stats.dead_lettered.items())) or "none"
    return (
        f"ingest: {rate:,.0f} msg/s, {readings:,.0f} readings/s | totals: "
        f"{stats.messages:,} msgs, {sum(stats.produced.values()):,} produced, "
        f"{stats.acked:,} acked, inflight {stats.inflight:,}, "
        f"kafka errors {stats.delivery_errors} | dead-lettered: {dead}"
    )


class LoopDiedError(ConnectorError):
    """The MQTT network thread ended: the process must exit non-zero to be restarted."""


def run_ingester(
    settings: Settings,
    stop: threading.Event | None = None,
    on_start: Callable[[Ingester], None] | None = None,
) -> IngestStats:
    """Run until SIGINT/SIGTERM (or ``stop`` is set); returns the final counts.

    Raises ``LoopDiedError`` if the MQTT network loop dies: a process that
    stays up without reading anything would look healthy and ingest nothing.
    """
    stop = stop or threading.Event()

    def note(signum: int) -> None:
        log.info("%s: stopping", signal.Signals(signum).name)

    # Installed before anything slow: a supervisor's SIGTERM during start-up
    # is a clean stop (exit 0), not death by the default handler.
    with stop_on_signals(stop, again=stop.set, note=note):
        ingester = _start(settings)
        if on_start is not None:
            on_start(ingester)  # embedding code (and tests) get the running ingester
        _watch(ingester, settings, stop)
        drained = ingester.stop()  # a repeated signal during the drain changes nothing
    log.info(summary_line(ingester.stats, None, 1.0))
    if not drained:
        log.warning(
            "stopped with %d messages unacknowledged; the broker will redeliver them",
            ingester.stats.inflight,
        )
    return ingester.stats


def _start(settings: Settings) -> Ingester:
    """Topics, the metrics endpoint, then the MQTT session and Kafka producer."""
    catalogue = load_catalogue(settings.core.sensors_file)
    topics = KafkaTopics(settings.kafka.topic_prefix)
    created = ensure_topics(settings.kafka, topics.all_topics(catalogue.names))
    if created:
        log.info("created topics: %s", ", ".join(created))
    ingester = Ingester(settings, catalogue)
    if settings.ingest.metrics_port:
        registry = CollectorRegistry()
        registry.register(StatsCollector(ingester.stats, ingester.session.connected.is_set))
        start_http_server(
            settings.ingest.metrics_port, addr=settings.ingest.metrics_host, registry=registry
        )
        log.info(
            "metrics on http://%s:%d/metrics",
            settings.ingest.metrics_host,
            settings.ingest.metrics_port,
        )
    ingester.start()
    return ingester


def _watch(ingester: Ingester, settings: Settings, stop: threading.Event) -> None:
    """Until ``stop``: summary lines, and exit if the MQTT network loop has died."""
    interval = settings.ingest.log_interval_s or 3600.0
    previous: IngestStats | None = None
    last = time.monotonic()
    while not stop.wait(LIVENESS_CHECK_S):
        if not ingester.session.alive():
            ingester.stats.loop_alive = False
            log.error("the MQTT network loop has died; exiting so a supervisor restarts us")
            ingester.stop(timeout=5.0)
            raise LoopDiedError("MQTT network loop died; restart the ingester", retryable=True)
        now = time.monotonic()
        if now - last < interval:
            continue
        if settings.ingest.log_interval_s:
            log.info(summary_line(ingester.stats, previous, now - last))
        previous, last = _snapshot(ingester.stats), now


def _snapshot(stats: IngestStats) -> IngestStats:
    return IngestStats(messages=stats.messages, readings=stats.readings)
