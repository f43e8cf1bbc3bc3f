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

import gc
import pickle
from datetime import UTC, datetime, timedelta
from itertools import chain
from typing import Any

import bytewax.operators as op
import msgspec
from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import Sink

from flows.detectors import DetectorConfig
from flows.partition import FlowConfig, Output, PartitionState
from flows.rollup import Progress, RollupState
from flows.source import Batch, KafkaBatchSource
from flows.stats import FlowStats
from iotpipe.catalogue import Catalogue, load_catalogue
from iotpipe.codec import decode_reading, encode
from iotpipe.model import Aggregate, Reading, SiteAggregate
from iotpipe.settings import FlowSettings, Settings
from iotpipe.topics import KafkaTopics
from sinks.alerts import AlertSink
from sinks.dead_letter import SinkDeadLetter, now_ms
from sinks.influx import InfluxSink

TICK = timedelta(seconds=1)
# Every Kafka message arrives as a GC-tracked confluent-kafka Message: at
# 500,000 a second the default threshold (700) ran a collection every 1.4 ms
# and a full one, over every object in the process, every few seconds:
# 20% of a drain's time. The messages die by refcount within a batch anyway.
GC_GEN0_THRESHOLD = 50_000


def relax_gc() -> None:
    """Collect garbage less often in a flow process (never more often than set)."""
    gen0, *older = gc.get_threshold()
    if 0 < gen0 < GC_GEN0_THRESHOLD:
        gc.set_threshold(GC_GEN0_THRESHOLD, *older)


class PartitionLogic(StatefulBatchLogic[list[bytes], Output, bytes]):
    """Bytewax glue around one partition's ``PartitionState``."""

    def __init__(
        self, state: PartitionState, flush_at_eof: bool, stats: FlowStats, recovery: bool = True
    ) -> None:
        self.state = state
        self.flush_at_eof = flush_at_eof
        self.stats = stats
        self.recovery = recovery

    def on_batch(self, values: list[list[bytes]]) -> tuple[list[Output], bool]:
        flat = values[0] if len(values) == 1 else list(chain.from_iterable(values))
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

    def snapshot(self) -> bytes:
        # Bytewax asks at every epoch even without a recovery store: skip the
        # pickling (a few % of a live flow's time) when nothing would keep it.
        return self.state.snapshot() if self.recovery else b""


def _nonempty(out: Output) -> list[Output]:
    return [out] if (out.aggregates or out.alerts or out.late or out.progress or out.bad) else []


def flow_config(settings: Settings) -> FlowConfig:
    f = settings.flow
    return FlowConfig(
        windows_ms=f.window_lengths_ms(),
        sliding_ms=f.sliding_ms(),
        session_gap_ms=int(f.session_gap_s * 1000),
        allowed_lateness_ms=int(f.allowed_lateness_s * 1000),
        idle_close_ms=int(f.idle_close_s * 1000),
        idle_close_after_gap_ms=int(f.idle_close_after_gap_s * 1000),
        clock_ahead_ms=int(f.clock_ahead_s * 1000),
        rollup=f.rollup,
        detectors=detector_config(f),
    )


