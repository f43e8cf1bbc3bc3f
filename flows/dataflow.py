"""The readings dataflow: Kafka micro-batches -> windows + detectors -> sinks.

    readings.<type> --kafka-in--> partition-state (one PartitionState per Kafka
    partition, whole batches, numpy) --+--> influx   (sensor_agg, anomaly)
                                       +--> alerts   (Kafka, MQTT, webhook, log)
                                       +--> late     (Kafka `late` topic)

Built by ``build_flow(settings)``; run with ``iotpipe flow run`` or
``python -m bytewax.run``. The high-priority class runs as its own flow
instance with small batches so bulk telemetry never delays a safety alert.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import Sink

from flows.detectors import DetectorConfig
from flows.partition import FlowConfig, Output, PartitionState
from flows.source import Batch, KafkaBatchSource
from flows.stats import FlowStats
from iotpipe.catalogue import Catalogue, load_catalogue
from iotpipe.codec import encode
from iotpipe.model import Reading
from iotpipe.settings import Settings
from iotpipe.topics import KafkaTopics
from sinks.alerts import AlertSink
from sinks.influx import InfluxSink

TICK = timedelta(seconds=1)


class PartitionLogic(StatefulBatchLogic[list[bytes], Output, PartitionState]):
    """Bytewax glue around one partition's ``PartitionState``."""

    def __init__(self, state: PartitionState, flush_at_eof: bool, stats: FlowStats) -> None:
        self.state = state
        self.flush_at_eof = flush_at_eof
        self.stats = stats

    def on_batch(self, values: list[list[bytes]]) -> tuple[list[Output], bool]:
        flat = values[0] if len(values) == 1 else [v for batch in values for v in batch]
        out = self.state.on_values(flat)
        self.stats.count(len(flat) - len(out.bad), out)
        return _nonempty(out), StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[list[Output], bool]:
        return self._emit(self.state.on_tick())

    def on_eof(self) -> tuple[list[Output], bool]:
        if self.flush_at_eof:
            return self._emit(self.state.flush())
        return [], StatefulBatchLogic.RETAIN

    def _emit(self, out: Output) -> tuple[list[Output], bool]:
        self.stats.count(0, out)
        return _nonempty(out), StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime:
        return datetime.now(UTC) + TICK

    def snapshot(self) -> PartitionState:
        return self.state.snapshot()


def _nonempty(out: Output) -> list[Output]:
    return [out] if (out.aggregates or out.alerts or out.late) else []


def flow_config(settings: Settings) -> FlowConfig:
    f = settings.flow
    return FlowConfig(
        windows_ms=f.window_lengths_ms(),
        sliding_ms=f.sliding_ms(),
        session_gap_ms=int(f.session_gap_s * 1000),
        allowed_lateness_ms=int(f.allowed_lateness_s * 1000),
        idle_close_ms=int(f.idle_close_s * 1000),
        detectors=DetectorConfig(),
    )


def flow_group(settings: Settings) -> str:
    """The Kafka consumer group a flow commits its progress under (for lag monitoring)."""
    return f"{settings.kafka.topic_prefix}iotpipe-flow-{settings.flow.priority}"


def served_types(settings: Settings, catalogue: Catalogue) -> list[str]:
    """The sensor types of this flow's priority class."""
    if settings.flow.priority == "all":
        return sorted(catalogue.names)
    return sorted(t.name for t in catalogue.by_priority(settings.flow.priority))


def build_flow(
    settings: Settings,
    *,
    source: Source[Batch] | None = None,
    aggregate_sink: Sink[Any] | None = None,
    alert_sink: Sink[Any] | None = None,
    late_sink: Sink[Any] | None = None,
    tail: bool = True,
    stats: FlowStats | None = None,
) -> Dataflow:
    """The dataflow for the settings' priority class. Tests swap in other sources/sinks."""
    catalogue = load_catalogue(settings.core.sensors_file)
    topics = KafkaTopics(settings.kafka.topic_prefix)
    types = served_types(settings, catalogue)
    high = settings.flow.priority == "high"
    batch_size = settings.flow.high_priority_batch_size if high else settings.flow.batch_size
    config = flow_config(settings)
    flow_stats = stats or FlowStats(settings.flow.priority)
    if source is None:
        source = KafkaBatchSource(
            settings.kafka,
            [topics.readings(t) for t in types],
            group_id=flow_group(settings),
            batch_size=batch_size,
            tail=tail,
        )

    def builder(resume: PartitionState | None) -> PartitionLogic:
        state = resume or PartitionState(catalogue, config)
        return PartitionLogic(state, flush_at_eof=not tail, stats=flow_stats)

    flow = Dataflow(f"iotpipe-{settings.flow.priority}")
    batches = op.input("kafka-in", flow, source)
    outputs = op.stateful_batch("partition-state", batches, builder)
    results = op.map("unkey", outputs, lambda kv: kv[1])
    aggregates = op.filter_map("aggregates", results, lambda o: o.aggregates or None)
    alerts = op.filter_map("alerts", results, lambda o: o.alerts or None)
    to_influx = op.merge("to-influx", aggregates, alerts)
    op.output("influx", to_influx, aggregate_sink or InfluxSink(settings, stats=flow_stats.writers))
    op.output("alert-out", alerts, alert_sink or AlertSink(settings))
    if settings.flow.late_topic or late_sink is not None:
        late = op.flat_map("late", results, lambda o: o.late)
        messages = op.map("late-msg", late, _late_message)
        sink = late_sink or KafkaSink(
            brokers=[settings.kafka.bootstrap_servers],
            topic=topics.late,
            add_config={
                k: str(v)
                for k, v in settings.kafka.client_config().items()
                if k != "bootstrap.servers"
            },
        )
        op.output("late-out", messages, sink)
    return flow


def _late_message(reading: Reading) -> KafkaSinkMessage[bytes, bytes]:
    return KafkaSinkMessage(key=reading.device_id.encode(), value=encode(reading))
