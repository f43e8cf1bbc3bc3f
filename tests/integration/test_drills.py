"""Fault drills: real processes under a steady load while a part dies or goes away.

Each drill runs the pipeline as its own processes (`iotpipe ingest`, `iotpipe
flow run` with recovery) on fresh topics and a fresh bucket, publishes a fixed,
seeded set of readings over MQTT at QoS 1 in real time, and does one thing to
one part mid-stream. Then: every reading is on Kafka (per-device seq), none
went to `late`, and the stored `sensor_agg` rows equal the aggregates of the
readings themselves, which is what an undisturbed run writes: duplicates from
redelivery included, since the flow counts each reading once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from iotpipe.errors import StackError
from iotpipe.model import Reading
from iotpipe.settings import Settings
from iotpipe.topics import KafkaTopics
from ops.stack import Stack
from tests.integration.pipeline import (
    Publisher,
    forget_ingest_session,
    read_topics,
    share_credentials,
    topic_sizes,
)
from tests.integration.test_flow import (  # noqa: F401  (flow_settings is a fixture)
    assert_matches,
    expected,
    flow_settings,
    stored_aggregates,
)

DEVICES = 100
STEP_S = 0.5  # each device reports twice a second: 200 messages/s
STEPS = 60  # 30 s of readings
FAULT_AT_STEP = 16


def schedule(t0: int) -> list[list[Reading]]:
    """The readings of each step, the same in every run (values from a fixed formula)."""
    return [
        [
            Reading(
                device_id=f"drill-{d}",
                sensor_type="temperature",
                site=f"site-{d % 3}",
                ts=t0 + k * int(STEP_S * 1000) + d,
                value=20.0 + ((d * 7919 + k * 104_729) % 1000) / 100,
                seq=k,
            )
            for d in range(DEVICES)
        ]
        for k in range(STEPS)
    ]


class Pipeline:
    """The ingester and the flow as processes, restartable, logs in files."""

    def __init__(self, settings: Settings, workdir: Path) -> None:
        self.settings = settings
        self.workdir = workdir
        self.env = {
            **os.environ,
            "IOTPIPE_STATE_DIR": str(share_credentials(settings, workdir / "state")),
            "IOTPIPE_KAFKA_TOPIC_PREFIX": settings.kafka.topic_prefix,
            "IOTPIPE_INFLUX_BUCKET": settings.influx.bucket,
            "IOTPIPE_INGEST_INSTANCE": f"drill{settings.kafka.topic_prefix.strip('.')}",
            "IOTPIPE_INGEST_METRICS_PORT": "0",
            "IOTPIPE_INGEST_SESSION_EXPIRY_S": "600",
            "IOTPIPE_FLOW_PRIORITY": "all",
            "IOTPIPE_FLOW_WINDOWS": "10s",
            "IOTPIPE_FLOW_ALLOWED_LATENESS_S": "2",
            "IOTPIPE_FLOW_IDLE_CLOSE_S": "4",
            "IOTPIPE_FLOW_EPOCH_INTERVAL_S": "1",
            "IOTPIPE_FLOW_RECOVERY_DIR": str(workdir / "recovery"),
            "IOTPIPE_FLOW_METRICS_PORT": "0",
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.starts = 0

    def start(self, name: str) -> None:
        argv = {"ingest": ["ingest"], "flow": ["flow", "run"]}[name]
        self.starts += 1
        log = (self.workdir / f"{name}-{self.starts}.log").open("wb")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "ops", *argv], env=self.env, stdout=log, stderr=log
        )

    def kill(self, name: str) -> None:
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs[name].wait(10)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()

    def alive(self) -> dict[str, bool]:
        return {name: proc.poll() is None for name, proc in self.procs.items()}

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}"
            for p in sorted(self.workdir.glob("*.log"))
        )


@pytest.fixture
def pipeline(flow_settings: Settings, tmp_path: Path) -> Iterator[Pipeline]:  # noqa: F811
    pipe = Pipeline(flow_settings, tmp_path)
    yield pipe
    pipe.stop()
    forget_ingest_session(flow_settings, pipe.env["IOTPIPE_INGEST_INSTANCE"])


def publish(
    pub: Publisher, steps: list[list[Reading]], at_fault: Callable[[], None]
) -> threading.Thread:
    """In real time: step k at t0 + k * STEP_S, so event times follow the wall clock."""
    began = time.monotonic()
    fault = threading.Thread(target=at_fault, daemon=True)
    for k, readings in enumerate(steps):
        if k == FAULT_AT_STEP:
            fault.start()
        time.sleep(max(0.0, began + k * STEP_S - time.monotonic()))
        for r in readings:
            body = {"ts": r.ts, "value": r.value, "seq": r.seq}
            pub.publish(f"sensors/{r.site}/{r.sensor_type}/{r.device_id}", json.dumps(body))
    return fault


def run_drill(pipe: Pipeline, stack: Stack, fault: Callable[[Pipeline, Stack], None]) -> None:
    s = pipe.settings
    pipe.start("ingest")
    pipe.start("flow")
    time.sleep(3)  # subscribed, flow assigned
    t0 = int(time.time() * 1000) + 500
    steps = schedule(t0)
    readings = [r for step in steps for r in step]
    pub = Publisher(s.mqtt, f"pub-{s.kafka.topic_prefix}")
    errors: list[BaseException] = []

    def at_fault() -> None:
        try:
            fault(pipe, stack)
        except BaseException as exc:  # reported below: a drill whose fault failed proves nothing
            errors.append(exc)

    try:
        fault_thread = publish(pub, steps, at_fault)
        fault_thread.join(180)
        assert not errors, f"the fault itself failed: {errors[0]!r}"
        pub.wait_all(180)
    finally:
        pub.close()
    want = expected(readings)
    deadline = time.monotonic() + 180
    stored: dict = {}
    while time.monotonic() < deadline:
        stored = stored_aggregates(s)
        if set(stored) >= set(want) and all(stored[k]["count"] == want[k][0] for k in want):
            break
        time.sleep(1)
    assert all(pipe.alive().values()), f"a process died: {pipe.alive()}\n{pipe.logs()}"
    topics = KafkaTopics(s.kafka.topic_prefix)
    topic = topics.readings("temperature")
    got = read_topics(s.kafka, [topic], topic_sizes(s.kafka, [topic])[topic])[topic]
    seen = {(json.loads(v)["device_id"], json.loads(v)["seq"]) for _k, v in got}
    lost = {(r.device_id, r.seq) for r in readings} - seen
    assert not lost, f"{len(lost)} readings never reached Kafka, e.g. {sorted(lost)[:5]}"
    assert topic_sizes(s.kafka, [topics.late])[topics.late] == 0, "readings went to late"
    print(f"drill: {len(got) - len(readings)} duplicates on Kafka, {len(want)} device-windows")
    try:
        assert_matches(stored, want)
    except AssertionError:
        print(pipe.logs())
        raise


def restart(name: str) -> Callable[[Pipeline, Stack], None]:
    def fault(pipe: Pipeline, _stack: Stack) -> None:
        pipe.kill(name)
        time.sleep(2)
        pipe.start(name)

    return fault


def outage(service: str, seconds: float) -> Callable[[Pipeline, Stack], None]:
    def fault(_pipe: Pipeline, stack: Stack) -> None:
        stack.services[service].down()
        time.sleep(seconds)
        bring_back(stack, service)

    return fault


def bring_back(stack: Stack, service: str, timeout: float = 90.0) -> None:
    """Start it again; a just-stopped server may hold its port for a moment."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            stack.services[service].up()
            return
        except StackError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


