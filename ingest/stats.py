"""Counters for the ingester, cheap enough for the hot path, exported to Prometheus.

Plain ints and dicts are bumped per message (a prometheus_client label lookup
per reading would cost more than decoding it); a custom collector turns them
into metric families only when Prometheus scrapes.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from iotpipe import metrics as m

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class IngestStats:
    """Running totals since the ingester started.

    Each field has exactly one writer thread (MQTT thread: messages, readings,
    tracked, dead_lettered; Kafka delivery thread: the rest), so no locks.
    """

    messages: int = 0
    readings: int = 0
    tracked: int = 0  # QoS >= 1 messages waiting for Kafka before their ack
    produced: Counter[str] = field(default_factory=Counter)  # by sensor type
    dead_lettered: Counter[str] = field(default_factory=Counter)  # by reason
    acked: int = 0
    delivery_errors: int = 0
    loop_alive: bool = True  # False once the MQTT network loop has died (the process exits)
    latency_counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_S) + 1))
    latency_sum: float = 0.0

    @property
    def inflight(self) -> int:
        return self.tracked - self.acked

    def observe_latency(self, seconds: float) -> None:
        self.latency_counts[bisect.bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        self.latency_sum += seconds

    def summary(self) -> dict[str, object]:
        return {
            "messages": self.messages,
            "readings": self.readings,
            "produced": sum(self.produced.values()),
            "dead_lettered": dict(self.dead_lettered),
            "acked": self.acked,
            "inflight": self.inflight,
            "delivery_errors": self.delivery_errors,
            "loop_alive": self.loop_alive,
        }


class StatsCollector(Collector):
    """Exposes an ``IngestStats`` as Prometheus metrics at scrape time."""

    def __init__(self, stats: IngestStats, subscribed: Callable[[], bool] = bool) -> None:
        self.stats = stats
        self.subscribed = subscribed

    def collect(self) -> Iterator[Metric]:
        s = self.stats
        yield m.INGEST_MESSAGES.family(s.messages)
        yield m.INGEST_READINGS.family(s.readings)
        produced = m.INGEST_PRODUCED.family()
        for sensor_type, n in sorted(s.produced.items()):
            produced.add_metric([sensor_type], n)
        yield produced
        dead = m.INGEST_DEAD_LETTERED.family()
        for reason, n in sorted(s.dead_lettered.items()):
            dead.add_metric([reason], n)
        yield dead
        yield m.INGEST_ACKED.family(s.acked)
        yield m.INGEST_INFLIGHT.family(s.inflight)
        yield m.INGEST_LOOP_ALIVE.family(1 if s.loop_alive else 0)
        yield m.INGEST_SUBSCRIBED.family(1 if self.subscribed() else 0)
        yield m.INGEST_DELIVERY_ERRORS.family(s.delivery_errors)
        cumulative, buckets = 0, []
        for bound, n in zip((*LATENCY_BUCKETS_S, float("inf")), s.latency_counts, strict=True):
            cumulative += n
            buckets.append((str(bound) if bound != float("inf") else "+Inf", cumulative))
        latency = m.INGEST_DELIVERY_SECONDS
        yield HistogramMetricFamily(
            latency.name, latency.doc, buckets=buckets, sum_value=s.latency_sum
        )
