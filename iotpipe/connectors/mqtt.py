"""The one MQTT client factory: protocol, credentials and TLS from the settings.

The ingester, the simulator and the alert emitter all connect through it, so a
security setting (a password, a CA, a client certificate) applies to each.
"""

from __future__ import annotations

import hashlib
import hmac
import ssl

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from iotpipe.settings import MqttSettings


def build_client(
    mqtt_settings: MqttSettings, client_id: str, *, manual_ack: bool = False
) -> mqtt.Client:
    """A paho client with the protocol, TLS and credentials from the settings."""
    protocol = mqtt.MQTTv5 if mqtt_settings.protocol == "5" else mqtt.MQTTv311
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=protocol,
        clean_session=None if protocol == mqtt.MQTTv5 else False,
        manual_ack=manual_ack,
    )
    authenticate(client, mqtt_settings)
    return client


def authenticate(client: mqtt.Client, mqtt_settings: MqttSettings) -> None:
    """The settings' account and TLS on a paho client (bare clients in tools and tests too)."""
    if mqtt_settings.username:
        password = mqtt_settings.password.get_secret_value() if mqtt_settings.password else None
        client.username_pw_set(mqtt_settings.username, password)
    if mqtt_settings.tls:
        client.tls_set(
            ca_certs=str(mqtt_settings.tls_ca_file) if mqtt_settings.tls_ca_file else None,
            certfile=str(mqtt_settings.tls_cert_file) if mqtt_settings.tls_cert_file else None,
            keyfile=str(mqtt_settings.tls_key_file) if mqtt_settings.tls_key_file else None,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
        client.tls_insecure_set(mqtt_settings.tls_insecure)


def session_client_id(mqtt_settings: MqttSettings, name: str) -> str:
    """A persistent session's client id that only the account's owner can know.

    A broker hands a session to whoever connects with its client id; with a
    predictable id (``iotpipe-ingest-a``) any authenticated device could take
    over the ingester's session and the readings queued for it. A tag keyed
    by the account's password keeps the id stable across restarts and secret.
    """
    base = f"{mqtt_settings.client_id_prefix}-{name}"
    if mqtt_settings.password is None:
        return base
    key = mqtt_settings.password.get_secret_value().encode()
    return f"{base}-{hmac.new(key, base.encode(), hashlib.sha256).hexdigest()[:12]}"
