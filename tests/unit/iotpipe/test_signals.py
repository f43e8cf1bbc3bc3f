"""The shared stop handler: first signal stops cleanly, a repeat escalates, handlers come back."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from iotpipe.signals import stop_on_signals


def _raise(sig: signal.Signals) -> None:
    os.kill(os.getpid(), sig)  # delivered to the main thread before os.kill returns


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_first_signal_sets_stop_and_a_repeat_aborts(sig: signal.Signals) -> None:
    stop, seen = threading.Event(), []
    before = signal.getsignal(sig)
    with pytest.raises(KeyboardInterrupt), stop_on_signals(stop, note=seen.append):
        _raise(sig)
        assert stop.is_set()
        _raise(sig)
    assert seen == [sig, sig]
    assert signal.getsignal(sig) is before


def test_a_repeat_can_hurry_instead() -> None:
    stop, hurry = threading.Event(), threading.Event()
    with stop_on_signals(stop, again=hurry.set):
        _raise(signal.SIGTERM)
        assert stop.is_set() and not hurry.is_set()
        _raise(signal.SIGINT)
        assert hurry.is_set()


def test_outside_the_main_thread_nothing_is_installed() -> None:
    before, out = signal.getsignal(signal.SIGTERM), []

    def run() -> None:
        with stop_on_signals(threading.Event()):
            out.append(signal.getsignal(signal.SIGTERM))

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert out == [before]
