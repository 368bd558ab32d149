"""Schedules: parse the text a user gives, compute fire times.

Kinds:

* ``cron``: 5 fields (``minute hour day-of-month month day-of-week``) or an alias
  (``@hourly @daily @midnight @weekly @monthly @yearly @annually``), evaluated with
  cronsim in the schedule's IANA zone. Debian cron's DST behaviour: a job at a fixed
  time (neither the minute nor the hour field starts with ``*``) whose time falls in a
  spring-forward gap fires once, at the jump; one in the hour repeated in autumn fires
  once, at the first pass; a job whose minute or hour field starts with ``*`` follows
  real elapsed time. Vixie cron's day rule: day-of-month and day-of-week are OR-ed
  unless one of them starts with ``*``. cronsim's extensions are accepted too: ``L``
  and ``LW`` in day-of-month, ``5L`` (last Friday) and ``5#2`` (second Friday) in
  day-of-week. A seconds or year field and ``@reboot`` are rejected.
* ``interval``: ``every 90s|30m|2h|1d`` (also ``1w``, spelled-out units such as
  ``every 90 seconds``, and sums such as ``every 1h30m``); at least 1 second.
  Fixed-rate and anchored: fire times are ``anchor + k * seconds`` for k >= 1, where
  ``anchor`` is ``now`` at parse time, whatever the runs did (no drift).
* plain English (``hermes_cron.english``): recurring forms (``every monday 9am``,
  ``weekdays at 9am``, ``hourly at :15``, ``monthly on the last day at 18:00``) are
  ``cron`` schedules whose ``expr`` is the expression they stand for and whose
  ``text`` is the words; day forms (``today at 5pm``, ``tomorrow at 9am``, ``[next]
  friday at 5pm``) are ``once`` schedules at the next such wall time in the zone
  (today included while the time is still ahead), resolved like a naive ISO time.
* ``once``: a delay ``+90s``, ``90s``, ``30m``, ``2h``, ``1d`` (same units as
  intervals) relative to ``now``, or an ISO 8601 time (``2026-05-01T09:00``,
  ``2026-05-01 09:00``, ``...+02:00``, ``...Z``). A naive time is wall time in the
  schedule's zone and is resolved like a cron time: in a spring-forward gap it means
  the jump, in the repeated autumn hour the first pass. A delay is never in the past;
  an absolute time more than ``PAST_TOLERANCE`` (60 s, so a time typed to the minute
  for "now" still works) before ``now`` is rejected with "... is in the past". A
  time inside the tolerance is kept as given, so the job is due at once: callers take a
  one-shot's first due time from ``Schedule.at``, not from ``next_after(now)``.

The record stored in a job's ``schedule`` field is ``Schedule.to_record()``;
``Schedule.from_record`` validates it field by field (the store quarantines a record
that fails). All times returned are aware datetimes in UTC. Naive ``now``, ``after``
or ``when`` arguments are a programming error (``ValueError``).
"""

from __future__ import annotations

import functools
import re
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

from cronsim import CronSim, CronSimError

from . import english
from ._frozen import Frozen
from .errors import ScheduleError
from .timeutil import UTC, get_zone, parse_iso, to_iso

KINDS = ("cron", "interval", "once")

#: Aliases and the 5-field expressions they stand for (Vixie cron's table).
ALIASES: Dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

#: How far in the past an absolute one-shot time may be and still be accepted.
PAST_TOLERANCE = timedelta(seconds=60)

#: The longest interval or delay accepted (100 years): beyond it is a typo.
MAX_SECONDS = 100 * 366 * 86400

_FIELD_HELP = "minute hour day-of-month month day-of-week"
_FORMS_HELP = (
    "expected a cron expression ('*/5 * * * *'), an alias (@daily), an interval "
    "('every 30m'), a delay ('+90s'), an ISO 8601 time ('2026-05-01T09:00') "
    f"or {english.FORMS_HELP}"
)

# Zone names that are plain UTC: cronsim evaluates ``timezone.utc`` on its fast path.
_UTC_NAMES = frozenset(
    "UTC Etc/UTC UCT Etc/UCT Universal Etc/Universal Zulu Etc/Zulu GMT Etc/GMT GMT0 "
    "Etc/GMT0 GMT+0 Etc/GMT+0 GMT-0 Etc/GMT-0 Greenwich Etc/Greenwich".split()
)


def _q(text: str) -> str:
    """Quote user input the way every message does: ``'61 * * * *'``. Control
    characters are escaped so a message stays on one line."""
    return f"'{text}'" if text.isprintable() else repr(text)


def _require_aware(value: datetime, name: str) -> None:
    if not isinstance(value, datetime):
        raise ValueError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")


# ---------------------------------------------------------------------------- zones


@functools.lru_cache(maxsize=512)
def _zone(name: str) -> tzinfo:
    """The zone for an IANA name (``timezone.utc`` for UTC aliases); ScheduleError if unknown."""
    if not isinstance(name, str) or not name.strip():
        raise ScheduleError(f"time zone must be an IANA name such as Europe/Berlin, got {name!r}")
    if name in ("localtime", "posixrules", "Factory"):
        raise ScheduleError(f"{name!r} is not an IANA time zone name; use e.g. Europe/Berlin")
    try:
        zone = get_zone(name)
    except ValueError:
        raise ScheduleError(
            f"unknown time zone {name!r} (expected an IANA name such as Europe/Berlin)"
        ) from None
    return UTC if name in _UTC_NAMES else zone


