"""Apache Kafka 4.x in KRaft mode, run from the jars on Maven Central.

``deploy/kafka/pom.xml`` lists the runtime jars; Maven copies them into the
state directory once. See ``deploy/kafka/README.md`` for the same steps by hand.

With ``IOTPIPE_KAFKA_SECURITY_PROTOCOL=SASL_SSL`` the broker listens with
SCRAM-SHA-512 over TLS (a certificate from the stack's CA), the controller
listener with PLAIN over TLS, and the StandardAuthorizer applies ACLs: each
project account gets what its stage needs (``iotpipe/connectors/kafka_acl.py``).
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
from pathlib import Path

from confluent_kafka.admin import AdminClient

from iotpipe.connectors import kafka_acl
from iotpipe.credentials import LocalCredentials, local_ca_file, mqtt_account, write_private
from iotpipe.errors import StackError
from iotpipe.settings import KafkaSettings
from ops.stack.base import Service
from ops.stack.tls import ensure_server_tls

CONTROLLER_USER = "iotpipe-controller"
SCRAM_MARKER = "scram.formatted"  # storage formatted with the admin's SCRAM account

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kafka"
_QUIET = logging.getLogger("ops.stack.kafka.probe")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False
JVM_OPTS = [
    "-Xms256m",
    "-Xmx1g",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
]


class Kafka(Service):
    name = "kafka"
    start_timeout_s = 90.0

    def __init__(
        self,
        state_dir: Path,
        host: str,
        port: int,
        settings: KafkaSettings | None = None,
        credentials: LocalCredentials | None = None,
    ) -> None:
        super().__init__(state_dir, host, port)
        self.settings = settings or KafkaSettings(bootstrap_servers=f"{host}:{port}")
        self.credentials = credentials
        self.secure = self.settings.security_protocol == "SASL_SSL"
        if self.secure and credentials is None:
            raise StackError("a SASL_SSL Kafka needs the stack's credentials")

    @property
    def libs(self) -> Path:
        return self.home / "libs"

    @property
    def config_file(self) -> Path:
        return self.home / "server.properties"

    def install(self) -> None:
        """Fetch the jars with Maven into the state directory (once)."""
        marker = self.libs / ".complete"
        if marker.exists():
            return
        for tool in ("java", "mvn"):
            if not shutil.which(tool):
                raise StackError(f"kafka needs '{tool}' (Java 17+ and Maven) on PATH")
        self.libs.mkdir(parents=True, exist_ok=True)
        _run(
            [
                "mvn",
                "-q",
                "-B",
                "-f",
                str(DEPLOY / "pom.xml"),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={self.libs}",
                f"-Dmaven.repo.local={self.state_dir / 'm2'}",
            ],
            "fetching the Kafka jars with Maven",
        )
        marker.touch()

    def _java(self, main: str, *args: str, heap: list[str] | None = None) -> list[str]:
        return [
            "java",
            *(heap or JVM_OPTS),
            f"-Dlog4j2.configurationFile={DEPLOY / 'log4j2.yaml'}",
            f"-Dkafka.logs.dir={self.home / 'logs'}",
            "-cp",
            f"{self.libs}/*",
            main,
            *args,
        ]

    def prepare(self) -> None:
        """Render server.properties; format storage on the very first start."""
        data = self.home / "data"
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        data.mkdir(parents=True, exist_ok=True)
        text = (DEPLOY / "server.properties").read_text()
        text = text.replace("${KAFKA_LOG_DIRS}", str(data))
        text = text.replace("127.0.0.1:9092", f"{self.host}:{self.port}")
        text = text.replace("127.0.0.1:9093", f"{self.host}:{self.port + 1}")
        if self.secure:
            text += self._secure_properties()
        write_private(self.config_file, text)  # the secure one holds the JAAS passwords
        if (data / "meta.properties").exists():
            if self.secure and not (self.home / SCRAM_MARKER).exists():
                raise StackError(
                    f"Kafka storage in {data} was formatted without SCRAM accounts; to run it"
                    f" with SASL_SSL, stop it and remove {data} (its topics are lost)"
                )
            return
        cluster_file = self.home / "cluster.id"
        if not cluster_file.exists():
            out = _run(
                self._java("kafka.tools.StorageTool", "random-uuid", heap=["-Xmx256m"]),
                "generating a cluster id",
            )
            cluster_file.write_text(out.strip().splitlines()[-1] + "\n")
        fmt = self._java(
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_file.read_text().strip(),
            "-c",
            str(self.config_file),
            "--standalone",
            "--ignore-formatted",
            *self._scram_bootstrap(),
            heap=["-Xmx256m"],
        )
        # Through a 0600 argument file, so the admin's password is never on `ps`.
        args = self.home / "format.args"
        write_private(args, "".join(f'"{a}"\n' for a in fmt[1:]))
        try:
            _run([fmt[0], f"@{args}"], "formatting Kafka storage")
        finally:
            args.unlink(missing_ok=True)
        if self.secure:
            (self.home / SCRAM_MARKER).touch()

    def _secure_properties(self) -> str:
        """SASL_SSL listeners, TLS from the stack's CA, and the ACL authorizer."""
        assert self.credentials is not None
        files = ensure_server_tls(self.state_dir, self.host, "kafka")
        keystore = self.home / "keystore.pem"  # Kafka's PEM keystore: key, then certificate
        write_private(keystore, files.server_key.read_text() + files.server_cert.read_text())
        admin, admin_pw = mqtt_account("admin"), self.credentials.kafka["admin"]
        controller, controller_pw = CONTROLLER_USER, self.credentials.kafka_controller
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule"
        plain = "org.apache.kafka.common.security.plain.PlainLoginModule"
        return "\n".join(
            [
                "",
                "# Rendered by ops/stack/kafka.py for SASL_SSL (overrides the lines above).",
                f"listeners=SASL_SSL://{self.address},CONTROLLER://{self.host}:{self.port + 1}",
                f"advertised.listeners=SASL_SSL://{self.host}:{self.port}",
                "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SASL_SSL",
                "inter.broker.listener.name=SASL_SSL",
                "sasl.enabled.mechanisms=SCRAM-SHA-512",
                "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
                "sasl.mechanism.controller.protocol=PLAIN",
                "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
                f"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={scram} required"
                f' username="{admin}" password="{admin_pw}";',
                f"listener.name.controller.plain.sasl.jaas.config={plain} required"
                f' username="{controller}" password="{controller_pw}"'
                f' user_{controller}="{controller_pw}";',
                "ssl.keystore.type=PEM",
                f"ssl.keystore.location={keystore}",
                "ssl.truststore.type=PEM",
                f"ssl.truststore.location={files.ca_cert}",
                "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                f"super.users=User:{admin};User:{controller}",
                "allow.everyone.if.no.acl.found=false",
                "",
            ]
        )

    def _scram_bootstrap(self) -> list[str]:
        """The admin's SCRAM account, made with the storage (it makes the others later)."""
        if not self.secure:
            return []
        assert self.credentials is not None
        admin, password = mqtt_account("admin"), self.credentials.kafka["admin"]
        return ["--add-scram", f"SCRAM-SHA-512=[name={admin},password={password}]"]

    def command(self) -> list[str]:
        return self._java("kafka.Kafka", str(self.config_file))

    def probe(self) -> str:
        """Broker metadata through a real Kafka client."""
        with socket.create_connection((self.host, self.port), timeout=1):
            pass  # fail fast (and quietly) while the listener is not up yet
        meta = self._admin().list_topics(timeout=3)
        if not meta.brokers:
            raise StackError("no brokers in metadata")
        said = f"{len(meta.brokers)} broker(s), {len(meta.topics)} topics"
        return f"{said}; SASL_SSL, ACLs" if self.secure else said

    @property
    def admin_settings(self) -> KafkaSettings:
        """The settings' admin account on this broker, pinning the stack's CA when secure."""
        update: dict[str, object] = {"bootstrap_servers": self.address}
        if self.secure and self.settings.ssl_ca_location is None:
            update["ssl_ca_location"] = local_ca_file(self.state_dir)
        return self.settings.model_copy(update=update)

    def _admin(self) -> AdminClient:
        """An admin client as the stack's admin account (SCRAM over TLS when secure)."""
        conf: dict[str, object] = {
            **self.admin_settings.client_config(),
            "bootstrap.servers": self.address,
            "socket.connection.setup.timeout.ms": 2000,
            "logger": _QUIET,
        }
        return AdminClient(conf)  # type: ignore[arg-type,unused-ignore]  # "logger" takes a Logger

    def after_start(self) -> None:
        """Secure: every project account's SCRAM password and the stages' ACLs."""
        if self.secure:
            assert self.credentials is not None
            admin = self.admin_settings
            kafka_acl.upsert_accounts(admin, self.credentials)
            kafka_acl.grant_stages(admin, self.settings.topic_prefix)


def _run(argv: list[str], what: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise StackError(
            f"{what} failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}"
        )
    return done.stdout
