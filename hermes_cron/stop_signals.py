"""SIGTERM and SIGINT ask a running command (``daemon``, ``serve``) to stop.

A Python signal handler runs on the main thread, between two of its bytecodes: never
while that thread is inside a C call that does not return, and always on top of
whatever the thread was doing, locks held. A handler that logs or sets an Event can
then wait for a lock the interrupted code holds (a ``threading.Event``'s own lock is
not reentrant), or stay unrun while the thread waits in C. Here the handler's only
job is counting: the interpreter's C handler writes the signal's number to a wakeup
pipe at once, from whichever thread the kernel chose, and a thread of our own reads
it, says so in the log and sets the stop event.

A stop that takes longer than it should (running jobs get at most 30 s) is reported
with every thread's stack, before a supervisor's kill (``TimeoutStopSec=60`` in
the units of docs/operations.md) leaves nothing to look at.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any, Dict, Optional, Tuple

log = logging.getLogger("hermes_cron")

_STOPPING = (signal.SIGTERM, signal.SIGINT)
#: Written by ``uninstall`` to end the reading thread (no signal has number 0).
_QUIT = b"\x00"
#: Seconds after a stop signal when a stop still under way is reported, with stacks.
REPORT_AFTER = 45.0


class StopSignals:
    """While installed, SIGTERM and SIGINT set ``stop``; a SIGINT after a stop signal
    raises KeyboardInterrupt on the main thread (a second Ctrl-C interrupts for real).

    Installs nothing off the main thread (Python takes signals there only): a command
    run in a thread of its own is stopped by its caller.
    """

    def __init__(self, stop: threading.Event, report_after: float = REPORT_AFTER) -> None:
        self.stop = stop
        self.report_after = report_after
        self._done = threading.Event()  # uninstalled: the command has stopped
        self._previous: Dict[int, Any] = {}
        self._previous_fd: Optional[int] = None
        self._pipe: Optional[Tuple[int, int]] = None
        self._reader: Optional[threading.Thread] = None
        self._seen = 0  # stop signals the main thread's handler has counted

    def install(self) -> StopSignals:
        """Take SIGTERM and SIGINT (on the main thread; else nothing); returns self."""
        if threading.current_thread() is not threading.main_thread():
            return self
        read_fd, write_fd = os.pipe()
        # set_wakeup_fd's requirement: a full pipe must never block the C handler.
        os.set_blocking(write_fd, False)
        self._pipe = (read_fd, write_fd)
        self._reader = threading.Thread(
            target=self._read, args=(read_fd,), name="hermes-cron-signals", daemon=True
        )
        self._reader.start()
        self._previous_fd = signal.set_wakeup_fd(write_fd)
        for sig in _STOPPING:
            self._previous[sig] = signal.signal(sig, self._count)
        return self

    def uninstall(self) -> None:
        """Give the signals back to the handlers and wakeup fd found at ``install``;
        a second call does nothing."""
        if self._pipe is None:
            return
        self._done.set()
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        signal.set_wakeup_fd(-1 if self._previous_fd is None else self._previous_fd)
        read_fd, write_fd = self._pipe
        self._pipe = None
        try:
            os.write(write_fd, _QUIT)
        except BlockingIOError:  # pragma: no cover - a pipe full of signal numbers
            pass
        if self._reader is not None:
            self._reader.join(5)
            if self._reader.is_alive():  # pragma: no cover - still writing its report
                return  # its pipe stays open: a closed fd's number may be reused
        os.close(write_fd)
        os.close(read_fd)

    def requested(self) -> bool:
        """Whether a stop signal came: set at once on the main thread, where ``stop``
        may still wait a moment for the reading thread."""
        return self._seen > 0 or self.stop.is_set()

    def _count(self, signum: int, frame: Any) -> None:
        # On the main thread; the reading thread does the stopping.
        self._seen += 1
        if signum == signal.SIGINT and self._seen > 1:
            raise KeyboardInterrupt

    def _read(self, read_fd: int) -> None:
        stopping = False
        while True:
            try:
                data = os.read(read_fd, 64)
            except OSError:  # pragma: no cover - closed under us
                return
            if not data:  # pragma: no cover - the write end closed without _QUIT
                return
            for signum in data:
                if signum == 0:
                    return
                if signum in _STOPPING:
                    name = signal.Signals(signum).name
                    log.info("%s received: stopping", name)
                    self.stop.set()
                    if not stopping:
                        stopping = True
                        if not self._done.wait(self.report_after):
                            self._report(name)

    def _report(self, name: str) -> None:
        import faulthandler
        import sys

        log.warning(
            "still stopping %.0f s after %s; where each thread is:", self.report_after, name
        )
        try:
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        except (AttributeError, OSError, ValueError):  # pragma: no cover - no stderr
            pass

    def __enter__(self) -> StopSignals:
        return self.install()

    def __exit__(self, *exc: Any) -> None:
        self.uninstall()


__all__ = ["StopSignals"]