# ----------------------------------------------------------------------------- cron

_MONTHS = "JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split()
_DAYS = "SUN MON TUE WED THU FRI SAT".split()
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

# (name, low, high, symbolic names with the value of the first one)
_FIELDS: Tuple[Tuple[str, int, int, Optional[List[str]], int], ...] = (
    ("minute", 0, 59, None, 0),
    ("hour", 0, 23, None, 0),
    ("day-of-month", 1, 31, None, 0),
    ("month", 1, 12, _MONTHS, 1),
    ("day-of-week", 0, 7, _DAYS, 0),
)

_CRON_TOKEN = re.compile(r"^[0-9A-Za-z*/,#?-]+$")


def _field_value(q: str, field: int, item: str) -> int:
    """One number or name of a field, range-checked."""
    name, low, high, names, first = _FIELDS[field]
    upper = item.upper()
    if names is not None and upper in names:
        return names.index(upper) + first
    if not item.isdigit() or not item.isascii():
        if names is not None:
            raise ScheduleError(
                f"{q}: {name} {_q(item)} is not a number {low}-{high} "
                f"or a name {names[0]}-{names[-1]}"
            )
        raise ScheduleError(f"{q}: {name} {_q(item)} is not a number {low}-{high}")
    value = int(item)
    if not low <= value <= high:
        raise ScheduleError(f"{q}: {name} {value} is out of range {low}-{high}")
    return value


def _check_field(q: str, field: int, text: str) -> List[int]:
    """Validate one field with a precise message; returns the plain day numbers it names
    (used for the day-of-month "never occurs" check; empty when not applicable)."""
    name, low, high, _names, _first = _FIELDS[field]
    values: List[int] = []
    for term in text.split(","):
        if term == "":
            raise ScheduleError(f"{q}: empty list item in {name} field {_q(text)}")
        upper = term.upper()
        if "?" in term:
            raise ScheduleError(f"{q}: '?' is not supported in the {name} field; use '*'")
        if field == 2 and upper in ("L", "LW"):
            continue  # last day / last weekday of the month (cronsim extension)
        if field == 4 and upper.endswith("L"):
            # "5L": the last Friday of the month (cronsim extension; digits only).
            if not upper[:-1].isdigit():
                raise ScheduleError(
                    f"{q}: day-of-week {_q(term)}: 'L' follows a weekday number 0-7, as in 5L"
                )
            _field_value(q, field, upper[:-1])
            continue
        if field == 4 and "#" in term:
            day, _, nth = term.partition("#")
            _field_value(q, field, day)
            if not nth.isdigit() or not 1 <= int(nth) <= 5:
                raise ScheduleError(
                    f"{q}: day-of-week {_q(term)}: the week after '#' must be 1-5, as in 5#2"
                )
            continue
        base, slash, step = term.partition("/")
        if slash:
            if not step.isdigit() or not step.isascii():
                raise ScheduleError(f"{q}: {name} step {_q(step)} is not a number")
            if int(step) < 1:
                raise ScheduleError(f"{q}: {name} step {_q(term)}: the step must be at least 1")
            if base == "":
                raise ScheduleError(f"{q}: {name} step {_q(term)} has nothing before '/'")
        if base == "*":
            continue
        start_text, dash, end_text = base.partition("-")
        start = _field_value(q, field, start_text)
        if dash:
            end = _field_value(q, field, end_text)
            if end < start:
                raise ScheduleError(
                    f"{q}: {name} range {_q(base)} runs backwards "
                    f"(cron ranges do not wrap; use a list such as {start}-{high},{low}-{end})"
                )
            values.extend(range(start, end + 1))
        else:
            values.append(start)
    return values


def _months(text: str) -> List[int]:
    months: Set[int] = set()
    for term in text.upper().split(","):
        base, _, step_text = term.partition("/")
        step = int(step_text) if step_text else 1
        if base == "*":
            lo, hi = 1, 12
        else:
            lo_text, dash, hi_text = base.partition("-")
            lo = _MONTHS.index(lo_text) + 1 if lo_text in _MONTHS else int(lo_text)
            if dash:
                hi = _MONTHS.index(hi_text) + 1 if hi_text in _MONTHS else int(hi_text)
            else:
                hi = 12 if step_text else lo
        months.update(range(lo, hi + 1, step))
    return sorted(months)


