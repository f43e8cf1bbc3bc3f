"""Apache Kafka 4.x in KRaft mode, run from the jars on Maven Central.

``deploy/kafka/pom.xml`` lists the runtime jars; Maven copies them into the
state directory once. See ``deploy/kafka/README.md`` for the same steps by hand.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
from pathlib import Path

from confluent_kafka.admin import AdminClient

from iotpipe.errors import StackError
from ops.stack.base import Service

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
        self.config_file.write_text(text)
        if (data / "meta.properties").exists():
            return
        cluster_file = self.home / "cluster.id"
        if not cluster_file.exists():
            out = _run(
                self._java("kafka.tools.StorageTool", "random-uuid", heap=["-Xmx256m"]),
                "generating a cluster id",
            )
            cluster_file.write_text(out.strip().splitlines()[-1] + "\n")
        _run(
            self._java(
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_file.read_text().strip(),
                "-c",
                str(self.config_file),
                "--standalone",
                "--ignore-formatted",
                heap=["-Xmx256m"],
            ),
            "formatting Kafka storage",
        )

    def command(self) -> list[str]:
        return self._java("kafka.Kafka", str(self.config_file))

    def probe(self) -> str:
        """Broker metadata through a real Kafka client."""
        with socket.create_connection((self.host, self.port), timeout=1):
            pass  # fail fast (and quietly) while the listener is not up yet
        conf: dict[str, object] = {
            "bootstrap.servers": self.address,
            "socket.connection.setup.timeout.ms": 2000,
            "logger": _QUIET,
        }
        client = AdminClient(conf)  # type: ignore[arg-type,unused-ignore]  # "logger" takes a Logger
        meta = client.list_topics(timeout=3)
        if not meta.brokers:
            raise StackError("no brokers in metadata")
        return f"{len(meta.brokers)} broker(s), {len(meta.topics)} topics"


def _run(argv: list[str], what: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise StackError(
            f"{what} failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}"
        )
    return done.stdout
