"""The ingester's MQTT side: a persistent, shared, manually acknowledged session.

- Shared subscription (``$share/<group>/sensors/#``): several ingesters split
  the load. Mosquitto 2.0.11 (Debian 12) does not restore shared subscriptions
  after a broker restart, so readings published between a restart and our
  re-subscribe are dropped by the broker; with an empty group the ingester
  uses a plain subscription, which the broker keeps across restarts.
- Persistent session (clean start off, session expiry): the broker keeps
  queuing while we are away, and redelivers what we had not acknowledged.
- Manual acks: a message is acknowledged only when the caller says so, after
  Kafka has confirmed it. We subscribe at QoS 1, so QoS 2 publishers are
  delivered to us at QoS 1 (paho would otherwise complete the QoS 2 handshake
  before we have written to Kafka).
- Reconnects by itself with backoff, and re-subscribes on every connect.
- Retained messages: with MQTT v5 we subscribe with Retain Handling 2, so the
  broker never replays its retained store to us on (re)subscribe; with 3.1.1
  it does, flagged retain, and the ingester dead-letters them (``retained``).
- Exceptions from our callback are contained by the ingester; paho's own
  ``suppress_exceptions`` is on as well, and ``alive()`` tells the process
  when the network thread has died anyway, so it can exit for a restart.
"""

from __future__ import annotations

import logging
import struct
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from iotpipe.connectors.mqtt import build_client, session_client_id
from iotpipe.errors import ConnectorError
from iotpipe.settings import IngestSettings, MqttSettings
from iotpipe.topics import mqtt_subscription

log = logging.getLogger(__name__)
_PUBACK = struct.Struct("!BBH")  # fixed header, remaining length 2, packet id

MessageHandler = Callable[[mqtt.MQTTMessage], None]


def ingest_client_id(mqtt_settings: MqttSettings, ingest: IngestSettings) -> str:
    """The ingester instance's persistent session (secret, see ``session_client_id``)."""
    return session_client_id(mqtt_settings, f"ingest-{ingest.instance}")


class MqttSession:
    """Receives readings from the broker; the caller acknowledges each message."""

    def __init__(
        self, mqtt_settings: MqttSettings, ingest: IngestSettings, on_message: MessageHandler
    ) -> None:
        self.settings = mqtt_settings
        self.ingest = ingest
        self.client_id = ingest_client_id(mqtt_settings, ingest)
        group = mqtt_settings.shared_group or None
        sites = mqtt_settings.site_list() or (None,)
        self.subscriptions = [mqtt_subscription(group, site) for site in sites]
        self.subscription = ",".join(self.subscriptions)  # for logs
        self.connected = threading.Event()
        self.connects = 0
        self._v5 = mqtt_settings.protocol == "5"
        self._handler = on_message
        self._client = build_client(mqtt_settings, self.client_id, manual_ack=True)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._client.suppress_exceptions = True
        self._client.reconnect_delay_set(min_delay=1, max_delay=ingest.reconnect_max_s)

    def start(self, timeout: float = 30.0) -> None:
        """Connect (retrying in the background); return once subscribed (SUBACK)."""
        kwargs: dict[str, Any] = {"keepalive": self.settings.keepalive_s}
        if self._v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = self.ingest.session_expiry_s
            props.ReceiveMaximum = self.ingest.max_inflight
            kwargs.update(clean_start=False, properties=props)
        try:
            self._client.connect_async(self.settings.host, self.settings.port, **kwargs)
        except (OSError, ValueError) as exc:
            raise ConnectorError(f"MQTT {self.settings.url}: {exc}", retryable=True) from exc
        self._client.loop_start()
        if not self.connected.wait(timeout):
            self.stop()
            raise ConnectorError(
                f"MQTT {self.settings.url}: no connection within {timeout:.0f}s", retryable=True
            )

    def ack(self, mid: int, qos: int) -> None:
        """Acknowledge a message; safe from any thread. Lost acks mean redelivery."""
        if qos:
            rc = self._client.ack(mid, qos)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                log.debug("ack of mid %s not sent (%s); the broker will redeliver", mid, rc)

    def ack_many(self, mids: list[int]) -> None:
        """Acknowledge many QoS 1 messages with one write; safe from any thread.

        paho's ``ack()`` queues one packet per message and wakes its network
        thread through a socket each time, which costs more than the rest of
        ingesting a reading. PUBACKs are fixed 4-byte packets, so we queue them
        as one buffer through paho's own packet queue (a private method,
        hence the fallback for a paho that lacks it).
        """
        if not mids:
            return
        queue = getattr(self._client, "_packet_queue", None)
        if queue is None:
            for mid in mids:
                self.ack(mid, 1)
            return
        data = b"".join([_PUBACK.pack(0x40, 2, mid) for mid in mids])
        queue(0x40, data, mids[-1], 1)

    def alive(self) -> bool:
        """False once paho's network thread has ended (it does not restart by itself)."""
        thread = getattr(self._client, "_thread", None)
        return thread is not None and thread.is_alive()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        if reason.is_failure:
            log.error("MQTT connect refused: %s", reason)
            return
        self.connects += 1
        # Subscribe on every connect: harmless with a resumed session, and
        # required if the broker lost it (restart without persistence).
        if self._v5:
            options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND)
            client.subscribe([(topic, options) for topic in self.subscriptions])
        else:
            client.subscribe([(topic, 1) for topic in self.subscriptions])
        log.info("MQTT connected as %s, subscribing to %s", self.client_id, self.subscription)

    def _on_subscribe(
        self, _client: mqtt.Client, _userdata: Any, _mid: int, reasons: list[ReasonCode], _p: Any
    ) -> None:
        if any(r.is_failure for r in reasons):
            log.error("MQTT subscription to %s refused: %s", self.subscription, reasons)
            return
        self.connected.set()

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        self.connected.clear()
        if reason.is_failure:
            log.warning("MQTT connection lost (%s); reconnecting", reason)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._handler(message)
