"""Who may do what on a SASL_SSL Kafka of the local stack: SCRAM accounts and ACLs.

Only the ingester writes ``readings.*``; the flow reads them and writes what
it derives (alerts, aggregates, dead letters, late readings); the simulator
and the dashboard's stage have no Kafka rights of their own; the admin
account (stack, status, tests, benchmarks) is a super user. The stack
applies both at every start of its broker (a rotated password or a new rule
takes effect); ACLs follow a topic prefix, so whoever makes the pipeline's
topics under another prefix (``iotpipe topics create``, a benchmark) grants
them with ``grant_stages`` too.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import Future

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from iotpipe.credentials import ROLES, LocalCredentials, mqtt_account
from iotpipe.errors import ConnectorError
from iotpipe.settings import KafkaSettings
from iotpipe.topics import KafkaTopics

SCRAM_ITERATIONS = 8192
# The flow's sources and the alert de-duplication's reader use these group names.
FLOW_GROUP_PREFIX = "iotpipe-flow-"
SEED_GROUP_PREFIX = "iotpipe-alert-seed-"

Rule = tuple[ResourceType, str, ResourcePatternType, AclOperation]


def stage_rules(prefix: str) -> dict[str, list[Rule]]:
    """The ACL entries of each project account, for topics under ``prefix``."""
    topics = KafkaTopics(prefix)
    topic, group = ResourceType.TOPIC, ResourceType.GROUP
    lit, pre = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED
    op = AclOperation
    readings = topics.readings("")
    derived = [topics.alerts, topics.aggregates, topics.dlq_sink, topics.late]
    ingest: list[Rule] = [
        (topic, readings, pre, op.WRITE),
        (topic, readings, pre, op.DESCRIBE),
        (topic, topics.dlq_ingest, lit, op.WRITE),
        (topic, topics.dlq_ingest, lit, op.DESCRIBE),
        (ResourceType.BROKER, "kafka-cluster", lit, op.IDEMPOTENT_WRITE),
    ]
    flow: list[Rule] = [
        (topic, readings, pre, op.READ),
        (topic, readings, pre, op.DESCRIBE),
        *[(topic, name, lit, o) for name in derived for o in (op.WRITE, op.DESCRIBE)],
        (topic, topics.alerts, lit, op.READ),  # de-duplication is seeded from it
        (group, f"{prefix}{FLOW_GROUP_PREFIX}", pre, op.READ),
        (group, SEED_GROUP_PREFIX, pre, op.READ),
        (ResourceType.BROKER, "kafka-cluster", lit, op.IDEMPOTENT_WRITE),
    ]
    return {mqtt_account("ingest"): ingest, mqtt_account("alerts"): flow}


def bindings(prefix: str) -> list[AclBinding]:
    return [
        AclBinding(kind, name, pattern, f"User:{user}", "*", operation, AclPermissionType.ALLOW)
        for user, rules in stage_rules(prefix).items()
        for kind, name, pattern, operation in rules
    ]


def _admin(kafka: KafkaSettings) -> AdminClient:
    return AdminClient(kafka.client_config())


def upsert_accounts(kafka: KafkaSettings, credentials: LocalCredentials) -> None:
    """Every project account's SCRAM password but the admin's (``kafka`` logs in as it)."""
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
    upserts = [
        UserScramCredentialUpsertion(mqtt_account(role), info, credentials.kafka[role].encode())
        for role in ROLES
        if role != "admin"  # made with the storage; the broker logs in with it
    ]
    admin = _admin(kafka)  # held until the futures finish: its handle runs them
    _wait(admin.alter_user_scram_credentials(upserts).values(), "SCRAM accounts")


def grant_stages(kafka: KafkaSettings, prefix: str) -> None:
    """The stages' ACLs for the topics under ``prefix`` (idempotent)."""
    admin = _admin(kafka)
    _wait(admin.create_acls(bindings(prefix)).values(), f"ACLs for prefix {prefix!r}")


def _wait(futures: Iterable[Future[None]], what: str) -> None:
    try:
        for future in futures:
            future.result(timeout=30)
    except KafkaException as exc:
        raise ConnectorError(f"Kafka {what}: {exc}") from exc
