"""The ACLs a SASL_SSL Kafka of the stack gets (pure; the broker test is
tests/integration/test_kafka_security.py)."""

from __future__ import annotations

from confluent_kafka.admin import AclOperation, ResourcePatternType, ResourceType

from iotpipe.connectors.kafka_acl import bindings


def writers_of(topic: str, prefix: str = "") -> set[str]:
    """Accounts allowed to write ``topic``, by literal or prefixed match."""
    out = set()
    for b in bindings(prefix):
        if b.restype != ResourceType.TOPIC or b.operation != AclOperation.WRITE:
            continue
        literal = b.resource_pattern_type == ResourcePatternType.LITERAL
        if (literal and b.name == topic) or (not literal and topic.startswith(b.name)):
            out.add(b.principal)
    return out


def test_only_the_ingester_writes_readings_and_only_the_flow_writes_alerts() -> None:
    assert writers_of("readings.temperature") == {"User:iotpipe-ingest"}
    assert writers_of("readings.new-type") == {"User:iotpipe-ingest"}
    assert writers_of("alerts") == {"User:iotpipe-alerts"}
    assert writers_of("dlq.ingest") == {"User:iotpipe-ingest"}
    assert writers_of("aggregates") == {"User:iotpipe-alerts"}


def test_rules_follow_the_topic_prefix() -> None:
    assert writers_of("site7.readings.gas", "site7.") == {"User:iotpipe-ingest"}
    assert writers_of("readings.gas", "site7.") == set()
    principals = {b.principal for b in bindings("")}
    assert principals == {"User:iotpipe-ingest", "User:iotpipe-alerts"}  # fleet: none
    assert all(b.host == "*" for b in bindings(""))