def _check_cron(expr: str, q: str) -> str:
    """Validate a 5-field expression; return it with its fields joined by single spaces."""
    fields = expr.split()
    count = len(fields)
    if count in (6, 7):
        raise ScheduleError(
            f"{q}: {count} fields: a seconds or year field is not supported; "
            f"use 5 fields ({_FIELD_HELP})"
        )
    if count != 5:
        raise ScheduleError(f"{q}: a cron expression has 5 fields ({_FIELD_HELP}), got {count}")
    for index, text in enumerate(fields):
        if len(text) > 200:
            raise ScheduleError(f"{q}: the {_FIELDS[index][0]} field is too long")
        if not _CRON_TOKEN.match(text):
            raise ScheduleError(
                f"{q}: {_FIELDS[index][0]} field {_q(text)} has a character cron does not use"
            )
    days = _check_field(q, 2, fields[2])
    for index in (0, 1, 3, 4):
        _check_field(q, index, fields[index])
    if days and not any(term.upper() in ("L", "LW") for term in fields[2].split(",")):
        # A day-of-month that no selected month has never fires (e.g. "0 0 30 2 *").
        longest = max(_DAYS_IN_MONTH[m - 1] for m in _months(fields[3]))
        if min(days) > longest:
            raise ScheduleError(
                f"{q}: day-of-month {min(days)} never occurs in the selected months "
                f"(the longest has {longest} days)"
            )
    return " ".join(fields)


_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_WEEK = timedelta(days=7)
_MICRO = timedelta(microseconds=1)
_FIXED_ZONES: Dict[timedelta, tzinfo] = {}


def _fixed_zone(offset: timedelta) -> tzinfo:
    zone = _FIXED_ZONES.get(offset)
    if zone is None:
        zone = _FIXED_ZONES[offset] = UTC if not offset else timezone(offset)
    return zone


def _offset(zone: tzinfo, instant: datetime) -> timedelta:
    return instant.astimezone(zone).utcoffset() or timedelta(0)


def _boundary(zone: tzinfo, lo: datetime, hi: datetime) -> datetime:
    """The first instant in ``(lo, hi]`` whose offset differs from ``lo``'s (``hi``'s
    does), to the microsecond, by bisection."""
    base = _offset(zone, lo)
    while hi - lo > _MICRO:
        mid = lo + (hi - lo) // 2
        if _offset(zone, mid) == base:
            lo = mid
        else:
            hi = mid
    return hi


def _next_change(
    zone: tzinfo, base: timedelta, start: datetime, end: datetime
) -> Optional[datetime]:
    """The first instant in ``(start, end]`` where the UTC offset is not ``base``.

    Probes a week at a time (zones change offset at most a few times a year), then bisects.
    """
    lo = start
    while lo < end:
        hi = min(lo + _WEEK, end)
        if _offset(zone, hi) != base:
            return _boundary(zone, lo, hi)
        lo = hi
    return None


def _segment_start(zone: tzinfo, start: datetime, end: datetime) -> Optional[datetime]:
    """The first instant of the constant-offset stretch that contains ``end``, if it lies
    in ``(start, end]``; None when the offset is the same all the way back to ``start``."""
    base = _offset(zone, end)
    hi = end
    while hi > start:
        lo = max(hi - _WEEK, start)
        if _offset(zone, lo) != base:
            return _boundary(zone, lo, hi)
        hi = lo
    return None


def _cronsim_form(expr: str, q: str) -> str:
    """``expr`` as cronsim should read it: a one-value range with a step (``53-53/2``)
    is just that value in cron, but cronsim reads it as ``53/2`` (53, 55, 57, 59)."""
    fields = expr.split()
    for index, text in enumerate(fields):
        terms = text.split(",")
        for position, term in enumerate(terms):
            base, slash, _step = term.partition("/")
            start, dash, end = base.partition("-")
            if slash and dash and start != "*":
                if _field_value(q, index, start) == _field_value(q, index, end):
                    terms[position] = start
        fields[index] = ",".join(terms)
    return " ".join(fields)


