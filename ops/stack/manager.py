"""Bring the whole local stack up or down in dependency order."""

from __future__ import annotations

from urllib.parse import urlsplit

from iotpipe.catalogue import load_catalogue
from iotpipe.connectors.kafka import ensure_topics
from iotpipe.connectors.kafka_acl import grant_stages
from iotpipe.credentials import ensure_local_credentials, local_ca_file
from iotpipe.errors import ConfigError
from iotpipe.settings import Settings, with_local_credentials
from iotpipe.topics import KafkaTopics
from ops.stack.base import Service, Status
from ops.stack.influxdb import InfluxDB
from ops.stack.kafka import Kafka
from ops.stack.mosquitto import Mosquitto
from ops.stack.tls import LocalCA


class Stack:
    """The services named by the settings, addressed by name.

    The first use generates the stack's credentials (``iotpipe.credentials``);
    ``settings`` then carry the admin account and the InfluxDB token unless
    they named their own.
    """

    def __init__(self, settings: Settings) -> None:
        state = settings.core.state_dir.expanduser().resolve()
        self.credentials = ensure_local_credentials(state)
        LocalCA(local_ca_file(state).parent).ensure()  # before clients look for it
        self.settings = settings = with_local_credentials(settings, "admin")
        kafka_host, kafka_port = _first_bootstrap(settings.kafka.bootstrap_servers)
        influx = urlsplit(settings.influx.url)
        self.mosquitto = Mosquitto(
            state,
            settings.mqtt.host,
            settings.mqtt.port,
            self.credentials,
            auth=settings.mqtt.broker_auth,
            tls_port=settings.mqtt.broker_tls_port,
            cert_port=settings.mqtt.broker_cert_port,
        )
        self.influxdb = InfluxDB(
            state,
            influx.hostname or "127.0.0.1",
            influx.port or 8086,
            settings.influx,
            self.credentials.influx_password,
        )
        self.services: dict[str, Service] = {
            "mosquitto": self.mosquitto,
            "kafka": Kafka(state, kafka_host, kafka_port, settings.kafka, self.credentials),
            "influxdb": self.influxdb,
        }

    def select(self, names: list[str] | None) -> list[Service]:
        if not names:
            return list(self.services.values())
        unknown = [n for n in names if n not in self.services]
        if unknown:
            raise ConfigError(f"unknown service(s) {unknown}; choose from {list(self.services)}")
        return [self.services[n] for n in self.services if n in names]

    def up(self, names: list[str] | None = None) -> list[Status]:
        """Start what is not running, then create the Kafka topics and InfluxDB stage tokens."""
        statuses = []
        for service in self.select(names):
            status = service.up()
            statuses.append(status)
            if service.name == "kafka":
                self.create_topics()
            if service is self.influxdb and status.state == "up":  # ours, not an external one
                self.influxdb.ensure_stage_tokens()
        return statuses

    def create_topics(self) -> list[str]:
        catalogue = load_catalogue(self.settings.core.sensors_file)
        kafka = self.settings.kafka
        topics = KafkaTopics(kafka.topic_prefix)
        made = ensure_topics(kafka, topics.all_topics(catalogue.names))
        if kafka.security_protocol == "SASL_SSL":
            grant_stages(kafka, kafka.topic_prefix)  # ACLs follow the prefix
        return made

    def down(self, names: list[str] | None = None) -> dict[str, bool]:
        """Stop in reverse order; value says whether we stopped a process."""
        return {s.name: s.down() for s in reversed(self.select(names))}

    def status(self, names: list[str] | None = None) -> list[Status]:
        return [s.status() for s in self.select(names)]


def _first_bootstrap(servers: str) -> tuple[str, int]:
    first = servers.split(",", maxsplit=1)[0].strip()
    if "://" in first:
        first = first.split("://", 1)[1]
    host, _, port = first.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(
            f"IOTPIPE_KAFKA_BOOTSTRAP_SERVERS: {servers!r} is not host:port[,host:port]"
        )
    return host, int(port)
