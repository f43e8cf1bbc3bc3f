"""Where an alert goes besides Kafka (MQTT, an HTTP webhook, a log line), and Kafka itself.

Each target's ``send`` returns the alerts it could not deliver, with why, so
the emitter (``sinks.alerts``) dead-letters them for that target and the
flow goes on.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import msgspec
import paho.mqtt.client as mqtt_client
import urllib3
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import SecretStr
from tenacity import Retrying, retry_if_exception, stop_after_attempt

from iotpipe.connectors.mqtt import build_client
from iotpipe.errors import ConnectorError
from iotpipe.model import Alert
from iotpipe.retry import Backoff, retry_after_s
from iotpipe.settings import AlertSettings, KafkaSettings, MqttSettings
from iotpipe.topics import KafkaTopics, TopicError, mqtt_alert_topic
from sinks.alert_policy import ALERT_SIGNATURE, SIGNATURE_HEADER, sign
from sinks.confirmed import ConfirmedProducer

log = logging.getLogger(__name__)
event_log = logging.getLogger("iotpipe.alerts")

_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.ERROR}
_encoder = msgspec.json.Encoder()


def alert_json(alert: Alert) -> bytes:
    """The Alert as JSON with every field, ``state`` included even when "raised".

    (``codec.encode`` omits defaults; receivers should not have to know them.)
    """
    return _encoder.encode(msgspec.structs.asdict(alert))


Undelivered = list[tuple[Alert, str]]  # an alert one output could not deliver, and why


def _key(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret else None


class KafkaAlertTarget:
    """The system of record: every non-duplicate alert, keyed by device.

    ``send`` waits through a Kafka outage (the flow waits with it); only an
    alert Kafka refuses for good comes back, to be dead-lettered. With a key
    each record carries an ``iotpipe-signature`` header over its exact value.
    """

    def __init__(
        self, kafka: KafkaSettings, timeout_s: float, signing_key: SecretStr | None = None
    ) -> None:
        self.topic = KafkaTopics(kafka.topic_prefix).alerts
        self.timeout_s = timeout_s
        self._key = _key(signing_key)
        self._producer = ConfirmedProducer(kafka, self.topic)

    def send(self, alerts: list[Alert]) -> Undelivered:
        records = [(self.topic, alert_json(a), a.device_id.encode()) for a in alerts]
        headers = None
        if self._key:
            headers = [[(ALERT_SIGNATURE, sign(v, self._key).encode())] for _t, v, _k in records]
        return [(alerts[i], error) for i, error in self._producer.send(records, headers)]

    def close(self) -> None:
        self._producer.close(self.timeout_s)


class MqttAlertTarget:
    """QoS 1 publishes to ``alerts/<site>/<sensor_type>/<device_id>``.

    Completion is tracked from PUBACKs (``on_publish``), not from paho's
    ``wait_for_publish``, which gives up on a message published while the
    connection was down even though paho still sends it after reconnecting.
    """

    def __init__(
        self, mqtt: MqttSettings, timeout_s: float, signing_key: SecretStr | None = None
    ) -> None:
        self.timeout_s = timeout_s
        self._key = _key(signing_key)
        self._v5 = mqtt.protocol == "5"
        self._acked: set[int] = set()
        self._cond = threading.Condition()
        self._connected = threading.Event()
        client_id = f"{mqtt.client_id_prefix}-alerts-{uuid.uuid4().hex[:8]}"
        self._client = build_client(mqtt, client_id)
        self._client.on_connect = lambda *_a: self._connected.set()
        self._client.on_disconnect = lambda *_a: self._connected.clear()
        self._client.on_publish = self._on_publish
        self._client.reconnect_delay_set(min_delay=1, max_delay=10)
        try:
            self._client.connect_async(mqtt.host, mqtt.port, keepalive=mqtt.keepalive_s)
        except (OSError, ValueError) as exc:
            raise ConnectorError(f"MQTT {mqtt.url}: {exc}", retryable=True) from exc
        self._client.loop_start()
        if not self._connected.wait(timeout_s):
            self.close()
            raise ConnectorError(
                f"MQTT {mqtt.url}: no connection in {timeout_s:.0f}s", retryable=True
            )

    def _signed(self, body: bytes) -> Properties | None:
        """MQTT v5 carries the signature as a user property (3.1.1 has nowhere to put it)."""
        if not (self._key and self._v5):
            return None
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.UserProperty = [(ALERT_SIGNATURE, sign(body, self._key))]
        return props

    def _on_publish(self, *args: Any) -> None:
        with self._cond:
            self._acked.add(args[2])  # (client, userdata, mid, reason, properties)
            self._cond.notify_all()

    def send(self, alerts: list[Alert]) -> Undelivered:
        """Publish all, then wait for every PUBACK (paho resends after a reconnect).

        Returns the alerts that could not be published or were not acknowledged
        within the timeout; the caller dead-letters them, and the flow goes on.
        """
        failed: Undelivered = []
        mids: dict[int, Alert] = {}
        for a in alerts:
            try:
                topic = mqtt_alert_topic(a.site, a.sensor_type, a.device_id)
                body = alert_json(a)
                info = self._client.publish(topic, body, qos=1, properties=self._signed(body))
            except (TopicError, ValueError) as exc:
                failed.append((a, f"not publishable on MQTT: {exc}"))
                continue
            if info.rc not in (mqtt_client.MQTT_ERR_SUCCESS, mqtt_client.MQTT_ERR_NO_CONN):
                failed.append((a, f"MQTT publish refused: {mqtt_client.error_string(info.rc)}"))
                continue
            mids[info.mid] = a
        with self._cond:
            self._cond.wait_for(lambda: mids.keys() <= self._acked, self.timeout_s)
            missing = mids.keys() - self._acked
            self._acked -= mids.keys()
        reason = f"no PUBACK within {self.timeout_s:.0f} s"
        failed += [(mids[mid], reason) for mid in sorted(missing)]
        return failed

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class WebhookTarget:
    """One JSON POST per alert, signed if a secret is set, retried with backoff."""

    def __init__(
        self, settings: AlertSettings, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.url = settings.webhook_url
        self.attempts = settings.webhook_max_attempts
        self._backoff = Backoff(settings.webhook_retry_initial_s, settings.webhook_retry_max_s)
        self._secret = _key(settings.webhook_secret)
        self._sleep = sleep
        self._http = urllib3.PoolManager(
            retries=False, timeout=urllib3.Timeout(total=settings.webhook_timeout_s)
        )

    def post(self, alert: Alert) -> None:
        """Deliver one alert; raises ``ConnectorError`` once retries are spent."""
        body = alert_json(alert)
        headers = {
            "Content-Type": "application/json",
            "X-Iotpipe-Alert-Id": alert.alert_id,
            "X-Iotpipe-Alert-State": alert.state,
        }
        if self._secret:
            headers[SIGNATURE_HEADER] = sign(body, self._secret)
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=self._backoff,
            retry=retry_if_exception(lambda e: isinstance(e, ConnectorError) and e.retryable),
            sleep=self._sleep,
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                self._post_once(body, headers)

    def _post_once(self, body: bytes, headers: dict[str, str]) -> None:
        try:
            resp = self._http.request("POST", self.url, body=body, headers=headers)
        except urllib3.exceptions.HTTPError as exc:
            raise ConnectorError(f"webhook {self.url}: {exc}", retryable=True) from exc
        if resp.status < 300:
            return
        retryable = resp.status == 429 or resp.status >= 500
        raise ConnectorError(
            f"webhook {self.url}: HTTP {resp.status}",
            retryable=retryable,
            retry_after=retry_after_s(resp.headers.get("Retry-After")),
        )

    def close(self) -> None:
        self._http.clear()


def log_alert(alert: Alert) -> None:
    """One structured line per alert (JSON message, ``alert`` in ``extra``)."""
    event_log.log(
        _LEVELS.get(alert.severity, logging.ERROR),
        "alert %s",
        alert_json(alert).decode(),
        extra={"alert": msgspec.to_builtins(alert)},
    )
