"""Cron schedules across daylight-saving transitions (Debian cron behaviour).

Two kinds of checks: concrete UTC instants for the cases the spec names, and an
independent brute-force oracle (written here, not using cronsim) compared with
``next_after`` / ``latest_at_or_before`` from every minute around each transition.

Transitions used (2026):

* Europe/Berlin: spring 03-29 02:00 CET -> 03:00 CEST (01:00Z); autumn 10-25
  03:00 CEST -> 02:00 CET (01:00Z).
* America/New_York: spring 03-08 02:00 EST -> 03:00 EDT (07:00Z); autumn 11-01
  02:00 EDT -> 01:00 EST (06:00Z).
* Australia/Lord_Howe (30-minute shift): spring 10-04 02:00 +10:30 -> 02:30 +11
  (10-03 15:30Z); autumn 04-05 02:00 +11 -> 01:30 +10:30 (04-04 15:00Z).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import List, Optional, Set
from zoneinfo import ZoneInfo

import pytest

from hermes_cron.schedules import Schedule, parse_schedule, preview
from hermes_cron.timeutil import UTC

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def cron(expr: str, tz: str) -> Schedule:
    return parse_schedule(expr, tz=tz, now=NOW)


def fires(expr: str, tz: str, after: datetime, count: int) -> List[datetime]:
    return preview(cron(expr, tz), after=after, count=count)


# ------------------------------------------------------------------- concrete cases


class TestBerlin:
    TZ = "Europe/Berlin"

    def test_daily_in_spring_gap_fires_once_at_the_jump(self) -> None:
        assert fires("30 2 * * *", self.TZ, utc(2026, 3, 27, 12), 3) == [
            utc(2026, 3, 28, 1, 30),  # 02:30 CET
            utc(2026, 3, 29, 1, 0),  # 02:30 does not exist: 03:00 CEST, the jump
            utc(2026, 3, 30, 0, 30),  # 02:30 CEST
        ]

    def test_daily_in_repeated_autumn_hour_fires_once(self) -> None:
        assert fires("30 2 * * *", self.TZ, utc(2026, 10, 24, 12), 3) == [
            utc(2026, 10, 25, 0, 30),  # 02:30 CEST, the first pass; not again at 01:30Z
            utc(2026, 10, 26, 1, 30),  # 02:30 CET
            utc(2026, 10, 27, 1, 30),
        ]

    def test_weekly_on_the_transition_sundays(self) -> None:
        assert fires("30 2 * * 0", self.TZ, utc(2026, 3, 22, 12), 2) == [
            utc(2026, 3, 29, 1, 0),
            utc(2026, 4, 5, 0, 30),
        ]
        assert fires("30 2 * * 0", self.TZ, utc(2026, 10, 18, 12), 2) == [
            utc(2026, 10, 25, 0, 30),
            utc(2026, 11, 1, 1, 30),
        ]

    def test_every_15_minutes_follows_elapsed_time_in_spring(self) -> None:
        # From 00:00Z to 02:00Z is two real hours: 8 fires, 15 real minutes apart,
        # although the wall clock skips 02:00-03:00.
        times = fires("*/15 * * * *", self.TZ, utc(2026, 3, 29, 0, 0), 8)
        assert times == [utc(2026, 3, 29, 0, 15) + timedelta(minutes=15 * i) for i in range(8)]
        assert times[-1] == utc(2026, 3, 29, 2, 0)
        assert times[2].astimezone(ZoneInfo(self.TZ)).hour == 1  # 01:45 CET
        assert times[3].astimezone(ZoneInfo(self.TZ)).hour == 3  # then 03:00 CEST

    def test_every_15_minutes_follows_elapsed_time_in_autumn(self) -> None:
        # 00:00Z-02:00Z covers the wall hour 02:00-03:00 twice: all 8 quarters fire.
        times = fires("*/15 * * * *", self.TZ, utc(2026, 10, 25, 0, 0), 8)
        assert times == [utc(2026, 10, 25, 0, 15) + timedelta(minutes=15 * i) for i in range(8)]
        walls = [t.astimezone(ZoneInfo(self.TZ)).strftime("%H:%M") for t in times]
        assert walls == ["02:15", "02:30", "02:45", "02:00", "02:15", "02:30", "02:45", "03:00"]

    def test_hourly_fires_every_real_hour(self) -> None:
        assert fires("0 * * * *", self.TZ, utc(2026, 3, 28, 23, 30), 3) == [
            utc(2026, 3, 29, 0, 0),  # 01:00 CET
            utc(2026, 3, 29, 1, 0),  # 03:00 CEST (no 02:00 wall time)
            utc(2026, 3, 29, 2, 0),
        ]
        assert fires("@hourly", self.TZ, utc(2026, 10, 24, 23, 30), 3) == [
            utc(2026, 10, 25, 0, 0),  # 02:00 CEST
            utc(2026, 10, 25, 1, 0),  # 02:00 CET
            utc(2026, 10, 25, 2, 0),  # 03:00 CET
        ]

    def test_next_after_from_inside_the_repeated_hour(self) -> None:
        # 01:40Z is 02:40 CET, the second pass; 02:50 CEST (00:50Z) already fired.
        sched = cron("50 2 * * *", self.TZ)
        assert sched.next_after(utc(2026, 10, 25, 1, 40)) == utc(2026, 10, 26, 1, 50)
        assert sched.latest_at_or_before(utc(2026, 10, 25, 1, 40)) == utc(2026, 10, 25, 0, 50)
        assert sched.latest_at_or_before(utc(2026, 10, 25, 0, 49)) == utc(2026, 10, 24, 0, 50)

    def test_latest_at_or_before_at_the_jump(self) -> None:
        sched = cron("30 2 * * *", self.TZ)
        assert sched.latest_at_or_before(utc(2026, 3, 29, 1, 0)) == utc(2026, 3, 29, 1, 0)
        assert sched.latest_at_or_before(utc(2026, 3, 29, 0, 59, 59)) == utc(2026, 3, 28, 1, 30)


class TestNewYork:
    TZ = "America/New_York"

    def test_daily_spring_and_autumn(self) -> None:
        assert fires("30 2 * * *", self.TZ, utc(2026, 3, 7, 12), 3) == [
            utc(2026, 3, 8, 7, 0),  # 02:30 EST does not exist: 03:00 EDT
            utc(2026, 3, 9, 6, 30),
            utc(2026, 3, 10, 6, 30),
        ]
        assert fires("30 1 * * *", self.TZ, utc(2026, 10, 31, 12), 2) == [
            utc(2026, 11, 1, 5, 30),  # 01:30 EDT, not 01:30 EST (06:30Z)
            utc(2026, 11, 2, 6, 30),
        ]

    def test_weekly(self) -> None:
        assert fires("15 2 * * SUN", self.TZ, utc(2026, 3, 1, 12), 2) == [
            utc(2026, 3, 8, 7, 0),
            utc(2026, 3, 15, 6, 15),
        ]
        assert fires("15 1 * * SUN", self.TZ, utc(2026, 10, 26, 12), 2) == [
            utc(2026, 11, 1, 5, 15),
            utc(2026, 11, 8, 6, 15),
        ]

    def test_every_15_minutes_across_both_transitions(self) -> None:
        # Spring: 06:00Z-08:00Z is two real hours.
        spring = fires("*/15 * * * *", self.TZ, utc(2026, 3, 8, 6, 0), 8)
        assert spring == [utc(2026, 3, 8, 6, 15) + timedelta(minutes=15 * i) for i in range(8)]
        # Autumn: 05:00Z-07:00Z passes 01:00-02:00 twice.
        autumn = fires("*/15 * * * *", self.TZ, utc(2026, 11, 1, 5, 0), 8)
        assert autumn == [utc(2026, 11, 1, 5, 15) + timedelta(minutes=15 * i) for i in range(8)]
        zone = ZoneInfo(self.TZ)
        assert (
            sum(1 for t in autumn if t.astimezone(zone).hour == 1) == 7
        )  # 01:15..01:45 twice, 01:00


class TestLordHowe:
    TZ = "Australia/Lord_Howe"

    def test_daily_in_the_30_minute_spring_gap(self) -> None:
        assert fires("15 2 * * *", self.TZ, utc(2026, 10, 2, 0), 3) == [
            utc(2026, 10, 2, 15, 45),  # 02:15 +10:30
            utc(2026, 10, 3, 15, 30),  # 02:15 does not exist: the jump, 02:30 +11
            utc(2026, 10, 4, 15, 15),  # 02:15 +11
        ]

    def test_daily_in_the_repeated_half_hour(self) -> None:
        assert fires("45 1 * * *", self.TZ, utc(2026, 4, 3, 0), 3) == [
            utc(2026, 4, 3, 14, 45),  # 01:45 +11
            utc(2026, 4, 4, 14, 45),  # 01:45 +11, first pass; not 15:15Z as well
            utc(2026, 4, 5, 15, 15),  # 01:45 +10:30
        ]

    def test_weekly(self) -> None:
        # 2026-10-04 and 2026-04-05 are Sundays.
        assert fires("15 2 * * 0", self.TZ, utc(2026, 9, 28), 2) == [
            utc(2026, 10, 3, 15, 30),
            utc(2026, 10, 10, 15, 15),
        ]
        assert fires("45 1 * * 0", self.TZ, utc(2026, 3, 30), 2) == [
            utc(2026, 4, 4, 14, 45),
            utc(2026, 4, 11, 15, 15),
        ]

    def test_hourly_jobs_follow_the_wall_minute_after_a_half_hour_shift(self) -> None:
        # Right after the jump the wall clock reads 02:30: "30 * * * *" fires then, not
        # an hour later (cronsim alone steps 3600 s from 01:30 and lands on 03:30).
        assert fires("30 * * * *", self.TZ, utc(2026, 10, 3, 14, 0), 3) == [
            utc(2026, 10, 3, 15, 0),  # 01:30 +10:30
            utc(2026, 10, 3, 15, 30),  # 02:30 +11
            utc(2026, 10, 3, 16, 30),  # 03:30 +11
        ]
        # In autumn 01:30 comes twice in real time, and a wildcard job runs both times.
        assert fires("30 * * * *", self.TZ, utc(2026, 4, 4, 14, 0), 3) == [
            utc(2026, 4, 4, 14, 30),  # 01:30 +11
            utc(2026, 4, 4, 15, 0),  # 01:30 +10:30
            utc(2026, 4, 4, 16, 0),  # 02:30 +10:30
        ]
        assert fires("0 */2 * * *", self.TZ, utc(2026, 4, 4, 12, 30), 2) == [
            utc(2026, 4, 4, 13, 0),  # 00:00 +11
            utc(2026, 4, 4, 15, 30),  # 02:00 +10:30 (the 02:00 +11 instant shows 01:30)
        ]

    def test_every_15_minutes_follows_elapsed_time(self) -> None:
        spring = fires("*/15 * * * *", self.TZ, utc(2026, 10, 3, 15, 0), 4)
        assert spring == [utc(2026, 10, 3, 15, 15) + timedelta(minutes=15 * i) for i in range(4)]
        walls = [t.astimezone(ZoneInfo(self.TZ)).strftime("%H:%M") for t in spring]
        assert walls == ["01:45", "02:30", "02:45", "03:00"]  # 02:00-02:30 never exists
        autumn = fires("*/15 * * * *", self.TZ, utc(2026, 4, 4, 14, 30), 4)
        assert autumn == [utc(2026, 4, 4, 14, 45) + timedelta(minutes=15 * i) for i in range(4)]
        walls = [t.astimezone(ZoneInfo(self.TZ)).strftime("%H:%M") for t in autumn]
        assert walls == ["01:45", "01:30", "01:45", "02:00"]  # 01:30-02:00 twice


# ---------------------------------------------------------------------- the oracle


def _field_set(text: str, low: int, high: int) -> Set[int]:
    values: Set[int] = set()
    for term in text.split(","):
        base, _, step = term.partition("/")
        if base == "*":
            start, end = low, high
        elif "-" in base:
            start, end = (int(x) for x in base.split("-"))
        else:
            start = int(base)
            end = high if step else start
        values.update(range(start, end + 1, int(step) if step else 1))
    return values


class Oracle:
    """Debian cron semantics from first principles, for numeric expressions."""

    def __init__(self, expr: str, tz: str) -> None:
        minute, hour, dom, month, dow = expr.split()
        self.zone = ZoneInfo(tz)
        self.minutes = _field_set(minute, 0, 59)
        self.hours = _field_set(hour, 0, 23)
        self.doms = _field_set(dom, 1, 31)
        self.months = _field_set(month, 1, 12)
        self.dows = {d % 7 for d in _field_set(dow, 0, 7)}
        self.day_and = dom.startswith("*") or dow.startswith("*")
        self.wildcard = minute.startswith("*") or hour.startswith("*")

    def day_ok(self, d: date) -> bool:
        if d.month not in self.months:
            return False
        dom_ok = d.day in self.doms
        dow_ok = (d.isoweekday() % 7) in self.dows
        return (dom_ok and dow_ok) if self.day_and else (dom_ok or dow_ok)

    def fires(self, start: datetime, end: datetime) -> List[datetime]:
        found: Set[datetime] = set()
        if self.wildcard:
            # Real elapsed time: every real minute whose wall time matches.
            t = start.replace(second=0, microsecond=0)
            while t <= end:
                wall = t.astimezone(self.zone)
                if wall.minute in self.minutes and wall.hour in self.hours:
                    if self.day_ok(wall.date()):
                        found.add(t)
                t += timedelta(minutes=1)
        else:
            # Fixed times on the wall clock: the first pass of a repeated time; a time
            # in a gap fires at the first minute that exists after it.
            d = (start - timedelta(days=2)).date()
            while d <= (end + timedelta(days=2)).date():
                if self.day_ok(d):
                    for h in self.hours:
                        for m in self.minutes:
                            found.add(self.resolve(datetime(d.year, d.month, d.day, h, m)))
                d += timedelta(days=1)
        return sorted(t for t in found if start <= t <= end)

    def resolve(self, wall: datetime) -> datetime:
        while True:
            aware = wall.replace(tzinfo=self.zone)
            if aware.astimezone(UTC).astimezone(self.zone).replace(tzinfo=None) == wall:
                return aware.astimezone(UTC)
            wall += timedelta(minutes=1)


TRANSITIONS = [
    ("Europe/Berlin", utc(2026, 3, 29, 1, 0)),
    ("Europe/Berlin", utc(2026, 10, 25, 1, 0)),
    ("America/New_York", utc(2026, 3, 8, 7, 0)),
    ("America/New_York", utc(2026, 11, 1, 6, 0)),
    ("Australia/Lord_Howe", utc(2026, 10, 3, 15, 30)),
    ("Australia/Lord_Howe", utc(2026, 4, 4, 15, 0)),
]

EXPRESSIONS = [
    "30 2 * * *",
    "0 2 * * *",
    "15,45 1-3 * * *",
    "0,30 2,3 * * *",
    "59 1 * * *",
    "0 */2 * * *",
    "*/15 * * * *",
    "*/7 * * * *",
    "30 * * * *",
    "45 1 * * 0",
    "0 3 * * 1-5",
    "10 0-23 * * *",
]


@pytest.mark.parametrize(("tz", "transition"), TRANSITIONS, ids=lambda v: str(v))
@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_matches_oracle_around_transition(tz: str, transition: datetime, expr: str) -> None:
    sched = cron(expr, tz)
    window_start, window_end = transition - timedelta(hours=4), transition + timedelta(hours=4)
    margin = timedelta(days=8)  # wider than the longest gap between fires (weekly)
    expected = Oracle(expr, tz).fires(window_start - margin, window_end + margin)

    def oracle_next(t: datetime) -> Optional[datetime]:
        return next((f for f in expected if f > t), None)

    def oracle_latest(t: datetime) -> Optional[datetime]:
        return next((f for f in reversed(expected) if f <= t), None)

    t = window_start
    while t <= window_end:
        # On the minute, and a little after it (cronsim works on whole seconds).
        for probe in (t, t + timedelta(seconds=29, microseconds=5)):
            assert sched.next_after(probe) == oracle_next(probe), probe
            assert sched.latest_at_or_before(probe) == oracle_latest(probe), probe
        t += (
            timedelta(minutes=5)
            if sched.expr and sched.expr.startswith("*")
            else timedelta(minutes=1)
        )
    later = [f for f in expected if f > window_start]
    assert preview(sched, after=window_start, count=len(later)) == later