class _CronSpec:
    """A validated cron expression in one zone, with the last answers memoised.

    Three ways to evaluate, matching Debian cron:

    * ``utc``: the zone is UTC; cronsim directly.
    * ``wall``: a fixed-time job (neither the minute nor the hour field starts with
      ``*``) in a zone with DST; cronsim's own Debian mode walks the naive wall clock, a
      time in a gap fires at the jump, a repeated time at its first pass.
    * ``elapsed``: a wildcard job follows real time: it fires at each real minute whose
      wall time matches. While the UTC offset stays the same that is cron in a fixed
      offset, so evaluate cronsim in the offset in force, stretch by stretch.
      (cronsim's own aware mode steps hours as 3600 s of UTC and so misses fires after
      a 30-minute shift, as on Lord Howe Island.)

    ``next_after`` remembers ``(after, result)``: there is no fire time in
    ``(after, result)``, so any later query inside that window has the same answer
    without a cronsim walk (the store asks for thousands of jobs over and over).
    ``latest_at_or_before`` likewise remembers ``(when, result)``.
    """

    __slots__ = ("expr", "zone", "mode", "_next_memo", "_latest_memo")

    def __init__(self, expr: str, zone: tzinfo) -> None:
        self.expr = expr
        self.zone = zone
        minute, hour = expr.split()[:2]
        if zone is UTC:
            self.mode = "utc"
        elif minute.startswith("*") or hour.startswith("*"):
            self.mode = "elapsed"
        else:
            self.mode = "wall"
        self._next_memo: Optional[Tuple[datetime, datetime]] = None
        self._latest_memo: Optional[Tuple[datetime, datetime]] = None

    # -- plain cronsim in one zone, exact "strictly after" / "at or before" semantics
    def _first_after(self, after: datetime, zone: tzinfo) -> Optional[datetime]:
        # cronsim starts at the whole second (cronsim < 2.7: minute) of ``dt`` and ticks
        # forward before matching, so its answers are after ``dt``; in the ``wall`` mode
        # it drops the offset, so an ``after`` in the second pass of a repeated hour can
        # yield that hour's first pass, which is earlier: keep only later times.
        # cronsim ends (after 50 years without a match) by stopping its iteration.
        for fire in CronSim(self.expr, after.astimezone(zone)):
            fire = fire.astimezone(UTC)
            if fire > after:
                return fire
        return None

    def _last_at_or_before(self, when: datetime, zone: tzinfo) -> Optional[datetime]:
        # Fire times are whole minutes. cronsim's reverse walk is exclusive of its start
        # (and cronsim < 2.7 truncates the start to the minute), so start one minute
        # after the minute of ``when``: that minute is then a candidate on every version.
        start = when.replace(second=0, microsecond=0) + timedelta(minutes=1)
        if self.mode == "wall":
            local = start.astimezone(zone)
            if local.fold:
                # The start is in the second pass of a repeated hour; cronsim walks the
                # naive wall clock, where that hour's first pass (already past) lies
                # after it. Start past the repeat and skip the answers after ``when``.
                start += (local.replace(fold=0).utcoffset() or timedelta(0)) - (
                    local.utcoffset() or timedelta(0)
                )
        for fire in CronSim(self.expr, start.astimezone(zone), reverse=True):
            fire = fire.astimezone(UTC)
            if fire <= when:
                return fire
        return None

    def _elapsed_next(self, after: datetime) -> Optional[datetime]:
        cursor, offset = after, _offset(self.zone, after)
        while True:
            fire = self._first_after(cursor, _fixed_zone(offset))
            if fire is None:
                return None
            change = _next_change(self.zone, offset, cursor, fire)
            if change is None:
                return fire
            # The offset changed before that fire: continue in the new offset from the
            # change (a fire exactly at the change belongs to the new stretch).
            cursor, offset = change - _MICRO, _offset(self.zone, change)

    def _elapsed_latest(self, when: datetime) -> Optional[datetime]:
        cursor = when
        while True:
            fire = self._last_at_or_before(cursor, _fixed_zone(_offset(self.zone, cursor)))
            if fire is None:
                return None
            start = _segment_start(self.zone, fire, cursor)
            if start is None:
                return fire
            cursor = start - _MICRO  # the stretch began after that fire: look before it

    # -- public
    def next_after(self, after: datetime) -> Optional[datetime]:
        memo = self._next_memo
        if memo is not None and memo[0] <= after < memo[1]:
            return memo[1]
        after = after.astimezone(UTC)
        if self.mode == "elapsed":
            result = self._elapsed_next(after)
        else:
            result = self._first_after(after, self.zone)
        if result is not None:
            self._next_memo = (after, result)  # one tuple store: safe across threads
        return result

    def iter_after(self, after: datetime) -> Iterator[datetime]:
        """Fire times strictly after ``after``, strictly increasing, in UTC."""
        after = after.astimezone(UTC)
        if self.mode == "elapsed":
            fire = self._elapsed_next(after)
            while fire is not None:
                yield fire
                fire = self._elapsed_next(fire)
            return
        last = after
        for fire in CronSim(self.expr, after.astimezone(self.zone)):
            fire = fire.astimezone(UTC)
            if fire > last:
                last = fire
                yield fire

    def latest_at_or_before(self, when: datetime) -> Optional[datetime]:
        memo = self._latest_memo
        if memo is not None and memo[1] <= when <= memo[0]:
            return memo[1]
        when = when.astimezone(UTC)
        if self.mode == "elapsed":
            result = self._elapsed_latest(when)
        else:
            result = self._last_at_or_before(when, self.zone)
        if result is not None:
            self._latest_memo = (when, result)
        return result


# Sized for tens of thousands of distinct jobs: a miss re-validates and loses the memo.
@functools.lru_cache(maxsize=65536)
def _cron_spec(expr: str, tz: str) -> _CronSpec:
    """Validated, memoised evaluator for ``expr`` in zone ``tz``."""
    q = _q(expr)
    spec = _CronSpec(_cronsim_form(_check_cron(expr, q), q), _zone(tz))
    try:
        CronSim(spec.expr, _EPOCH)  # cronsim's own parse, so no later call can fail
    except CronSimError as exc:  # our checks should have caught it; keep cronsim's word
        message = str(exc) or "invalid expression"
        raise ScheduleError(f"{q}: {message[0].lower()}{message[1:]}") from None
    return spec


@functools.lru_cache(maxsize=65536)
def _cron_expr_for(text: str) -> str:
    """The 5-field expression for a cron text (an alias, fields or plain English),
    validated."""
    q = _q(text)
    if english.claims(text):
        parsed = _english(text)
        if not isinstance(parsed, english.Recurring):
            raise ScheduleError(f"{q}: a one-time day form, not a recurring schedule")
        return _check_cron(parsed.expr, q)
    if text.startswith("@"):
        word = text.lower()
        if word == "@reboot":
            raise ScheduleError(
                f"{q}: @reboot is not supported (jobs run on a schedule, not at boot)"
            )
        expr = ALIASES.get(word)
        if expr is None:
            raise ScheduleError(
                f"{q}: unknown alias; use one of {', '.join(sorted(ALIASES))}"
                " or a 5-field expression"
            )
        return expr
    return _check_cron(text, q)


