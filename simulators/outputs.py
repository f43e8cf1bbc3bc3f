"""Where readings go: the output interface, plus the file/stdout and null outputs.

MQTT and Kafka have their own modules (one external system per module).
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from iotpipe.errors import ConfigError
from simulators.names import Naming
from simulators.outgoing import Outgoing, gateway_batches


@dataclass
class OutputStats:
    """Counts every output keeps; ``sent`` and ``failed`` are readings."""

    sent: int = 0
    failed: int = 0
    messages: int = 0
    bytes: int = 0


class Output(Protocol):
    """Lifecycle of an output: open, send batches, close (flush and disconnect)."""

    name: str
    stats: OutputStats

    def open(self) -> None: ...

    def send(self, out: Outgoing) -> None: ...

    def close(self, timeout: float = 30.0) -> None: ...


class NullOutput:
    """Counts and drops: measures generation speed without any I/O."""

    name = "null"

    def __init__(self) -> None:
        self.stats = OutputStats()

    def open(self) -> None:
        pass

    def send(self, out: Outgoing) -> None:
        self.stats.sent += len(out)
        self.stats.messages += len(out)
        self.stats.bytes += sum(map(len, out.records))

    def close(self, timeout: float = 30.0) -> None:
        pass


class JsonLinesOutput:
    """One payload per line (a JSON object, or an array with gateway batches)."""

    def __init__(self, path: Path | None, naming: Naming, *, batch_size: int = 1,
                 by_type: bool = False) -> None:  # fmt: skip
        self.name = "stdout" if path is None else "file"
        self.path = path
        self.naming = naming
        self.batch_size = batch_size
        self.by_type = by_type
        self.stats = OutputStats()
        self._fh: BinaryIO | None = None

    def open(self) -> None:
        if self.path is None:
            self._fh = sys.stdout.buffer
            return
        try:
            self._fh = self.path.open("wb")
        except OSError as exc:
            raise ConfigError(f"output file {self.path}: {exc.strerror or exc}") from exc

    def send(self, out: Outgoing) -> None:
        assert self._fh is not None, "open() first"
        if not len(out):
            return
        if self.batch_size <= 1:
            data = b"\n".join(out.records) + b"\n"
            self.stats.messages += len(out)
        else:
            parts = [m.payload for m in gateway_batches(out, self.batch_size, by_type=self.by_type)]
            data = b"\n".join(parts) + b"\n"
            self.stats.messages += len(parts)
        try:
            self._fh.write(data)
        except BrokenPipeError:  # `iotpipe simulate --output stdout | head`
            self.stats.failed += len(out)
            raise
        self.stats.sent += len(out)
        self.stats.bytes += len(data)

    def close(self, timeout: float = 30.0) -> None:
        if self._fh is None:
            return
        with contextlib.suppress(BrokenPipeError):
            self._fh.flush()
        if self.path is not None:
            self._fh.close()
        self._fh = None