DRILLS = {
    "kill-9-ingester": restart("ingest"),
    "kill-9-flow": restart("flow"),
    "kafka-away-40s": outage("kafka", 40),
    "influxdb-away-40s": outage("influxdb", 40),
    "mosquitto-restart": outage("mosquitto", 1),
}


@pytest.mark.parametrize("drill", list(DRILLS))
def test_drill_loses_nothing_and_changes_no_result(
    pipeline: Pipeline, stack: Stack, drill: str
) -> None:
    for name in ("kafka", "influxdb", "mosquitto"):
        if stack.services[name].status().state == "external":
            pytest.skip(f"{name} is not ours to stop")
    run_drill(pipeline, stack, DRILLS[drill])


def test_skewed_clocks_make_only_their_own_readings_late(pipeline: Pipeline) -> None:
    """The simulator's clock-skew fault: 10% of devices up to 120 s off, either way."""
    s = pipeline.settings
    pipeline.start("ingest")
    pipeline.start("flow")
    time.sleep(3)
    sim = subprocess.run(
        [sys.executable, "-m", "ops", "simulate", "-n", "200", "--types", "temperature",
         "--interval", "1", "--duration", "25", "--fault-skew", "0.1", "--skew-max", "120",
         "--seed", "5", "--qos", "1", "--quiet", "--site-prefix", f"k{s.kafka.topic_prefix[:-1]}"],
        env=pipeline.env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert sim.returncode == 0, sim.stdout[-2000:] + sim.stderr[-2000:]
    topics = KafkaTopics(s.kafka.topic_prefix)
    readings_topic = topics.readings("temperature")
    offsets: dict[str, list[int]] = {}
    counted: dict[str, int] = {}
    on_time: set[str] = set()
    behind: set[str] = set()
    ahead: set[str] = set()
    deadline = time.monotonic() + 120  # the flow goes idle and closes the last windows
    while time.monotonic() < deadline:
        time.sleep(2)
        got = read_topics(
            s.kafka, [readings_topic], topic_sizes(s.kafka, [readings_topic])[readings_topic]
        )
        offsets = {}
        for _k, v in got[readings_topic]:
            r = json.loads(v)
            offsets.setdefault(r["device_id"], []).append(r["ingest_ts"] - r["ts"])
        # a device's clock offset: how far its event times sit behind (+) or ahead (-) of arrival
        offset = {d: sorted(o)[len(o) // 2] for d, o in offsets.items()}
        behind = {d for d, o in offset.items() if o > 3_000}
        ahead = {d for d, o in offset.items() if o < -3_000}
        on_time = set(offset) - behind - ahead
        counted = dict.fromkeys(offset, 0)
        for (device, _start), row in stored_aggregates(s).items():
            counted[device] += int(row["count"])
        if all(counted[d] == len(offsets[d]) for d in on_time):
            break
    assert behind and ahead, "the seed gave no skewed devices both ways"
    late = read_topics(s.kafka, [topics.late], topic_sizes(s.kafka, [topics.late])[topics.late])
    late_devices = {json.loads(v)["device_id"] for _k, v in late[topics.late]}
    assert late_devices <= behind, f"on-time devices made late: {sorted(late_devices - behind)[:5]}"
    # Every reading of every on-time device is aggregated. (A device ahead is not late
    # either: its windows close when wall time reaches its clock.)
    for device in on_time:
        assert counted[device] == len(offsets[device]), device
