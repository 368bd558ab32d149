"""Clocks. Everything that reads time takes a clock, so tests never depend on wall-clock luck."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from typing import Dict, List, Protocol, runtime_checkable

from .timeutil import UTC


@runtime_checkable
class Clock(Protocol):
    """What the scheduler needs from time."""

    def now(self) -> datetime:
        """The current wall time, timezone-aware (UTC)."""

    def wait(self, event: threading.Event, timeout: float) -> bool:
        """Block until ``event`` is set or ``timeout`` seconds of this clock pass.

        Returns True when the event was set.
        """


class SystemClock:
    """The real clock."""

    #: How long before its due time a run is handed to the thread that starts it, which
    #: then waits the rest of the way with ``wait_until``. A thread asleep on a timer
    #: wakes 0.1 ms late at best in a VM, and up to several ms late when the host is
    #: busy; a thread already awake at the due time starts the run within microseconds.
    handoff_lead = 0.0015
    #: The last stretch of ``wait_until`` is a busy wait: a sleep this short or shorter
    #: overshoots by more than it is long.
    SPIN = 0.0003
    #: The sleeps before it: short enough to land in the spin, long enough to leave
    #: the GIL to other threads (a tight loop would hold it off them for up to 5 ms).
    NAP = 0.00005

    def now(self) -> datetime:
        return datetime.now(UTC)

    def wait(self, event: threading.Event, timeout: float) -> bool:
        return event.wait(max(0.0, timeout))

    def wait_until(self, when: datetime) -> None:
        """Return at ``when`` (wall time), as close to it as the machine allows.

        Meant for the last ``handoff_lead`` before a due time: it naps, then spins.
        Time is read with ``now()`` (so a subclass's own ``now`` holds here too), and
        the wait is bounded in monotonic time, so a wall-clock step back meanwhile
        cannot prolong it.
        """
        left = (when - self.now()).total_seconds()
        if left <= 0:
            return
        if left > self.handoff_lead:
            time.sleep(left - self.handoff_lead)
            left = (when - self.now()).total_seconds()
        end = time.monotonic() + max(0.0, left)
        while True:
            left = min((when - self.now()).total_seconds(), end - time.monotonic())
            if left <= 0:
                return
            if left > self.SPIN:
                time.sleep(min(self.NAP, left - self.SPIN))


class FakeClock:
    """A clock tests move by hand. ``wait`` returns once the fake time passes its deadline."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        if self._now.tzinfo is None:
            raise ValueError("FakeClock needs an aware datetime")
        self._cond = threading.Condition()
        self._waiting = 0
        self._sleepers: Dict[int, str] = {}  # thread ident -> name, while in ``wait``

    @property
    def waiters(self) -> int:
        """How many threads are blocked in ``wait`` right now."""
        with self._cond:
            return self._waiting

    def wait_for_waiters(self, count: int = 1, timeout: float = 30.0) -> bool:
        """Block (in real time) until ``count`` threads are in ``wait``: a test advancing the
        clock before a thread has started waiting would move that thread's deadline too."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._waiting < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.01))
            return True

    def wait_for_sleepers(self, *names: str, timeout: float = 30.0) -> bool:
        """Block (in real time) until threads of each of these names are in ``wait``.

        Counting waiters (``wait_for_waiters``) cannot tell which thread sleeps: a thread
        that read the time and is about to sleep, when the clock moves, counts its sleep
        from after the move; wait for that very thread before moving the clock.
        """
        deadline = time.monotonic() + timeout
        wanted = set(names)
        with self._cond:
            while not wanted <= set(self._sleepers.values()):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.01))
            return True

    def sleepers(self) -> List[str]:
        """Names of the threads in ``wait`` right now."""
        with self._cond:
            return sorted(self._sleepers.values())

    def now(self) -> datetime:
        with self._cond:
            return self._now

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (forward or backward) and wake every waiter."""
        with self._cond:
            self._now = when
            self._cond.notify_all()

    def advance(self, seconds: float) -> datetime:
        """Move forward by ``seconds`` and wake every waiter; returns the new time."""
        with self._cond:
            self._now = self._now + timedelta(seconds=seconds)
            self._cond.notify_all()
            return self._now

    def wait(self, event: threading.Event, timeout: float) -> bool:
        with self._cond:
            deadline = self._now + timedelta(seconds=max(0.0, timeout))
            self._waiting += 1
            me = threading.current_thread()
            self._sleepers[me.ident or 0] = me.name
            try:
                while not event.is_set() and self._now < deadline:
                    # Poll the real event too: it is set from other threads without our condition.
                    self._cond.wait(0.01)
            finally:
                self._waiting -= 1
                self._sleepers.pop(me.ident or 0, None)
            return event.is_set()


def handoff_lead(clock: Clock) -> float:
    """How early ``clock`` lets a run be handed to its thread (0 for a clock without
    ``wait_until``, such as ``FakeClock``: its runs are handed over at their due time)."""
    lead = getattr(clock, "handoff_lead", 0.0)
    return float(lead) if callable(getattr(clock, "wait_until", None)) else 0.0


def monotonic() -> float:
    """Monotonic seconds, for measuring durations (never for due times)."""
    return time.monotonic()
