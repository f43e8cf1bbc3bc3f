"""The redelivery log: only deaths inside the handler count towards poison."""

from __future__ import annotations

from pathlib import Path

from ingest.redelivery import RedeliveryLog, message_key


def test_deaths_count_and_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "r.log"
    key = message_key(b"sensors/s/t/d", b"{}")
    log = RedeliveryLog(path, limit=2)
    log.attempt(key)  # ... and the process dies here
    log.close()
    log = RedeliveryLog(path, limit=2)
    assert log.deaths(key) == 1
    log.attempt(key)
    log.survived(key)  # this try returned: no death
    log.close()
    log = RedeliveryLog(path, limit=2)
    assert log.deaths(key) == 1
    log.done(key)
    log.close()
    assert RedeliveryLog(path, limit=2).deaths(key) == 0


def test_keys_tell_messages_apart_by_topic_and_payload() -> None:
    assert message_key(b"a", b"bc") != message_key(b"ab", b"c")
    assert message_key(b"a", b"b") == message_key(b"a", b"b")
