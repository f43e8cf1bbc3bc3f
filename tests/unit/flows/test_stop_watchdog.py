"""A flow asked to stop ends: cleanly if it can, else after the grace with its stacks."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

SCRIPT = """
import sys, time
from flows.runner import _stop_on_signals
with _stop_on_signals(float(sys.argv[1])):
    try:  # "ready" inside the try: a signal right after it must not escape the block
        print("ready", flush=True)
        time.sleep(30)
    except KeyboardInterrupt:
        if sys.argv[2] == "stuck":
            time.sleep(30)  # a step that will not return
print("stopped", flush=True)
"""


def _run(grace: float, mode: str, sig: signal.Signals) -> tuple[int, str, str, float]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(grace), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    sent = time.monotonic()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=20)
    return proc.returncode, out, err, time.monotonic() - sent


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_flow_that_can_stop_stops_cleanly(sig: signal.Signals) -> None:
    code, out, _err, _took = _run(5.0, "clean", sig)
    assert code == 0 and "stopped" in out


def test_a_stuck_flow_is_ended_after_the_grace_with_every_threads_stack() -> None:
    code, out, err, took = _run(1.0, "stuck", signal.SIGTERM)
    assert code == 1 and "stopped" not in out
    assert "still running 1 s after SIGTERM" in err
    assert "most recent call first" in err and "time.sleep(30)" not in out
    assert 0.9 <= took < 10
