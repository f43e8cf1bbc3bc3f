"""Ctrl-C and SIGTERM for the long-running loops: stop cleanly first, harder on a repeat.

Supervisors (systemd, Kubernetes, the demo) send SIGTERM and expect the same
clean stop as Ctrl-C: finish the current batch, wait for acknowledgements,
exit 0. The ingester, the simulator and the demo all share this one handler.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _abort() -> None:
    raise KeyboardInterrupt


@contextmanager
def stop_on_signals(
    stop: threading.Event,
    *,
    again: Callable[[], None] = _abort,
    note: Callable[[int], None] | None = None,
) -> Iterator[None]:
    """The first SIGINT/SIGTERM sets ``stop``; another calls ``again`` (default: abort).

    ``note`` sees each signal number (for a log line). Outside the main thread
    (embedded in tests or another program) nothing is installed; the previous
    handlers come back on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        if note is not None:
            note(signum)
        if stop.is_set():
            again()
        stop.set()

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
