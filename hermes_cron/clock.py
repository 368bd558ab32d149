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

    def now(self) -> datetime:
        return datetime.now(UTC)

    def wait(self, event: threading.Event, timeout: float) -> bool:
        return event.wait(max(0.0, timeout))


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


def monotonic() -> float:
    """Monotonic seconds, for measuring durations (never for due times)."""
    return time.monotonic()
