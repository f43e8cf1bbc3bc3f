"""MQTT output: readings to ``sensors/<site>/<type>/<device>``, or gateway arrays.

Several connections share the load (a device, or a gateway, always uses the
same one, so its readings stay in order). Publishing never outruns the broker: each connection
keeps at most ``max_pending`` messages not yet written (QoS 0) or not yet
acknowledged (QoS 1), counted through paho's ``on_publish``. Connection
settings, TLS and credentials come from ``MqttSettings`` via the ingester's
``build_client``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from iotpipe.connectors.mqtt import build_client
from iotpipe.errors import ConfigError, ConnectorError
from iotpipe.settings import MqttSettings
from iotpipe.topics import SENSORS_ROOT
from simulators.names import Naming
from simulators.outgoing import Outgoing, gateway_batches
from simulators.outputs import OutputStats


class _Connection:
    """One paho client with its own counts of pending and confirmed readings."""

    def __init__(self, settings: MqttSettings, client_id: str, max_pending: int) -> None:
        self.client = build_client(settings, client_id)
        self.client.max_inflight_messages_set(min(max_pending, 65_535))
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(min_delay=1, max_delay=10)
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.max_pending = max_pending
        self.connected = threading.Event()
        self.refused: str | None = None
        self._lock = threading.Lock()
        self._pending: dict[int, int] = {}  # mid -> readings
        self.confirmed = 0
        self.confirmed_messages = 0

    def _on_connect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        if reason.is_failure:
            self.refused = str(reason)
        else:
            self.connected.set()

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, _r: Any, _p: Any) -> None:
        with self._lock:
            readings = self._pending.pop(mid, None)
            if readings is None:  # callback before publish() returned: settle later
                self._pending[mid] = -1
                return
            self.confirmed += readings
            self.confirmed_messages += 1

    def publish(self, topic: str, payload: bytes, qos: int, readings: int) -> bool:
        while len(self._pending) >= self.max_pending:
            time.sleep(0.0005)
        info = self.client.publish(topic, payload, qos=qos)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN) or (
            info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN and qos == 0
        ):
            return False
        with self._lock:
            if self._pending.pop(info.mid, None) == -1:
                self.confirmed += readings
                self.confirmed_messages += 1
            else:
                self._pending[info.mid] = readings
        return True

    def pending_readings(self) -> int:
        with self._lock:
            return sum(v for v in self._pending.values() if v > 0)


class MqttOutput:
    """Publishes readings over one or more MQTT connections."""

    name = "mqtt"

    def __init__(
        self,
        settings: MqttSettings,
        naming: Naming,
        *,
        qos: int = 1,
        connections: int = 1,
        batch_size: int = 1,
        by_type: bool = False,
        client_id: str = "sim",
        max_pending: int = 1000,
        connect_timeout: float = 10.0,
        root: str = SENSORS_ROOT,
    ) -> None:
        if qos not in (0, 1):
            raise ConfigError(f"QoS {qos}: the simulator publishes at QoS 0 or 1")
        if not 1 <= connections <= 256:
            raise ConfigError(f"connections {connections} must be within 1..256")
        self.settings = settings
        self.naming = naming
        self.qos = qos
        self.batch_size = batch_size
        self.by_type = by_type
        self.client_id = f"{settings.client_id_prefix}-{client_id}"
        self.connect_timeout = connect_timeout
        self.root = root  # benchmarks use another root, so no ingester picks them up
        self.stats = OutputStats()
        self._conns = [
            _Connection(settings, f"{self.client_id}-{i}", max_pending) for i in range(connections)
        ]
        self._types = [t for t in naming.types]
        self._sites = [s for s in naming.sites]
        self._failed_publish = 0

    def open(self) -> None:
        """Connect every client; a broker that is down is a ``ConnectorError``."""
        where = self.settings.url
        for conn in self._conns:
            try:
                conn.client.connect(self.settings.host, self.settings.port, keepalive=30)
            except (OSError, ValueError) as exc:
                self._stop_all()
                reason = getattr(exc, "strerror", None) or str(exc)
                raise ConnectorError(
                    f"MQTT broker {where}: cannot connect: {reason}", retryable=True
                ) from exc
            conn.client.loop_start()
        deadline = time.monotonic() + self.connect_timeout
        for conn in self._conns:
            while not conn.connected.is_set():
                if conn.refused or time.monotonic() > deadline:
                    self._stop_all()
                    why = f"refused: {conn.refused}" if conn.refused else "no CONNACK in time"
                    raise ConnectorError(f"MQTT broker {where}: {why}")
                time.sleep(0.01)

    def send(self, out: Outgoing) -> None:
        if not len(out):
            return
        k = len(self._conns)
        if self.batch_size <= 1:
            types, sites, naming, root = self._types, self._sites, self.naming, self.root
            for rec, d, t, s in zip(
                out.records, out.device.tolist(), out.stype.tolist(), out.site.tolist(), strict=True
            ):
                topic = f"{root}/{sites[s]}/{types[t]}/{naming.device_id(d)}"
                self._publish(self._conns[d % k], topic, rec, 1)
            return
        for msg in gateway_batches(out, self.batch_size, by_type=self.by_type):
            topic = f"{self.root}/{self._sites[msg.site]}"
            if msg.stype is not None:
                topic += f"/{self._types[msg.stype]}"
            gateway = msg.site * 256 + (msg.stype or 0)  # one gateway, one connection: in order
            self._publish(self._conns[gateway % k], topic, msg.payload, msg.readings)

    def _publish(self, conn: _Connection, topic: str, payload: bytes, readings: int) -> None:
        if conn.publish(topic, payload, self.qos, readings):
            self.stats.bytes += len(payload)
        else:
            self._failed_publish += readings

    def _refresh(self) -> None:
        self.stats.sent = sum(c.confirmed for c in self._conns)
        self.stats.messages = sum(c.confirmed_messages for c in self._conns)
        self.stats.failed = self._failed_publish

    def poll_stats(self) -> OutputStats:
        self._refresh()
        return self.stats

    def storm(self, size: int, timeout: float = 10.0) -> int:
        """``size`` extra device connections opened at once, then closed; returns how many
        the broker accepted. Models a site's devices reconnecting after an outage."""
        clients = []
        for i in range(size):
            c = build_client(self.settings, f"{self.client_id}-storm-{i}")
            try:
                c.connect(self.settings.host, self.settings.port, keepalive=30)
            except OSError:
                continue
            clients.append(c)
        accepted = 0
        deadline = time.monotonic() + timeout
        waiting = list(clients)
        while waiting and time.monotonic() < deadline:
            still = []
            for c in waiting:
                c.loop(timeout=0.001)
                if c.is_connected():
                    accepted += 1
                else:
                    still.append(c)
            waiting = still
        for c in clients:
            c.disconnect()
        return accepted

    def close(self, timeout: float = 30.0) -> None:
        """Wait for every pending message (QoS 1: its PUBACK), then disconnect."""
        deadline = time.monotonic() + timeout
        while any(c.pending_readings() for c in self._conns) and time.monotonic() < deadline:
            time.sleep(0.01)
        self._refresh()
        self.stats.failed += sum(c.pending_readings() for c in self._conns)
        self._stop_all()

    def _stop_all(self) -> None:
        for conn in self._conns:
            conn.client.disconnect()
            conn.client.loop_stop()
