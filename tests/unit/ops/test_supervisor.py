"""The demo's process supervisor, with real child processes (no servers)."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

from ops.demo.supervisor import ChildSpec, Event, Supervisor, describe_exit, tail_lines

PY = sys.executable


def _until(sup: Supervisor, done: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sup.poll()
        if callable(done) and done():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def _sleeper(name: str, **kw: object) -> ChildSpec:
    code = "import time\nprint('up', flush=True)\ntime.sleep(60)"
    return ChildSpec(name, (PY, "-c", code), **kw)  # type: ignore[arg-type]


def test_a_crashing_child_is_reported_with_its_log_and_restarted(tmp_path: Path) -> None:
    events: list[Event] = []
    sup = Supervisor(tmp_path / "logs", on_event=events.append, backoff_initial_s=0.1)
    code = "import sys\nprint('attempt {attempt} failing', flush=True)\nsys.exit(3)"
    sup.start([ChildSpec("crasher", (PY, "-c", code))])
    child = sup.children["crasher"]
    _until(sup, lambda: child.starts >= 3)
    sup.stop_all()
    crashes = [e for e in events if e.kind == "crashed"]
    assert len(crashes) >= 2
    assert crashes[0].returncode == 3
    assert "exit status 3" in crashes[0].message
    assert "attempt 1 failing" in crashes[0].message  # the last log lines come with it
    assert [e.kind for e in events if e.name == "crasher"][:3] == [
        "started",
        "crashed",
        "restarted",
    ]
    log = child.log_path.read_text()
    assert "attempt 1 failing" in log and "attempt 2 failing" in log
    assert sup.restarts()["crasher"] == child.starts - 1 >= 2


def test_backoff_doubles_between_restarts(tmp_path: Path) -> None:
    events: list[Event] = []
    sup = Supervisor(tmp_path, on_event=events.append, backoff_initial_s=0.2)
    sup.start([ChildSpec("c", (PY, "-c", "raise SystemExit(1)"))])
    _until(sup, lambda: sup.children["c"].starts >= 3)
    sup.stop_all()
    delays = [
        e.message.split("restarting in ")[1].split(" s")[0] for e in events if e.kind == "crashed"
    ]
    assert delays[:2] == ["0.2", "0.4"]
    assert sup.children["c"].backoff_s >= 0.8


def test_kill_9_is_noticed_and_the_child_comes_back_with_a_new_pid(tmp_path: Path) -> None:
    events: list[Event] = []
    pid_file = tmp_path / "pids.json"
    sup = Supervisor(tmp_path / "logs", on_event=events.append, pid_file=pid_file,
                     backoff_initial_s=0.1)  # fmt: skip
    sup.start([_sleeper("worker")])
    first = json.loads(pid_file.read_text())["worker"]
    os.kill(first, signal.SIGKILL)
    _until(sup, lambda: sup.children["worker"].starts == 2 and sup.children["worker"].running)
    second = json.loads(pid_file.read_text())["worker"]
    sup.stop_all()
    assert second != first
    crash = next(e for e in events if e.kind == "crashed")
    assert crash.returncode == -signal.SIGKILL
    assert "killed by SIGKILL" in crash.message
    assert json.loads(pid_file.read_text()) == {}


def test_a_child_that_finishes_with_status_0_is_not_restarted(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path, backoff_initial_s=0.1)
    sup.start([ChildSpec("sim", (PY, "-c", "print('done')"), finishes=True)])
    _until(sup, lambda: sup.children["sim"].finished)
    time.sleep(0.3)
    sup.poll()
    assert sup.children["sim"].starts == 1
    assert sup.children["sim"].returncode == 0


def test_a_finishing_child_that_fails_is_still_restarted(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path, backoff_initial_s=0.1)
    sup.start([ChildSpec("sim", (PY, "-c", "raise SystemExit(2)"), finishes=True)])
    _until(sup, lambda: sup.children["sim"].starts >= 2)
    sup.stop_all()
    assert not sup.children["sim"].finished


def test_stop_asks_with_sigint_first_and_stops_in_the_given_order(tmp_path: Path) -> None:
    order: list[str] = []
    code = (
        "import signal, sys, time\n"
        "def bye(*a):\n    print('clean stop', flush=True); sys.exit(0)\n"
        "signal.signal(signal.SIGINT, bye)\nprint('up', flush=True)\ntime.sleep(60)"
    )
    sup = Supervisor(
        tmp_path,
        on_event=lambda e: order.append(e.name) if e.kind == "stopped" else None,
    )
    sup.start([ChildSpec(n, (PY, "-c", code)) for n in ("a", "b", "c")])
    _until(sup, lambda: all("up" in tail_lines(c.log_path, 3)[-1] for c in sup.children.values()
                            if tail_lines(c.log_path, 3)))  # fmt: skip
    sup.stop_all(["b", "a"])
    assert order == ["b", "a", "c"]
    for child in sup.children.values():
        assert child.returncode == 0
        assert "clean stop" in child.log_path.read_text()
    sup.poll()  # stopped children are never restarted
    assert all(c.starts == 1 for c in sup.children.values())


def test_a_child_ignoring_sigint_is_terminated(tmp_path: Path) -> None:
    code = "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(60)"
    sup = Supervisor(tmp_path)
    sup.start([ChildSpec("stubborn", (PY, "-c", code), stop_timeout_s=0.5)])
    time.sleep(0.5)
    started = time.monotonic()
    assert sup.stop("stubborn") == -signal.SIGTERM
    assert time.monotonic() - started < 5


def test_attempt_placeholder_in_env(tmp_path: Path) -> None:
    code = "import os, sys\nprint('prefix', os.environ['PREFIX'], flush=True)\nsys.exit(1)"
    sup = Supervisor(tmp_path, env={"PATH": os.environ["PATH"]}, backoff_initial_s=0.1)
    sup.start([ChildSpec("e", (PY, "-c", code), env={"PREFIX": "dev-{attempt}"})])
    _until(sup, lambda: sup.children["e"].starts >= 2 and not sup.children["e"].running)
    sup.stop_all()
    log = sup.children["e"].log_path.read_text()
    assert "prefix dev-1" in log and "prefix dev-2" in log


def test_describe_exit() -> None:
    assert describe_exit(0) == "exit status 0"
    assert describe_exit(-9) == "killed by SIGKILL"


def test_tail_lines_reads_the_end_only(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_text("".join(f"line {i}\n" for i in range(10_000)))
    assert tail_lines(path, 2) == ["line 9998", "line 9999"]
    assert tail_lines(tmp_path / "missing.log") == []
