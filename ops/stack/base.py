"""What every service of the local stack offers, and the shared up/down logic.

A service installs itself (apt, Maven, Go build) into the state directory,
starts as a detached process, and reports health through a real client
request, not just an open port.
"""

from __future__ import annotations

import socket
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from iotpipe.errors import StackError
from ops.stack.process import ManagedProcess

State = Literal["up", "down", "external", "unhealthy"]


@dataclass(frozen=True)
class Status:
    """One service's state as ``stack status`` shows it."""

    name: str
    state: State
    address: str
    detail: str = ""
    pid: int | None = None


class Service(ABC):
    """A server the pipeline needs, run natively from the state directory."""

    name: str
    start_timeout_s: float = 60.0

    def __init__(self, state_dir: Path, host: str, port: int) -> None:
        self.state_dir = state_dir
        self.home = state_dir / self.name
        self.host = host
        self.port = port
        self.process = ManagedProcess(self.name, state_dir / "run", marker=str(self.home))

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def is_local(self) -> bool:
        return self.host in {"127.0.0.1", "localhost", "::1"}

    @abstractmethod
    def install(self) -> None:
        """Make the binaries and config available; idempotent and cached."""

    @abstractmethod
    def command(self) -> list[str]:
        """The argv that runs the server in the foreground."""

    @abstractmethod
    def probe(self) -> str:
        """Talk to the server with a real client; raise on failure, return detail."""

    def prepare(self) -> None:
        """First-start work before the process runs (formatting storage, etc.)."""
        return None

    def after_start(self) -> None:
        """First-start work once the server is healthy (users, buckets, etc.)."""
        return None

    def environment(self) -> dict[str, str]:
        return {}

    def status(self) -> Status:
        pid = self.process.pid()
        try:
            detail = self.probe()
        except Exception as exc:
            state: State = "unhealthy" if pid else "down"
            return Status(self.name, state, self.address, _short(exc), pid)
        return Status(self.name, "up" if pid else "external", self.address, detail, pid)

    def up(self) -> Status:
        """Start unless already healthy (ours or someone else's); wait for health."""
        current = self.status()
        if current.state in {"up", "external"}:
            return current
        if current.state == "unhealthy":
            self.process.stop()
        if not self.is_local:
            raise StackError(f"{self.name}: {self.address} is not local and not reachable")
        if _port_busy(self.host, self.port):
            raise StackError(
                f"{self.name}: port {self.port} is taken by a process that is not a healthy "
                f"{self.name}; stop it or change the setting"
            )
        self.install()
        self.prepare()
        self.process.start(self.command(), env=self.environment(), cwd=self.home)
        self._wait_healthy()
        self.after_start()
        return self.status()

    def down(self) -> bool:
        """Stop the process if we started it; never touch an external server."""
        return self.process.stop()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.process.pid() is None:
                raise StackError(
                    f"{self.name} exited during start-up; last output:\n{self.process.tail(30)}"
                )
            try:
                self.probe()
                return
            except Exception as exc:
                last = _short(exc)
            time.sleep(0.3)
        raise StackError(
            f"{self.name} not healthy after {self.start_timeout_s:.0f}s ({last}); "
            f"see {self.process.log_file}"
        )


def _port_busy(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:200]
