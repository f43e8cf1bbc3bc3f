"""Remember, across restarts, how often each redelivered MQTT message was tried.

Catching every exception keeps one message from stopping the loop, but not
from killing the process (a crash in compiled code, the OOM killer, a hang
that a supervisor ends). With QoS 1 the broker then redelivers that message
to the next ingester, which dies the same way: a crash loop that only
deleting the persistent session (and everything queued in it) would end.

So every redelivered message (MQTT DUP flag) is noted in a small append-only
file before it is handled (``+``), again once handling returned (``~``) and
when it is acknowledged (``-``). A ``+`` without its ``~`` is a process that
died handling that message. One that has killed ``limit`` processes is
dead-lettered as ``poison`` instead of tried again. A message merely waiting
for Kafka (an outage, reconnects, restarts meanwhile) never counts: it did not
kill anything. First deliveries cost nothing here: only redeliveries touch
the file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import Counter
from pathlib import Path

log = logging.getLogger(__name__)


def message_key(topic: bytes, payload: bytes) -> str:
    """Identifies a message by content (packet ids are reused, so they cannot)."""
    digest = hashlib.blake2b(topic, digest_size=16)
    digest.update(b"\0")
    digest.update(payload)
    return digest.hexdigest()


class RedeliveryLog:
    """Attempt counts of redelivered, not yet acknowledged messages, kept in ``path``."""

    def __init__(self, path: Path, limit: int) -> None:
        self.path = path
        self.limit = limit
        self._lock = threading.Lock()
        self._tries: Counter[str] = Counter()
        self._load()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._compact()
        self._file = path.open("a", encoding="ascii")

    def _load(self) -> None:
        try:
            lines = self.path.read_text(encoding="ascii", errors="replace").splitlines()
        except FileNotFoundError:
            return
        for line in lines:
            sign, key = line[:1], line[1:]
            if sign == "+":
                self._tries[key] += 1
            elif sign == "~":
                self._tries[key] -= 1
                if self._tries[key] <= 0:
                    del self._tries[key]
            elif sign == "-":
                self._tries.pop(key, None)

    def _compact(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(f"+{k}\n" * n for k, n in self._tries.items()), encoding="ascii")
        os.replace(tmp, self.path)

    def deaths(self, key: str) -> int:
        """How many processes died handling this message."""
        with self._lock:
            return self._tries.get(key, 0)

    def attempt(self, key: str) -> None:
        """About to handle a redelivered message: if we die now, it counts."""
        with self._lock:
            self._file.write(f"+{key}\n")
            self._file.flush()  # in the OS's hands: survives the process dying

    def survived(self, key: str) -> None:
        """Handling returned (whatever Kafka does next, this try killed nothing)."""
        with self._lock:
            self._file.write(f"~{key}\n")
            self._file.flush()

    def done(self, key: str) -> None:
        """The message was acknowledged (forwarded or dead-lettered)."""
        with self._lock:
            if self._tries.pop(key, None) is not None:
                self._file.write(f"-{key}\n")
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()
