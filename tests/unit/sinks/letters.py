"""A dead-letter sink that keeps what it is sent, for the sinks' unit tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sinks.dead_letter import SinkDeadLetter


@dataclass
class Letters:
    topic: str = "dlq.sink"
    sent: list[SinkDeadLetter] = field(default_factory=list)

    def send(self, letters: Sequence[SinkDeadLetter]) -> None:
        self.sent.extend(letters)
