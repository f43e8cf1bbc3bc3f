"""A small process supervisor: one subprocess per component, restarted when it crashes.

Each child runs in its own process group (so a Ctrl-C in the terminal reaches
only the supervisor, which then stops the children in the order it chooses),
writes stdout and stderr to its own log file, and is restarted with
exponential backoff when it exits on its own. A child marked ``finishes`` (the
simulator with a duration) may end with status 0: that is completion, not a
crash. Nothing here knows about iotpipe; the demo feeds it argv lists.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

BACKOFF_INITIAL_S = 1.0
BACKOFF_MAX_S = 30.0
STABLE_AFTER_S = 60.0  # a child that ran this long starts its backoff afresh


@dataclass(frozen=True)
class ChildSpec:
    """What to run. ``{attempt}`` in argv or env values is replaced by the start count."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    finishes: bool = False  # exit status 0 means done, not crashed
    stop_timeout_s: float = 20.0  # after SIGINT, before SIGTERM then SIGKILL


@dataclass(frozen=True)
class Event:
    """Something the operator should hear about."""

    name: str
    kind: str  # started | crashed | restarted | finished | stopped
    message: str
    returncode: int | None = None


@dataclass
class Child:
    spec: ChildSpec
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    started_at: float = 0.0
    backoff_s: float = BACKOFF_INITIAL_S
    restart_at: float | None = None
    finished: bool = False
    stopped: bool = False
    returncode: int | None = None

    @property
    def restarts(self) -> int:
        return max(self.starts - 1, 0)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def tail_lines(path: Path, lines: int = 10, max_bytes: int = 16_384) -> list[str]:
    """The last lines of a log file (reads only its end)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except FileNotFoundError:
        return []
    text = data.decode("utf-8", errors="replace")
    return [ln for ln in text.splitlines() if ln.strip()][-lines:]


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


class Supervisor:
    """Starts children, notices exits, restarts crashed ones, stops them in order."""

    def __init__(
        self,
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        *,
        on_event: Callable[[Event], None] | None = None,
        pid_file: Path | None = None,
        backoff_initial_s: float = BACKOFF_INITIAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log_dir = log_dir
        self.env = dict(os.environ if env is None else env)
        self.on_event = on_event or (lambda _e: None)
        self.pid_file = pid_file
        self.backoff_initial_s = backoff_initial_s
        self.children: dict[str, Child] = {}
        self.events: deque[Event] = deque(maxlen=1000)
        self._clock = clock
        log_dir.mkdir(parents=True, exist_ok=True)

    def add(self, spec: ChildSpec) -> Child:
        if spec.name in self.children:
            raise ValueError(f"two children named {spec.name!r}")
        child = Child(spec, self.log_dir / f"{spec.name}.log", backoff_s=self.backoff_initial_s)
        self.children[spec.name] = child
        return child

    def start(self, specs: Sequence[ChildSpec]) -> None:
        for spec in specs:
            self._spawn(self.add(spec))

    def _spawn(self, child: Child) -> None:
        child.starts += 1
        attempt = str(child.starts)
        argv = [a.replace("{attempt}", attempt) for a in child.spec.argv]
        env = {
            **self.env,
            **{k: v.replace("{attempt}", attempt) for k, v in child.spec.env.items()},
        }
        with child.log_path.open("ab") as log:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"\n=== {stamp} start #{attempt}: {' '.join(argv)}\n".encode())
            log.flush()
            child.proc = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                process_group=0,
            )
        child.started_at = self._clock()
        child.restart_at = None
        child.returncode = None
        kind = "started" if child.starts == 1 else "restarted"
        self._emit(Event(child.spec.name, kind, f"pid {child.proc.pid}"))
        self._write_pids()

    def poll(self) -> list[Event]:
        """Notice exits and restart what is due; call this about once a second."""
        before = len(self.events)
        now = self._clock()
        for child in self.children.values():
            if child.stopped or child.finished:
                continue
            if child.proc is not None and child.restart_at is None:
                code = child.proc.poll()
                if code is None:
                    continue
                self._exited(child, code, now)
            if child.restart_at is not None and now >= child.restart_at:
                self._spawn(child)
        return list(self.events)[before:] if len(self.events) > before else []

    def _exited(self, child: Child, code: int, now: float) -> None:
        child.returncode = code
        if code == 0 and child.spec.finishes:
            child.finished = True
            self._emit(Event(child.spec.name, "finished", "completed", code))
            return
        ran = now - child.started_at
        if ran >= STABLE_AFTER_S:
            child.backoff_s = self.backoff_initial_s
        delay = child.backoff_s
        child.backoff_s = min(child.backoff_s * 2, BACKOFF_MAX_S)
        child.restart_at = now + delay
        last = [ln for ln in tail_lines(child.log_path, 8) if not ln.startswith("=== ")][-5:]
        message = f"{describe_exit(code)} after {ran:.1f} s; restarting in {delay:.1f} s" + (
            "; last log lines:\n  " + "\n  ".join(last) if last else ""
        )
        self._emit(Event(child.spec.name, "crashed", message, code))

    def stop(self, name: str, timeout_s: float | None = None) -> int | None:
        """SIGINT (a clean stop for our commands), then SIGTERM, then SIGKILL."""
        child = self.children[name]
        child.stopped = True
        child.restart_at = None
        proc = child.proc
        if proc is None or proc.poll() is not None:
            return None if proc is None else proc.returncode
        timeout = child.spec.stop_timeout_s if timeout_s is None else timeout_s
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        child.returncode = proc.poll()
        self._emit(Event(name, "stopped", describe_exit(child.returncode or 0), child.returncode))
        self._write_pids()
        return child.returncode

    def stop_all(self, order: Sequence[str] | None = None) -> None:
        """Stop children in ``order`` (default: reverse start order), then any left."""
        names = list(order or reversed(self.children))
        names += [n for n in reversed(self.children) if n not in names]
        for name in names:
            self.stop(name)

    def wait(self, name: str, timeout_s: float) -> int | None:
        """Wait for a child to exit by itself (e.g. a simulator with a duration)."""
        proc = self.children[name].proc
        if proc is None:
            return None
        try:
            return proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def restarts(self) -> dict[str, int]:
        return {name: c.restarts for name, c in self.children.items()}

    def pids(self) -> dict[str, int]:
        return {n: c.proc.pid for n, c in self.children.items() if c.running and c.proc}

    def _emit(self, event: Event) -> None:
        self.events.append(event)
        self.on_event(event)

    def _write_pids(self) -> None:
        """Which pid runs which component (for operators and the kill -9 test)."""
        if self.pid_file is None:
            return
        tmp = self.pid_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.pids()))
        tmp.replace(self.pid_file)
