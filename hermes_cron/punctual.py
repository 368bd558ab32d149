"""Giving the GIL to a run that is about to start.

A thread that wakes to start a run needs the GIL. While another thread runs Python
without a pause (a claim batch, a ``jobs.json`` write, recording finished runs), the
waker does not get it at the switch interval: measured on a 2-core VM, a thread that
runs Python in 3 ms bursts delays a 0.5 ms sleeper past 1 ms a quarter of the time,
with ``sys.setswitchinterval(0.0005)`` as with the default 5 ms. Only a voluntary
pause lets it in (p99 0.16 ms when the burst pauses every 30 µs).

So long Python work on background threads calls a ``Pacer`` between small steps:
while a scheduler in this process says a run is imminent (``register``), the pacer
sleeps until it is not, within a budget per piece of work, so the work is delayed,
never starved. With nothing registered (a CLI command) a step costs a clock read.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, List, Optional

#: How often a pacing thread looks again whether a run is still imminent, in seconds.
POLL = 0.0005
#: A step does not ask whether a run is imminent more often than this (the question
#: takes a lock and reads the clock; a store loop steps once per record).
CHECK_EVERY = 0.00005

_checks: List[Callable[[], bool]] = []
_guard = threading.Lock()


def register(check: Callable[[], bool]) -> None:
    """Pace background work while ``check()`` is true (a run is about to start)."""
    with _guard:
        _checks.append(check)


def unregister(check: Callable[[], bool]) -> None:
    """Stop asking ``check``; unknown checks are ignored."""
    with _guard:
        if check in _checks:
            _checks.remove(check)


def imminent() -> bool:
    """Whether any registered scheduler has a run about to start."""
    return any(check() for check in list(_checks))


_registered = imminent


class Pacer:
    """Call it between the steps of one piece of background work.

    :param budget: the most it pauses in all, in seconds.
    :param imminent: what says a run is about to start (default: the registered
        schedulers, ``imminent()``).
    :param stop: when it returns true the pacer no longer pauses (a closing recorder).
    """

    __slots__ = ("_imminent", "_stop", "_left", "_next_check")

    def __init__(
        self,
        budget: float,
        *,
        imminent: Optional[Callable[[], bool]] = None,
        stop: Optional[Callable[[], bool]] = None,
    ) -> None:
        self._imminent = imminent if imminent is not None else _registered
        self._stop = stop
        self._left = float(budget)
        self._next_check = 0.0

    def __call__(self) -> None:
        if self._left <= 0 or (self._imminent is _registered and not _checks):
            return
        now = time.perf_counter()
        if now < self._next_check:
            return
        began = now
        while self._imminent() and not (self._stop is not None and self._stop()):
            left = self._left - (time.perf_counter() - began)
            if left < POLL / 10:  # a remainder too short to sleep usefully
                break
            time.sleep(min(POLL, left))
        now = time.perf_counter()
        self._left -= now - began
        self._next_check = now + CHECK_EVERY


def pacer(budget: float = 0.05) -> Pacer:
    """A pacer for one piece of work that defers to the registered schedulers."""
    return Pacer(budget)


__all__ = ["CHECK_EVERY", "POLL", "Pacer", "imminent", "pacer", "register", "unregister"]
