"""Fuzz the schedule parser and the schedule record reader.

Promise: any text (or any record) becomes a ``Schedule`` or a one-line
``ScheduleError``, never another exception; a ``Schedule`` that came out answers
``next_after`` / ``latest_at_or_before`` without raising and survives its own record.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hermes_cron.errors import ScheduleError
from hermes_cron.schedules import Schedule, parse_schedule
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
