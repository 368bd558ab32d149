"""Fuzz the schedule parser and the schedule record reader.

Promise: any text (or any record) becomes a ``Schedule`` or a one-line
``ScheduleError``, never another exception; a ``Schedule`` that came out answers
``next_after`` / ``latest_at_or_before`` without raising and survives its own record;
a parsed text never yields a schedule that never fires (that is an error, said so).
Plain English gets its own texts: sentences built from the grammar's pieces (good
ones must parse to what they say) and soups of its tokens.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any, Set, Tuple
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from hermes_cron.errors import ScheduleError
from hermes_cron.schedules import PAST_TOLERANCE, Schedule, parse_schedule
from hermes_cron.timeutil import UTC

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
FUZZ = settings(max_examples=300, deadline=None)

#: Pieces schedules are made of, so random text often comes close to a real one.
TOKENS = st.sampled_from(
    [
        "*",
        "*/5",
        "0",
        "59",
        "60",
        "-1",
        "1-5",
        "5-1",
        "1,2",
        ",",
        "/",
        "L",
        "LW",
        "5L",
        "5#2",
        "#",
        "?",
        "W",
        "JAN",
        "mon",
        "SUN-SAT",
        "@daily",
        "@hourly",
        "@reboot",
        "@",
        "every",
        "+",
        "-",
        "90s",
        "30m",
        "2h",
        "1d",
        "1w",
        "0s",
        "1h30m",
        "99999999999d",
        "seconds",
        "min",
        "T",
        "Z",
        "2026-05-01T09:00",
        "2026-02-30",
        "2026-03-29T02:30",
        "1999-01-01",
        "+02:00",
        "\x00",
        "\u00a0",
        "٣",
        "²",
        "\t",
        "\n",
        "repeat",
    ]  # fmt: skip
)
FIELDS = st.sampled_from(
    [
        "*",
        "*/5",
        "*/0",
        "0",
        "7",
        "31",
        "59",
        "60",
        "1-5",
        "5-1",
        "0-59/15",
        "1,2",
        "L",
        "5L",
        "5#2",
        "?",
        "JAN",
        "mon",
        "SUN-SAT",
        "2-2/3",
    ]  # fmt: skip
)
UNITS = st.sampled_from(["s", "m", "h", "d", "w", " seconds", " minutes", "", "x", "h30m"])
TEXT = st.one_of(
    st.text(max_size=40),
    st.lists(FIELDS, min_size=4, max_size=6).map(" ".join),
    st.builds(lambda n, u: f"every {n}{u}", st.integers(-5, 10**12), UNITS),
    st.builds(lambda n, u: f"+{n}{u}", st.integers(-5, 10**12), UNITS),
    st.lists(TOKENS, min_size=1, max_size=7).map(" ".join),
    st.lists(TOKENS, min_size=1, max_size=4).map("".join),
)
ZONE = st.one_of(
    st.none(),
    st.sampled_from(["UTC", "Europe/Paris", "America/St_Johns", "Asia/Kathmandu", "Etc/GMT+12"]),
    st.sampled_from(["", "Mars/Base", "../../etc/passwd", "UTC\x00", "+02:00", "utc"]),
    st.text(max_size=12),
)


def _fires(schedule: Schedule) -> None:
    """A schedule from a text has a fire time to come (a one-shot may be due now)."""
    if schedule.kind == "once":
        assert schedule.at is not None and schedule.at >= NOW - PAST_TOLERANCE
    else:
        assert schedule.next_after(NOW) is not None, schedule


def _check(schedule: Schedule) -> None:
    for when in (NOW, NOW + timedelta(days=400), NOW - timedelta(days=400)):
        nxt = schedule.next_after(when)
        assert nxt is None or nxt > when
        latest = schedule.latest_at_or_before(when)
        assert latest is None or latest <= when
    again = Schedule.from_record(json.loads(json.dumps(schedule.to_record())))
    assert again == schedule


@FUZZ
@given(text=TEXT, tz=ZONE)
def test_any_text_is_a_schedule_or_a_schedule_error(text: str, tz: Any) -> None:
    try:
        schedule = parse_schedule(text, tz=tz, now=NOW)
    except ScheduleError as exc:
        message = str(exc)
        assert message and "\n" not in message, repr(message)
        return
    _check(schedule)
    _fires(schedule)


# -------------------------------------------------------------------- plain English

DAY_WORDS = [
    ("monday", {1}, False),
    ("mon", {1}, False),
    ("tuesday", {2}, False),
    ("wed", {3}, False),
    ("thu", {4}, False),
    ("friday", {5}, False),
    ("sat", {6}, False),
    ("sunday", {0}, False),
    ("mondays", {1}, True),
    ("fridays", {5}, True),
    ("sundays", {0}, True),
    ("weekday", {1, 2, 3, 4, 5}, True),
    ("weekdays", {1, 2, 3, 4, 5}, True),
    ("weekend", {0, 6}, True),
    ("weekends", {0, 6}, True),
]
SEPARATORS = st.sampled_from([" and ", ", ", ", and ", " , "])


@st.composite
def clock_times(draw: st.DrawFn, minute: int) -> Tuple[str, int]:
    """A T at ``minute`` in one of its spellings, and its hour."""
    hour = draw(st.integers(0, 23))
    if minute == 0 and hour in (0, 12) and draw(st.booleans()):
        return ("midnight" if hour == 0 else "noon"), hour
    style = draw(st.sampled_from(["24h", "ampm", "ampm-space"]))
    if style == "24h":
        text = f"{hour:02d}" if draw(st.booleans()) else str(hour)
        if minute or draw(st.booleans()):
            text += f":{minute:02d}"
        return text, hour
    twelve = hour % 12 or 12
    text = str(twelve) + (f":{minute:02d}" if minute or draw(st.booleans()) else "")
    suffix = "am" if hour < 12 else "pm"
    return text + (" " if style == "ampm-space" else "") + draw(
        st.sampled_from([suffix, suffix.upper()])
    ), hour


@st.composite
def time_lists(draw: st.DrawFn) -> Tuple[str, int, Set[int]]:
    minute = draw(st.integers(0, 59))
    times = draw(st.lists(clock_times(minute), min_size=1, max_size=4))
    text = times[0][0]
    for piece, _hour in times[1:]:
        text += draw(SEPARATORS) + piece
    return text, minute, {hour for _t, hour in times}


@st.composite
def day_lists(draw: st.DrawFn) -> Tuple[str, Set[int], bool]:
    items = draw(st.lists(st.sampled_from(DAY_WORDS), min_size=1, max_size=4))
    text = items[0][0]
    for word, _days, _plural in items[1:]:
        text += draw(SEPARATORS) + word
    days: Set[int] = set().union(*(d for _w, d, _p in items))
    return text, days, any(p for _w, _d, p in items)


@st.composite
def good_english(draw: st.DrawFn) -> Tuple[str, str, Any]:
    """A sentence of the grammar and what it must become: ``("cron", fields)`` with
    ``fields`` the sets (minutes, hours, days of month, days of week), or
    ``("once", (hour, minute))``."""
    times, minute, hours = draw(time_lists())
    form = draw(st.sampled_from(["every day", "daily", "every DAYS", "DAYS", "hourly", "month"]))
    every_days = set(range(7))
    if form in ("every day", "daily"):
        text = f"{form} at {times}"
        fields: Any = ({minute}, hours, "*", every_days)
    elif form == "every DAYS":
        days_text, days, _plural = draw(day_lists())
        text = f"every {days_text} {draw(st.sampled_from(['at ', '']))}{times}"
        fields = ({minute}, hours, "*", days)
    elif form == "DAYS":
        days_text, days, plural = draw(day_lists())
        single = days_text.split()[0].strip(",")
        if not plural:
            # One singular day: a one-shot at one time.
            hour_text, hour = draw(clock_times(minute))
            prefix = draw(st.sampled_from(["", "next ", "today", "tomorrow"]))
            day = prefix if prefix in ("today", "tomorrow") else prefix + single
            return f"{day} at {hour_text}", "once", (hour, minute)
        text = f"{days_text} at {times}"
        fields = ({minute}, hours, "*", days)
    elif form == "hourly":
        text = f"{draw(st.sampled_from(['hourly', 'every hour']))} at :{minute:02d}"
        fields = ({minute}, set(range(24)), "*", every_days)
    else:
        n = draw(st.one_of(st.integers(1, 31), st.just(0)))
        if n == 0:
            day_text, dom = "last day", "L"
        else:
            suffix = "th" if 10 <= n <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
            day_text, dom = (f"{n}{suffix}" if draw(st.booleans()) else str(n)), str(n)
        prefix = draw(st.sampled_from(["every month", "monthly"]))
        text = f"{prefix} on the {day_text} at {times}"
        fields = ({minute}, hours, dom, every_days)
    if draw(st.booleans()):
        text = text.upper() if draw(st.booleans()) else text.title()
    if draw(st.booleans()):
        text += "."
    return text, "cron", fields


def _expand(field: str, low: int, high: int) -> Set[int]:
    values: Set[int] = set()
    for term in field.split(","):
        if term == "*":
            values.update(range(low, high + 1))
        else:
            start, _, end = term.partition("-")
            values.update(range(int(start), int(end or start) + 1))
    return values


ENGLISH_ZONES = st.sampled_from(
    ["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Pacific/Apia"]
)


@FUZZ
@given(sentence=good_english(), tz=ENGLISH_ZONES, now=st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)
))  # fmt: skip
def test_english_sentences_become_what_they_say(
    sentence: Tuple[str, str, Any], tz: str, now: datetime
) -> None:
    text, kind, want = sentence
    schedule = parse_schedule(text, tz=tz, now=now)
    assert (schedule.kind, schedule.text) == (kind, text.strip())
    if kind == "once":
        assert schedule.at is not None and now < schedule.at <= now + timedelta(days=8)
        local = schedule.at.astimezone(ZoneInfo(tz))
        if (local.hour, local.minute) != want:
            # The wall time asked for does not exist that day: the job is at the jump.
            before = (schedule.at - timedelta(minutes=1)).astimezone(ZoneInfo(tz))
            assert before.utcoffset() != local.utcoffset(), (text, local)
    else:
        assert schedule.expr is not None
        minute, hour, dom, month, dow = schedule.expr.split()
        minutes, hours, days_of_month, days_of_week = want
        assert _expand(minute, 0, 59) == minutes
        assert _expand(hour, 0, 23) == hours
        assert dom == days_of_month
        assert _expand(dow, 0, 6) == days_of_week
        assert month == "*"
        assert schedule.next_after(now) is not None
    again = Schedule.from_record(json.loads(json.dumps(schedule.to_record())))
    assert again == schedule


ENGLISH_TOKENS = st.sampled_from(
    [
        "every", "daily", "hourly", "monthly", "today", "tomorrow", "next", "day", "days",
        "hour", "month", "week", "on", "the", "last", "at", "and", ",", ".", ":", "monday",
        "mon", "mondays", "tues", "weekday", "weekdays", "weekend", "weekends", "funday",
        "noon", "midnight", "am", "pm", "9", "09", "9am", "12am", "12pm", "0am", "13pm",
        "9:30", "9:30pm", "17:30", "24:00", "25:00", "9:60", "9:5", ":15", ":00", ":60",
        ":5", "1st", "2nd", "22nd", "31st", "32nd", "1th", "0", "31", "L", "*", "9ish",
        "0900", "9" * 30, "a.m.", "\u00a0", "\t", "\x00", "٣", "Ⅸ", "every 5m", "@daily",
    ]
)  # fmt: skip
ENGLISH_TEXT = st.one_of(
    st.lists(ENGLISH_TOKENS, min_size=1, max_size=8).map(" ".join),
    st.lists(ENGLISH_TOKENS, min_size=1, max_size=5).map("".join),
    st.builds(
        lambda a, b: f"{a} {b}",
        good_english().map(lambda s: s[0]),
        st.lists(ENGLISH_TOKENS, max_size=3).map(" ".join),
    ),
    good_english().map(lambda s: s[0][: len(s[0]) // 2]),  # cut short
)


@FUZZ
@given(text=ENGLISH_TEXT, tz=ZONE)
def test_any_english_text_is_a_schedule_or_a_schedule_error(text: str, tz: Any) -> None:
    try:
        schedule = parse_schedule(text, tz=tz, now=NOW)
    except ScheduleError as exc:
        message = str(exc)
        assert message and "\n" not in message, repr(message)
        return
    _check(schedule)
    _fires(schedule)


RECORD_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=30)
    | st.sampled_from(["2026-03-02T12:00:00+00:00", "0 9 * * 1-5", "every 90s", "UTC", "+90s"]),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def records(draw: st.DrawFn) -> Any:
    """A real record with fields replaced, removed or added, or any JSON value."""
    if draw(st.booleans()):
        return draw(RECORD_VALUES)
    text = draw(st.sampled_from(["every 90s", "0 9 * * 1-5", "+2h", "@daily", "2026-05-01T09:00"]))
    record = dict(parse_schedule(text, tz="Europe/Paris", now=NOW).to_record())
    for key in draw(
        st.lists(
            st.sampled_from(["kind", "text", "tz", "expr", "seconds", "anchor", "at", "x"]),
            max_size=3,
        )
    ):
        action = draw(st.sampled_from(["drop", "set"]))
        if action == "drop":
            record.pop(key, None)
        else:
            record[key] = draw(RECORD_VALUES)
    return record


@FUZZ
@given(record=records())
def test_any_record_is_a_schedule_or_a_schedule_error(record: Any) -> None:
    try:
        schedule = Schedule.from_record(record)
    except ScheduleError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    _check(schedule)
