"""Schedules: parse the text a user gives, compute fire times. (STUB: interface only.)

Kinds:
* ``cron``: 5 fields or ``@hourly @daily @weekly @monthly @yearly``, evaluated with
  cronsim in the schedule's IANA zone (Debian cron DST behaviour, Vixie DOM/DOW rule).
* ``interval``: ``every 90s|30m|2h|1d``; fixed-rate, anchored: fire times are
  ``anchor + k * seconds`` for k >= 1, whatever the runs did.
* ``once``: ``+90s``, ``30m``, ``2h`` relative to now, or an ISO 8601 time
  (naive means the schedule's zone).

The record stored in a job's ``schedule`` field is ``Schedule.to_record()``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Dict, List, Optional

import attrs

from .errors import ScheduleError

KINDS = ("cron", "interval", "once")


@attrs.frozen
class Schedule:
    """A parsed schedule. Times are aware datetimes."""

    kind: str
    text: str  # exactly what the user gave
    tz: str  # IANA zone name, never a fixed offset
    expr: Optional[str] = None  # cron: the 5-field expression (aliases expanded)
    seconds: Optional[int] = None  # interval length
    anchor: Optional[datetime] = None  # interval: fire times are anchor + k*seconds, k >= 1
    at: Optional[datetime] = None  # once: the fire time

    @property
    def recurring(self) -> bool:
        return self.kind != "once"

    def next_after(self, after: datetime) -> Optional[datetime]:
        """The first fire time strictly after ``after``; None when there is none (a past one-shot)."""
        raise NotImplementedError

    def latest_at_or_before(self, when: datetime) -> Optional[datetime]:
        """The last fire time at or before ``when`` (O(1) for intervals; cronsim reverse for cron)."""
        raise NotImplementedError

    def to_record(self) -> Dict[str, Any]:
        """The JSON form stored in ``jobs.json``: ``{"kind", "text", "tz", ...kind fields}``."""
        raise NotImplementedError

    @classmethod
    def from_record(cls, record: Any) -> "Schedule":
        """Rebuild from ``to_record()`` output; ``ScheduleError`` if the record is invalid."""
        raise NotImplementedError


def parse_schedule(text: str, *, tz: Optional[str] = None, now: datetime) -> Schedule:
    """Parse ``text``; ``tz`` is the IANA zone (None: ``UTC``; the service passes
    ``cron.timezone`` or the system zone). ``now`` anchors relative one-shots and intervals.

    Raises ``ScheduleError`` with a message that says what is wrong, e.g.
    ``'61 * * * *': minute 61 is out of range 0-59``.
    """
    raise NotImplementedError


def preview(schedule: Schedule, *, after: datetime, count: int) -> List[datetime]:
    """The next ``count`` fire times strictly after ``after`` (fewer for a one-shot)."""
    raise NotImplementedError


__all__ = ["KINDS", "Schedule", "ScheduleError", "parse_schedule", "preview"]
