"""Where the time goes: py-spy samples of a benchmark child, summarised to top functions.

py-spy samples every thread from outside the process (cProfile would see only
the main thread, and the ingester's work happens in paho's and librdkafka's
threads), so the summary covers the whole process.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PY_SPY = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))


def py_spy_wrap(out: Path, rate: int = 97) -> list[str] | None:
    """The command prefix that records raw (collapsed) stacks into ``out``; None without py-spy."""
    if not Path(PY_SPY).exists():
        return None
    return [PY_SPY, "record", "-r", str(rate), "-f", "raw", "-o", str(out), "--threads", "--"]


@contextmanager
def attached(out: Path, rate: int = 97, pid: int | None = None) -> Iterator[None]:
    """py-spy attached to a process (default: this one) for the ``with`` body only.

    Non-blocking sampling: the target is never paused, so it runs at its own speed.
    """
    if not Path(PY_SPY).exists():
        yield
        return
    cmd = [PY_SPY, "record", "--pid", str(pid or os.getpid()), "-r", str(rate), "-f", "raw"]
    cmd += ["-o", str(out), "--threads", "--nonblocking"]
    spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # let it attach
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(20)
        except subprocess.TimeoutExpired:
            spy.kill()


def _frame_name(frame: str) -> str:
    """``func (path/to/file.py:12)`` -> ``func (file.py)``: stable across lines."""
    name, _, where = frame.partition(" (")
    file = where.split(":")[0].rsplit("/", 1)[-1] if where else ""
    return f"{name} ({file})" if file else name


def summarise(collapsed: str, top: int = 12) -> dict[str, Any]:
    """Self and inclusive shares of samples per function, from py-spy's raw output."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = imports = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_frame_name(f) for f in stack.split(";") if f and not f.startswith("thread ")]
        frames = [f for f in frames if not f.startswith("process ")]
        if not frames:
            continue
        if any("importlib" in f for f in frames):
            imports += n  # start-up: module imports, reported apart
            continue
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            inclusive[f] += n
    if not total:
        return {"samples": 0, "import_samples": imports, "self": [], "inclusive": []}
    return {
        "samples": total,
        "import_samples": imports,
        "self": [(f, round(100 * n / total, 1)) for f, n in own.most_common(top)],
        # Frames under every sample (entry points, thread bootstraps) say nothing: left out.
        "inclusive": [
            (f, round(100 * n / total, 1))
            for f, n in inclusive.most_common(top + 20)
            if n < 0.97 * total
        ][:top],
    }