# ------------------------------------------------------------------------ durations

_UNITS = {
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 7 * 86400,
}
_UNIT_WORDS = r"s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?|d|days?|w|weeks?"
# At most 12 digits a number: more is no duration (and int() of thousands of digits fails).
_DURATION_PART = re.compile(rf"(\d{{1,12}})\s*({_UNIT_WORDS})(?![a-z])", re.IGNORECASE)
_DURATION = re.compile(rf"(?:\d{{1,12}}\s*(?:{_UNIT_WORDS})(?![a-z])\s*)+", re.IGNORECASE)


def _duration_seconds(text: str) -> Optional[int]:
    """Seconds in ``90s``, ``1h30m``, ``2 hours``...; None if ``text`` is not a duration.

    A bare capital ``M`` is refused, so a month-minded ``1M`` is not read as a minute.
    """
    if not _DURATION.fullmatch(text):
        return None
    total = 0
    for number, unit in _DURATION_PART.findall(text):
        if unit == "M":
            return None
        total += int(number) * _UNITS[unit[0].lower()]
    return total


def _check_seconds(q: str, seconds: int, what: str) -> int:
    if seconds < 1:
        raise ScheduleError(f"{q}: {what} must be at least 1 second")
    if seconds > MAX_SECONDS:
        raise ScheduleError(f"{q}: {what} is longer than 100 years")
    return seconds


def _interval_seconds(text: str) -> int:
    """Seconds of an ``every ...`` text, validated."""
    q = _q(text)
    rest = text[len("every") :].strip()
    if not rest:
        raise ScheduleError(f"{q}: missing interval; expected e.g. every 90s, every 30m, every 2h")
    if rest.startswith("-"):
        raise ScheduleError(f"{q}: an interval cannot be negative")
    seconds = _duration_seconds(rest)
    if seconds is None:
        raise ScheduleError(
            f"{q}: bad interval; expected 'every <number><s|m|h|d|w>', "
            "e.g. every 90s, every 30m, every 2h, every 1d, every 1h30m"
        )
    return _check_seconds(q, seconds, "an interval")


# ---------------------------------------------------------------------------- times

_ISO_START = re.compile(r"^\d{4}-\d{2}-\d{2}")
_COMPACT_OFFSET = re.compile(r"([+-]\d{2})(\d{2})$")


def _is_imaginary(wall: datetime, zone: tzinfo) -> bool:
    """True when the naive wall time does not exist in ``zone`` (a spring-forward gap)."""
    aware = wall.replace(tzinfo=zone, fold=0)
    return aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != wall


def _resolve_wall(wall: datetime, zone: tzinfo) -> datetime:
    """An instant for a naive wall time, as cron resolves fixed times: the first pass of
    a repeated time; for a time in a gap, the jump (the first whole minute after it)."""
    if zone is not UTC and _is_imaginary(wall, zone):
        probe = wall.replace(second=0, microsecond=0)
        for _ in range(3 * 1440):  # gaps are at most a day (Samoa skipped 2011-12-30)
            probe += timedelta(minutes=1)
            if not _is_imaginary(probe, zone):
                return probe.replace(tzinfo=zone).astimezone(UTC)
    return wall.replace(tzinfo=zone, fold=0).astimezone(UTC)


def _parse_time(text: str, zone: tzinfo) -> Optional[datetime]:
    """An ISO 8601 time as a UTC instant; None if ``text`` does not look like one."""
    if not _ISO_START.match(text):
        return None
    value = text
    if value[-1:] in ("Z", "z"):
        value = value[:-1] + "+00:00"
    value = _COMPACT_OFFSET.sub(r"\1:\2", value) if len(value) > 10 else value
    if len(value) > 10 and value[10] == " ":
        value = value[:10] + "T" + value[11:].lstrip()
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        detail = str(exc)
        if "isoformat" in detail:
            detail = "expected e.g. 2026-05-01T09:00 or 2026-05-01T09:00+02:00"
        raise ScheduleError(f"{_q(text)}: not a valid ISO 8601 time ({detail})") from None
    try:
        if parsed.tzinfo is None:
            return _resolve_wall(parsed, zone)
        return parsed.astimezone(UTC)
    except OverflowError:
        raise ScheduleError(f"{_q(text)}: the time is out of range") from None


def _strip_in(text: str) -> str:
    """``in 30m`` → ``30m`` (a relative one-shot said the way people say it)."""
    return text[3:].strip() if text[:3].lower() == "in " else text


def _once_text_ok(text: str) -> bool:
    """Whether ``text`` has the shape of a one-shot (a delay, an ISO time or a day form
    such as ``friday at 5pm``)."""
    body = text[1:] if text.startswith("+") else _strip_in(text)
    if _duration_seconds(body.strip()) is not None:
        return True
    if english.claims(text):
        try:
            return isinstance(_english(text), english.DayForm)
        except ScheduleError:
            return False
    try:
        return _parse_time(text, UTC) is not None
    except ScheduleError:
        return False