def detector_config(f: FlowSettings) -> DetectorConfig:
    """The detectors' settings from ``IOTPIPE_FLOW_DETECT*`` (a bad one: ConfigError)."""
    return DetectorConfig(
        detectors=tuple(name.strip() for name in f.detectors.split(",") if name.strip()),
        k_sigma=f.detect_k_sigma,
        k_sigma_critical=f.detect_k_sigma_critical,
        ewma_alpha=f.detect_ewma_alpha,
        ewma_warmup=f.detect_ewma_warmup,
        changepoint_readings=f.detect_changepoint_readings,
        sustain_readings=f.detect_sustain_readings,
        sustain_ms=int(f.detect_sustain_s * 1000),
        clear_readings=f.detect_clear_readings,
        deadband_sigma=f.detect_deadband_sigma,
        cooldown_ms=int(f.detect_cooldown_s * 1000),
        cooldown_intervals=f.detect_cooldown_intervals,
        silence_timeout_ms=int(f.detect_silence_timeout_s * 1000),
        silence_interval_factor=f.detect_silence_intervals,
        alert_budget_per_hour=f.detect_alert_budget_per_hour,
    )


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
    dead_letter_sink: Sink[Any] | None = None,
    tail: bool = True,
    stats: FlowStats | None = None,
) -> Dataflow:
    """The dataflow for the settings' priority class. Tests swap in other sources/sinks."""
    relax_gc()
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
            group_id=topics.flow_group(settings.flow.priority),
            batch_size=batch_size,
            tail=tail,
        )

    recovery = settings.flow.recovery_dir is not None

    def builder(resume: bytes | None) -> PartitionLogic:
        if resume:
            state = PartitionState.restore(resume, catalogue, config)
        else:
            state = PartitionState(catalogue, config)
        return PartitionLogic(state, not tail, flow_stats, recovery)

    flow = Dataflow(f"iotpipe-{settings.flow.priority}")
    batches = op.input("kafka-in", flow, source)
    outputs = op.stateful_batch("partition-state", batches, builder)
    results = op.map("unkey", outputs, lambda kv: kv[1])
    aggregates = op.filter_map("aggregates", results, lambda o: o.aggregates or None)
    alerts = op.filter_map("alerts", results, lambda o: o.alerts or None)
    to_influx = op.merge("to-influx", aggregates, alerts)
    if config.rollup:

        def rollup_builder(resume: bytes | None) -> RollupLogic:
            state = pickle.loads(resume) if resume else RollupState()
            return RollupLogic(state, not tail, flow_stats, recovery)

        # Keyed by sensor type: every partition of a type's topic meets in one state.
        progress = op.flat_map("progress", outputs, _progress_by_type)
        site_aggs = op.stateful_batch("site-rollup", progress, rollup_builder)
        to_influx = op.merge("with-sites", to_influx, op.map("sites", site_aggs, lambda kv: kv[1]))
    op.output("influx", to_influx, aggregate_sink or InfluxSink(settings, stats=flow_stats.writers))
    op.output("alert-out", alerts, alert_sink or AlertSink(settings))
    if settings.flow.aggregates_topic:
        mirrored = op.flat_map("aggregates-mirror", results, lambda o: o.aggregates)
        op.output(
            "aggregates-out",
            op.map("aggregate-msg", mirrored, _keyed_message),
            _kafka_sink(settings, topics.aggregates),
        )
    # Kafka values that are not readings (written around the ingester): kept, with the error
    bad = op.flat_map("bad", outputs, lambda kv: [(kv[0], v) for v in kv[1].bad])
    op.output(
        "bad-out",
        op.map("bad-msg", bad, _dead_letter_message),
        dead_letter_sink or _kafka_sink(settings, topics.dlq_sink),
    )
    if settings.flow.late_topic or late_sink is not None:
        late = op.flat_map("late", results, lambda o: o.late)
        messages = op.map("late-msg", late, _keyed_message)
        op.output("late-out", messages, late_sink or _kafka_sink(settings, topics.late))
    return flow


class RollupLogic(StatefulBatchLogic[tuple[str, Progress], list[SiteAggregate], bytes]):
    """Bytewax glue around one sensor type's ``RollupState``."""

    def __init__(
        self, state: RollupState, flush_at_eof: bool, stats: FlowStats, recovery: bool = True
    ) -> None:
        self.state = state
        self.flush_at_eof = flush_at_eof
        self.stats = stats
        self.recovery = recovery

    def on_batch(
        self, values: list[tuple[str, Progress]]
    ) -> tuple[list[list[SiteAggregate]], bool]:
        out = [
            agg for source, progress in values for agg in self.state.on_progress(source, progress)
        ]
        return self._emit(out)

    def on_eof(self) -> tuple[list[list[SiteAggregate]], bool]:
        return self._emit(self.state.flush() if self.flush_at_eof else [])

    def _emit(self, out: list[SiteAggregate]) -> tuple[list[list[SiteAggregate]], bool]:
        self.stats.count_sites(len(out), self.state.dropped)
        return ([out] if out else []), StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes:
        return pickle.dumps(self.state, pickle.HIGHEST_PROTOCOL) if self.recovery else b""


def _progress_by_type(kv: tuple[str, Output]) -> list[tuple[str, tuple[str, Progress]]]:
    partition, out = kv
    return [(p.sensor_type, (partition, p)) for p in out.progress]


def _kafka_sink(settings: Settings, topic: str) -> KafkaSink:
    return KafkaSink(
        brokers=[settings.kafka.bootstrap_servers],
        topic=topic,
        add_config={
            k: str(v) for k, v in settings.kafka.client_config().items() if k != "bootstrap.servers"
        },
    )


def _dead_letter_message(item: tuple[str, bytes]) -> KafkaSinkMessage[bytes | None, bytes]:
    partition, value = item
    try:
        decode_reading(value)
        error = "not a reading"
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        error = str(exc)
    letter = SinkDeadLetter(
        sink="flow",
        reason="not_a_reading",
        error=error,
        payload=value.decode("utf-8", "backslashreplace"),
        failed_at=now_ms(),
        target=partition,  # "<partition>-<topic>"
    )
    return KafkaSinkMessage(key=None, value=msgspec.json.encode(letter))


def _keyed_message(item: Reading | Aggregate) -> KafkaSinkMessage[bytes, bytes]:
    return KafkaSinkMessage(key=item.device_id.encode(), value=encode(item))
