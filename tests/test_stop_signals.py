"""SIGTERM/SIGINT stop ``daemon`` and ``serve`` (``hermes_cron.stop_signals``), sent to
this very process: pytest runs tests on the main thread, where Python takes signals."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from hermes_cron.stop_signals import StopSignals

pytestmark = pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(),
    reason="signals are taken on the main thread",
)


def test_sigterm_sets_the_stop_event_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    stop = threading.Event()
    with caplog.at_level(logging.INFO, logger="hermes_cron"), StopSignals(stop):
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(30)
    assert "SIGTERM received: stopping" in caplog.text


def test_a_signal_is_requested_on_the_main_thread_at_once() -> None:
    # The event is set by another thread, a moment later: a check right after the
    # signal (``daemon`` told to stop while its plugins load) asks ``requested()``.
    stop = threading.Event()
    with StopSignals(stop) as signals:
        assert not signals.requested()
        os.kill(os.getpid(), signal.SIGTERM)
        assert signals.requested()  # the handler ran before this line
        assert stop.wait(30)


def test_a_signal_taken_by_another_thread_stops_a_waiting_main_thread() -> None:
    # The kernel may hand a process's signal to any of its threads. Python then runs
    # its handler only once the main thread is back in Python: a main thread waiting
    # in C (here on the stop event itself, with a long timeout) would not hear it.
    stop = threading.Event()
    parked = threading.Event()
    bystander = threading.Thread(target=parked.wait, args=(60,), daemon=True)
    bystander.start()
    try:
        with StopSignals(stop):
            assert bystander.ident is not None
            signal.pthread_kill(bystander.ident, signal.SIGTERM)
            assert stop.wait(30)
    finally:
        parked.set()
        bystander.join(10)


HOLDING_THE_LOCK = """
import os, signal, threading
from hermes_cron.stop_signals import StopSignals
stop = threading.Event()
with StopSignals(stop):
    with stop._cond:  # what Event.wait takes first, for a moment, before it sleeps
        os.kill(os.getpid(), signal.SIGTERM)
        held = stop.is_set()
    print("set while held:", held, "then:", stop.wait(30))
"""


def test_the_stop_comes_while_the_main_thread_holds_the_events_lock() -> None:
    # A handler that set the event itself would wait, on the main thread, for a lock
    # that very thread holds: a deadlock (in a process of its own, so it cannot hang
    # the suite).
    done = subprocess.run(
        [sys.executable, "-c", HOLDING_THE_LOCK],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["set", "while", "held:", "False", "then:", "True"]


@pytest.mark.parametrize("first", [signal.SIGINT, signal.SIGTERM])
def test_a_sigint_after_a_stop_signal_interrupts_for_real(first: signal.Signals) -> None:
    stop = threading.Event()
    with StopSignals(stop):
        os.kill(os.getpid(), first)
        assert stop.wait(30)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            threading.Event().wait(30)  # the handler raises here, at once


def test_uninstall_restores_the_handlers_and_the_wakeup_fd() -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    outer = signal.set_wakeup_fd(write_fd)
    try:
        signals = StopSignals(threading.Event()).install()
        assert signal.getsignal(signal.SIGTERM) not in (before[signal.SIGTERM], None)
        signals.uninstall()
        assert signal.set_wakeup_fd(write_fd) == write_fd
        assert {sig: signal.getsignal(sig) for sig in before} == before
        signals.uninstall()  # twice is harmless
        threads = [t.name for t in threading.enumerate()]
        assert "hermes-cron-signals" not in threads
    finally:
        signal.set_wakeup_fd(outer)
        os.close(read_fd)
        os.close(write_fd)


def test_off_the_main_thread_nothing_is_installed() -> None:
    before = signal.getsignal(signal.SIGTERM)
    made = []
    worker = threading.Thread(target=lambda: made.append(StopSignals(threading.Event()).install()))
    worker.start()
    worker.join(10)
    assert made and signal.getsignal(signal.SIGTERM) is before
    made[0].uninstall()  # harmless


def test_a_stop_that_takes_too_long_is_reported_with_the_stacks(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    stop = threading.Event()
    with caplog.at_level(logging.INFO, logger="hermes_cron"):
        with StopSignals(stop, report_after=0.1):
            os.kill(os.getpid(), signal.SIGTERM)
            assert stop.wait(30)
            deadline = time.monotonic() + 30
            while "still stopping" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.01)
    assert "still stopping 0 s after SIGTERM; where each thread is:" in caplog.text
    # Every thread's stack, this test's frame among them.
    assert "test_a_stop_that_takes_too_long_is_reported_with_the_stacks" in capfd.readouterr().err


def test_a_stop_in_time_is_not_reported(caplog: pytest.LogCaptureFixture) -> None:
    stop = threading.Event()
    with caplog.at_level(logging.INFO, logger="hermes_cron"):
        with StopSignals(stop, report_after=30):
            os.kill(os.getpid(), signal.SIGTERM)
            assert stop.wait(30)
    # Leaving the block joined the reading thread: no report can come any more.
    assert "SIGTERM received" in caplog.text and "still stopping" not in caplog.text