# -------------------------------------------------------------------- plain English


def _english(text: str) -> english.Parsed:
    """``english.parse``, with the list of forms added when the text stops short."""
    try:
        return english.parse(text)
    except english.Incomplete as exc:
        raise ScheduleError(f"{exc}; {_FORMS_HELP}") from None


def _day_form_at(form: english.DayForm, zone: tzinfo, now: datetime, q: str) -> datetime:
    """The first instant after ``now`` at which the day form's wall time comes, on the
    day it names (today while the time is still ahead, else the next such day).

    The wall time is resolved like a naive ISO one-shot (and a cron time): in a
    spring-forward gap it means the jump, in a repeated hour the first pass.
    """
    try:
        today = now.astimezone(zone).date()
        if form.day == "tomorrow":
            day = today + timedelta(days=1)
        elif form.day == "today":
            day = today
        else:
            # date.weekday() counts from Monday = 0; cron's numbers from Sunday = 0.
            day = today + timedelta(days=(int(form.day) - 1 - today.weekday()) % 7)
        step = timedelta(days=7 if isinstance(form.day, int) else 1)
        while True:  # at most twice: a day's wall time is never two steps behind ``now``
            wall = datetime(day.year, day.month, day.day, form.hour, form.minute)
            at = _resolve_wall(wall, zone)
            if at > now:
                return at
            day += step
    except OverflowError:
        raise ScheduleError(f"{q}: the time is out of range") from None


# ------------------------------------------------------------------------- schedule


def _utc_opt(value: Optional[datetime]) -> Optional[datetime]:
    """Store instants in UTC, so interval arithmetic never does wall-clock math."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise ScheduleError(f"expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ScheduleError(f"time {value.isoformat()} has no UTC offset")
    return value.astimezone(UTC)


_KIND_FIELDS = {"cron": ("expr",), "interval": ("seconds", "anchor"), "once": ("at",)}


class Schedule(Frozen):
    """A parsed schedule. Times are aware datetimes (stored in UTC).

    Build one with ``parse_schedule`` or ``Schedule.from_record``; constructing it
    directly validates the fields too (``ScheduleError``). Immutable, compared and
    hashed by its fields.

    Not attrs: every command that reads ``jobs.json`` builds one per job (see
    ``hermes_cron._frozen``, issue 12).
    """

    __slots__ = ("kind", "text", "tz", "expr", "seconds", "anchor", "at")

    kind: str
    text: str  # what the user gave (surrounding whitespace stripped)
    tz: str  # IANA zone name, never a fixed offset
    expr: Optional[str]  # cron: the 5-field expression (aliases expanded)
    seconds: Optional[int]  # interval length
    anchor: Optional[datetime]  # interval: fire times are anchor + k*seconds, k >= 1
    at: Optional[datetime]  # once: the fire time

    def __init__(
        self,
        kind: str,
        text: str,
        tz: str,
        expr: Optional[str] = None,
        seconds: Optional[int] = None,
        anchor: Optional[datetime] = None,
        at: Optional[datetime] = None,
    ) -> None:
        self._set(
            kind=kind,
            text=text,
            tz=tz,
            expr=expr,
            seconds=seconds,
            anchor=_utc_opt(anchor),
            at=_utc_opt(at),
        )
        self._check()

    def _check(self) -> None:
        if self.kind not in KINDS:
            raise ScheduleError(f"unknown schedule kind {self.kind!r} (one of {', '.join(KINDS)})")
        if not isinstance(self.text, str) or not self.text.strip():
            raise ScheduleError("schedule text must be a non-empty string")
        if not isinstance(self.tz, str):
            raise ScheduleError(f"time zone must be an IANA name, got {self.tz!r}")
        _zone(self.tz)
        wanted = _KIND_FIELDS[self.kind]
        for name in ("expr", "seconds", "anchor", "at"):
            if name not in wanted and getattr(self, name) is not None:
                raise ScheduleError(f"a {self.kind} schedule has no {name!r}")
        if self.kind == "cron":
            if not isinstance(self.expr, str):
                raise ScheduleError("a cron schedule needs 'expr', a 5-field expression")
            _cron_spec(self.expr, self.tz)
        elif self.kind == "interval":
            if not isinstance(self.seconds, int) or isinstance(self.seconds, bool):
                raise ScheduleError(
                    f"an interval needs 'seconds', a whole number, got {self.seconds!r}"
                )
            _check_seconds(_q(self.text), self.seconds, "an interval")
            if self.anchor is None:
                raise ScheduleError("an interval needs 'anchor', the time it counts from")
        elif self.at is None:
            raise ScheduleError("a one-shot needs 'at', its fire time")

    @property
    def recurring(self) -> bool:
        return self.kind != "once"

    def next_after(self, after: datetime) -> Optional[datetime]:
        """The first fire time strictly after ``after``; None when there is none.

        None only for a one-shot at or before ``after`` (or a cron expression with no
        fire time within cronsim's 50-year horizon).
        """
        _require_aware(after, "after")
        if self.kind == "cron":
            return _cron_spec(self.expr, self.tz).next_after(after)  # type: ignore[arg-type]
        if self.kind == "interval":
            anchor, step = self.anchor, timedelta(seconds=self.seconds)  # type: ignore[arg-type]
            assert anchor is not None
            # k = floor((after - anchor) / step) + 1, at least 1; timedelta // timedelta is
            # exact integer arithmetic on microseconds, so there is no drift however late.
            k = (after - anchor) // step + 1 if after >= anchor else 1
            try:
                return anchor + k * step
            except OverflowError:
                return None
        assert self.at is not None
        return self.at if self.at > after else None

    def latest_at_or_before(self, when: datetime) -> Optional[datetime]:
        """The last fire time at or before ``when``; None when there is none.

        O(1) arithmetic for intervals; a cronsim reverse walk for cron.
        """
        _require_aware(when, "when")
        if self.kind == "cron":
            return _cron_spec(self.expr, self.tz).latest_at_or_before(when)  # type: ignore[arg-type]
        if self.kind == "interval":
            anchor, step = self.anchor, timedelta(seconds=self.seconds)  # type: ignore[arg-type]
            assert anchor is not None
            if when < anchor:
                return None
            k = (when - anchor) // step  # the fire times are k >= 1
            return anchor + k * step if k >= 1 else None
        assert self.at is not None
        return self.at if self.at <= when else None

    def to_record(self) -> Dict[str, Any]:
        """The JSON form stored in ``jobs.json``: ``{"kind", "text", "tz", ...kind fields}``."""
        record: Dict[str, Any] = {"kind": self.kind, "text": self.text, "tz": self.tz}
        if self.kind == "cron":
            record["expr"] = self.expr
        elif self.kind == "interval":
            assert self.anchor is not None
            record["seconds"] = self.seconds
            record["anchor"] = to_iso(self.anchor)
        else:
            assert self.at is not None
            record["at"] = to_iso(self.at)
        return record

    @classmethod
    def from_record(cls, record: Any) -> Schedule:
        """Rebuild from ``to_record()`` output; ``ScheduleError`` if the record is invalid.

        Checks every field: types, known keys only, the zone, the expression, and that
        a cron or interval ``text`` still says what ``expr``/``seconds`` say.
        """
        if not isinstance(record, dict):
            raise ScheduleError(f"schedule record must be an object, got {type(record).__name__}")
        try:
            # The type is part of the key: True == 1 and 90.0 == 90 must not share an entry.
            key = tuple((k, type(v), v) for k, v in sorted(record.items()))
            hash(key)
        except TypeError:  # unhashable values or odd keys: not cacheable, surely invalid
            return _schedule_from_record(record)
        return _cached_from_record(key)


@functools.lru_cache(maxsize=32768)
def _cached_from_record(key: Tuple[Tuple[str, type, Any], ...]) -> Schedule:
    return _schedule_from_record({k: v for k, _t, v in key})


def _schedule_from_record(record: Dict[Any, Any]) -> Schedule:
    kind = record.get("kind")
    if kind not in KINDS:
        raise ScheduleError(f"schedule record: unknown kind {kind!r} (one of {', '.join(KINDS)})")
    allowed = {"kind", "text", "tz", *_KIND_FIELDS[kind]}
    for name in record:
        if name not in allowed:
            raise ScheduleError(f"schedule record: unexpected field {name!r} for a {kind} schedule")
    for name in sorted(allowed):
        if name not in record:
            raise ScheduleError(f"schedule record: missing field {name!r}")
    text, tz = record["text"], record["tz"]
    if not isinstance(text, str) or not text.strip():
        raise ScheduleError(f"schedule record: 'text' must be a non-empty string, got {text!r}")
    if not isinstance(tz, str):
        raise ScheduleError(f"schedule record: 'tz' must be an IANA zone name, got {tz!r}")
    fields: Dict[str, Any] = {}
    for name in ("anchor", "at"):
        if name in allowed:
            value = record[name]
            try:
                fields[name] = parse_iso(value)
            except (ValueError, TypeError):
                raise ScheduleError(
                    f"schedule record: {name!r} must be an ISO 8601 time with offset, got {value!r}"
                ) from None
    if kind == "cron":
        expr = record["expr"]
        if not isinstance(expr, str):
            raise ScheduleError(f"schedule record: 'expr' must be a string, got {expr!r}")
        fields["expr"] = expr
    elif kind == "interval":
        fields["seconds"] = record["seconds"]
    schedule = Schedule(kind=kind, text=text, tz=tz, **fields)
    # The text is what users see in `list`: it must still describe what runs.
    if kind == "cron" and _cron_expr_for(text.strip()) != " ".join((schedule.expr or "").split()):
        raise ScheduleError(f"schedule record: text {text!r} does not match expr {schedule.expr!r}")
    if kind == "interval":
        stripped = text.strip()
        if (
            not stripped.lower().startswith("every")
            or _interval_seconds(stripped) != schedule.seconds
        ):
            raise ScheduleError(
                f"schedule record: text {text!r} does not match seconds {schedule.seconds!r}"
            )
    if kind == "once" and not _once_text_ok(text.strip()):
        raise ScheduleError(f"schedule record: text {text!r} is not a one-shot time or delay")
    return schedule


# -------------------------------------------------------------------------- parsing


def _looks_like_cron(text: str) -> bool:
    """Cron-shaped: several tokens, most starting with a digit or ``*`` (so ``x * * * *``
    gets a message about its minute field while ``in 5 minutes`` is plain garbage)."""
    tokens = text.split()
    if len(tokens) < 2:
        return False
    numeric = sum(1 for token in tokens if token[0].isdigit() or token[0] == "*")
    return 2 * numeric >= len(tokens)


def _firing(schedule: Schedule, now: datetime) -> Schedule:
    """Reject a cron expression that is valid field by field yet has no fire time within
    cronsim's 50-year horizon: such a job would sit in the store with no next run."""
    if schedule.next_after(now) is None:
        raise ScheduleError(f"{_q(schedule.text)}: the expression never fires")
    return schedule


def parse_schedule(text: str, *, tz: Optional[str] = None, now: datetime) -> Schedule:
    """Parse ``text``; ``tz`` is the IANA zone (None: ``UTC``; the service passes
    ``cron.timezone`` or the system zone). ``now`` anchors relative one-shots and intervals.

    Raises ``ScheduleError`` with a message that says what is wrong, e.g.
    ``'61 * * * *': minute 61 is out of range 0-59``. See the module docstring for
    the forms and for how one-shot times in the past are treated.
    """
    _require_aware(now, "now")
    if not isinstance(text, str):
        raise ScheduleError(f"a schedule must be text, got {type(text).__name__}")
    zone_name = "UTC" if tz is None else tz
    zone = _zone(zone_name)
    stripped = text.strip()
    if not stripped:
        raise ScheduleError(f"{_q(text)}: empty schedule; {_FORMS_HELP}")
    q = _q(stripped)
    now_utc = now.astimezone(UTC)
    lower = stripped.lower()

    if stripped.startswith("@"):
        return Schedule(kind="cron", text=stripped, tz=zone_name, expr=_cron_expr_for(stripped))

    if english.claims(stripped):
        parsed = _english(stripped)
        if isinstance(parsed, english.DayForm):
            return Schedule(
                kind="once", text=stripped, tz=zone_name, at=_day_form_at(parsed, zone, now_utc, q)
            )
        return _firing(
            Schedule(kind="cron", text=stripped, tz=zone_name, expr=_check_cron(parsed.expr, q)),
            now_utc,
        )

    if lower.startswith("every") and (len(lower) == 5 or not lower[5].isalpha()):
        seconds = _interval_seconds(stripped)
        return Schedule(
            kind="interval", text=stripped, tz=zone_name, seconds=seconds, anchor=now_utc
        )

    if lower.startswith("in ") and _duration_seconds(_strip_in(stripped)) is None:
        raise ScheduleError(f"{q}: bad delay; expected e.g. in 30m, in 2 hours, in 1h30m")
    if stripped[0] in "+-" or stripped[0].isdigit() or lower.startswith("in "):
        if lower.startswith("in "):
            body = _strip_in(stripped)
        else:
            body = stripped[1:].strip() if stripped[0] in "+-" else stripped
        delay = _duration_seconds(body)
        if delay is not None or stripped[0] in "+-":
            if stripped[0] == "-":
                raise ScheduleError(f"{q}: a delay cannot be negative; use e.g. +90s")
            if delay is None:
                raise ScheduleError(f"{q}: bad delay; expected e.g. +90s, +30m, +2h, +1d")
            _check_seconds(q, delay, "a delay")
            return Schedule(
                kind="once", text=stripped, tz=zone_name, at=now_utc + timedelta(seconds=delay)
            )

    at = _parse_time(stripped, zone)
    if at is not None:
        if at < now_utc - PAST_TOLERANCE:
            raise ScheduleError(f"{q}: {at.isoformat()} is in the past")
        return Schedule(kind="once", text=stripped, tz=zone_name, at=at)

    if _looks_like_cron(stripped):
        return _firing(
            Schedule(kind="cron", text=stripped, tz=zone_name, expr=_check_cron(stripped, q)),
            now_utc,
        )

    raise ScheduleError(f"{q}: not a schedule; {_FORMS_HELP}")


def preview(schedule: Schedule, *, after: datetime, count: int) -> List[datetime]:
    """The next ``count`` fire times strictly after ``after`` (fewer for a one-shot)."""
    _require_aware(after, "after")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if count == 0:
        return []
    if schedule.kind == "cron":
        times: List[datetime] = []
        assert schedule.expr is not None
        for fire in _cron_spec(schedule.expr, schedule.tz).iter_after(after):
            times.append(fire)
            if len(times) == count:
                break
        return times
    if schedule.kind == "interval":
        first = schedule.next_after(after)
        if first is None:
            return []
        step = timedelta(seconds=schedule.seconds)  # type: ignore[arg-type]
        times = []
        for k in range(count):
            try:
                times.append(first + k * step)
            except OverflowError:
                break
        return times
    nxt = schedule.next_after(after)
    return [] if nxt is None else [nxt]


__all__ = [
    "ALIASES",
    "KINDS",
    "PAST_TOLERANCE",
    "Schedule",
    "ScheduleError",
    "parse_schedule",
    "preview",
]
