"""Plain-English schedules (SPEC section 4): every example of the table, each form
against its cron expression across DST with absolute instants, the one-shot day
forms with an injected ``now``, the rejections and their messages, the record, and
the CLI end to end.

Transitions used (2026):

* Europe/Paris: spring 03-29 02:00 CET -> 03:00 CEST (01:00Z); autumn 10-25
  03:00 CEST -> 02:00 CET (01:00Z).
* America/New_York: spring 03-08 02:00 EST -> 03:00 EDT (07:00Z); autumn 11-01
  02:00 EDT -> 01:00 EST (06:00Z).
* Australia/Lord_Howe (30-minute shift): spring 10-04 02:00 +10:30 -> 02:30 +11
  (10-03 15:30Z); autumn 04-05 02:00 +11 -> 01:30 +10:30 (04-04 15:00Z).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, List, Tuple
from zoneinfo import ZoneInfo

import pytest

from hermes_cron import english
from hermes_cron.cli import main
from hermes_cron.errors import ScheduleError
from hermes_cron.schedules import Schedule, parse_schedule, preview
from hermes_cron.timeutil import UTC, parse_iso

NOW = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)  # a Wednesday; 14:00 CEST in Paris
FORMS = (
    "expected a cron expression ('*/5 * * * *'), an alias (@daily), an interval "
    "('every 30m'), a delay ('+90s'), an ISO 8601 time ('2026-05-01T09:00') or plain "
    "English ('every day at 9am', 'weekdays at 9am', 'every mon and fri 8:15', "
    "'hourly at :15', 'monthly on the 1st at 9am', 'tomorrow at 9am', 'friday at 5pm')"
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def parse(text: str, tz: str = "UTC", now: datetime = NOW) -> Schedule:
    return parse_schedule(text, tz=tz, now=now)


def fires(text: str, tz: str, after: datetime, count: int) -> List[datetime]:
    return preview(parse(text, tz, now=after), after=after, count=count)


def error_of(text: str, tz: str = "UTC", now: datetime = NOW) -> str:
    with pytest.raises(ScheduleError) as info:
        parse_schedule(text, tz=tz, now=now)
    message = str(info.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------ the SPEC table

SPEC_TABLE = [
    ("every day at 9:30am", "30 9 * * *"),
    ("every monday 9am", "0 9 * * 1"),
    ("weekdays at 9am", "0 9 * * 1-5"),
    ("mondays at 17:00", "0 17 * * 1"),
    ("every mon, wed and fri at 8:15", "15 8 * * 1,3,5"),
    ("hourly at :15", "15 * * * *"),
    ("every month on the 1st at 9am", "0 9 1 * *"),
    ("monthly on the last day at 18:00", "0 18 L * *"),
    ("every day at 9am and 5pm", "0 9,17 * * *"),  # "at 9am and 5pm" = 0 9,17 * * *
]


@pytest.mark.parametrize(("text", "expr"), SPEC_TABLE)
def test_spec_table_examples(text: str, expr: str) -> None:
    sched = parse(text, tz="Europe/Paris")
    assert (sched.kind, sched.expr, sched.text, sched.tz) == ("cron", expr, text, "Europe/Paris")
    assert sched.recurring
    assert sched.to_record() == {"kind": "cron", "text": text, "tz": "Europe/Paris", "expr": expr}


@pytest.mark.parametrize(
    ("text", "expr"),
    [
        # T
        ("every day at 9", "0 9 * * *"),
        ("every day at 9am", "0 9 * * *"),
        ("every day at 9 am", "0 9 * * *"),
        ("every day at 9:30", "30 9 * * *"),
        ("every day at 9:30pm", "30 21 * * *"),
        ("every day at 17:30", "30 17 * * *"),
        ("every day at 09:05", "5 9 * * *"),
        ("every day at 0:00", "0 0 * * *"),
        ("every day at 23:59", "59 23 * * *"),
        ("every day at noon", "0 12 * * *"),
        ("every day at midnight", "0 0 * * *"),
        ("every day at 12am", "0 0 * * *"),
        ("every day at 12pm", "0 12 * * *"),
        ("every day at 12:30am", "30 0 * * *"),
        ("every day at 1pm", "0 13 * * *"),
        ("daily at 9am", "0 9 * * *"),
        ("daily at midnight and noon", "0 0,12 * * *"),
        ("daily at 9am, 1pm and 5pm", "0 9,13,17 * * *"),
        ("daily at 9am, 1pm, and 5pm", "0 9,13,17 * * *"),
        ("daily at 8, 9, 10 and 11", "0 8-11 * * *"),  # a run of hours is a range
        ("daily at 5pm and 9am", "0 9,17 * * *"),  # sorted
        ("daily at 9am and 9:00", "0 9 * * *"),  # the same time twice is once
        ("daily at 9:30am and 5:30pm", "30 9,17 * * *"),
        # DAYS
        ("every sunday at 9", "0 9 * * 0"),
        ("every sun at 9", "0 9 * * 0"),
        ("every sundays at 9", "0 9 * * 0"),
        ("every tue and thu at 9", "0 9 * * 2,4"),
        ("every monday, tuesday and wednesday 9am", "0 9 * * 1-3"),
        ("every weekday at 9", "0 9 * * 1-5"),
        ("every weekdays 9am", "0 9 * * 1-5"),
        ("every weekend at 10am", "0 10 * * 0,6"),  # the canonical weekend: 0,6
        ("every weekends at 10am", "0 10 * * 0,6"),
        ("weekends at 10am", "0 10 * * 0,6"),
        ("weekend at 10am", "0 10 * * 0,6"),
        ("weekday at 9am", "0 9 * * 1-5"),
        ("saturdays and sundays at 10", "0 10 * * 0,6"),
        ("sundays and weekdays at 9", "0 9 * * 0-5"),
        ("fridays and monday at 9", "0 9 * * 1,5"),  # one plural makes it weekly
        ("every weekday and weekend at 7", "0 7 * * *"),  # all seven days: *
        ("every mon,tue,wed,thu,fri,sat,sun at 7", "0 7 * * *"),
        ("every monday at 9am and 5pm", "0 9,17 * * 1"),
        # hourly
        ("every hour at :00", "0 * * * *"),
        ("every hour at :05", "5 * * * *"),
        ("hourly at :59", "59 * * * *"),
        # N
        ("every month on the 2nd at 9", "0 9 2 * *"),
        ("every month on the 3rd at 9", "0 9 3 * *"),
        ("every month on the 11th at 9", "0 9 11 * *"),
        ("every month on the 12th at 9", "0 9 12 * *"),
        ("every month on the 13th at 9", "0 9 13 * *"),
        ("every month on the 21st at 9", "0 9 21 * *"),
        ("every month on the 22nd at 9", "0 9 22 * *"),
        ("every month on the 23rd at 9", "0 9 23 * *"),
        ("every month on the 31st at 9", "0 9 31 * *"),
        ("monthly on the 15 at noon", "0 12 15 * *"),
        ("monthly on the last day at 9am and 6pm", "0 9,18 L * *"),
        # case, spaces, a trailing period
        ("EVERY Monday 9AM", "0 9 * * 1"),
        ("  every   monday    at   9am  ", "0 9 * * 1"),
        ("every monday at 9am.", "0 9 * * 1"),
        ("Weekdays at 9:30 PM.", "30 21 * * 1-5"),
        ("every\tmon ,wed at 9", "0 9 * * 1,3"),
    ],
)
def test_forms(text: str, expr: str) -> None:
    sched = parse(text)
    assert (sched.kind, sched.expr, sched.text) == ("cron", expr, text.strip())


def test_the_words_are_kept_as_given() -> None:
    sched = parse("  Every Monday at 9AM.  ")
    assert sched.text == "Every Monday at 9AM."  # stripped, otherwise as typed
    assert sched.expr == "0 9 * * 1"


# -------------------------------------------------- each form across DST, 3 zones

# (text, expression, zone, after, the absolute instants expected)
DST_CASES: List[Tuple[str, str, str, datetime, List[datetime]]] = [
    # Paris: a fixed time in the spring gap fires once at the jump...
    (
        "every day at 2:30am",
        "30 2 * * *",
        "Europe/Paris",
        utc(2026, 3, 27, 12),
        [utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)],
    ),
    # ...and in the repeated autumn hour once, at the first pass.
    (
        "daily at 2:30",
        "30 2 * * *",
        "Europe/Paris",
        utc(2026, 10, 24, 12),
        [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)],
    ),
    (
        "every sunday at 2:30am",
        "30 2 * * 0",
        "Europe/Paris",
        utc(2026, 3, 20),
        [utc(2026, 3, 22, 1, 30), utc(2026, 3, 29, 1, 0), utc(2026, 4, 5, 0, 30)],
    ),
    (
        "weekdays at 9am and 5pm",
        "0 9,17 * * 1-5",
        "Europe/Paris",
        utc(2026, 3, 27),
        [
            utc(2026, 3, 27, 8),  # Fri, CET
            utc(2026, 3, 27, 16),
            utc(2026, 3, 30, 7),  # Mon, CEST
            utc(2026, 3, 30, 15),
        ],
    ),
    # An hourly job follows real time: no 02:30 on the spring night, two in autumn.
    (
        "hourly at :30",
        "30 * * * *",
        "Europe/Paris",
        utc(2026, 3, 29, 0, 0),
        [utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 1, 30), utc(2026, 3, 29, 2, 30)],
    ),
    (
        "every hour at :30",
        "30 * * * *",
        "Europe/Paris",
        utc(2026, 10, 25, 0, 0),
        [utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30), utc(2026, 10, 25, 2, 30)],
    ),
    (
        "monthly on the last day at 18:00",
        "0 18 L * *",
        "Europe/Paris",
        utc(2026, 2, 1),
        [utc(2026, 2, 28, 17), utc(2026, 3, 31, 16), utc(2026, 4, 30, 16)],
    ),
    # New York
    (
        "every sunday at 2:15am",
        "15 2 * * 0",
        "America/New_York",
        utc(2026, 3, 1, 12),
        [utc(2026, 3, 8, 7, 0), utc(2026, 3, 15, 6, 15)],  # the jump, then 02:15 EDT
    ),
    (
        "every day at 1:30am",
        "30 1 * * *",
        "America/New_York",
        utc(2026, 10, 31, 12),
        [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)],  # 01:30 EDT only, then EST
    ),
    (
        "every mon, wed and fri at 8:15",
        "15 8 * * 1,3,5",
        "America/New_York",
        utc(2026, 3, 6),
        [utc(2026, 3, 6, 13, 15), utc(2026, 3, 9, 12, 15), utc(2026, 3, 11, 12, 15)],
    ),
    (
        "every hour at :45",
        "45 * * * *",
        "America/New_York",
        utc(2026, 11, 1, 4),
        [
            utc(2026, 11, 1, 4, 45),  # 00:45 EDT
            utc(2026, 11, 1, 5, 45),  # 01:45 EDT
            utc(2026, 11, 1, 6, 45),  # 01:45 EST
            utc(2026, 11, 1, 7, 45),  # 02:45 EST
        ],
    ),
    (
        "every month on the last day at 6pm",
        "0 18 L * *",
        "America/New_York",
        utc(2026, 2, 1),
        [utc(2026, 2, 28, 23), utc(2026, 3, 31, 22)],
    ),
    # Lord Howe: a 30-minute shift
    (
        "every day at 2:15",
        "15 2 * * *",
        "Australia/Lord_Howe",
        utc(2026, 10, 2, 12),
        [utc(2026, 10, 2, 15, 45), utc(2026, 10, 3, 15, 30), utc(2026, 10, 4, 15, 15)],
    ),
    (
        "every day at 1:45",
        "45 1 * * *",
        "Australia/Lord_Howe",
        utc(2026, 4, 3, 12),
        [utc(2026, 4, 3, 14, 45), utc(2026, 4, 4, 14, 45), utc(2026, 4, 5, 15, 15)],
    ),
    (
        "weekdays at 9am",
        "0 9 * * 1-5",
        "Australia/Lord_Howe",
        utc(2026, 4, 2, 12),
        [utc(2026, 4, 2, 22), utc(2026, 4, 5, 22, 30), utc(2026, 4, 6, 22, 30)],
    ),
    (
        "hourly at :15",
        "15 * * * *",
        "Australia/Lord_Howe",
        utc(2026, 10, 3, 14),
        [utc(2026, 10, 3, 14, 45), utc(2026, 10, 3, 16, 15), utc(2026, 10, 3, 17, 15)],
    ),
    (
        "every month on the 5th at 1:45am",
        "45 1 5 * *",
        "Australia/Lord_Howe",
        utc(2026, 3, 10),
        [utc(2026, 4, 4, 14, 45), utc(2026, 5, 4, 15, 15)],  # the first pass on 04-05
    ),
]


@pytest.mark.parametrize(
    ("text", "expr", "tz", "after", "expected"),
    DST_CASES,
    ids=[f"{c[2]}: {c[0]}" for c in DST_CASES],
)
def test_across_dst(
    text: str, expr: str, tz: str, after: datetime, expected: List[datetime]
) -> None:
    sched = parse(text, tz, now=after)
    assert sched.expr == expr
    got = preview(sched, after=after, count=len(expected))
    assert got == expected
    # The same machinery as the expression itself, and the same answers both ways.
    assert got == fires(expr, tz, after, len(expected))
    assert sched.latest_at_or_before(expected[-1]) == expected[-1]
    assert sched.next_after(expected[0]) == expected[1]


def test_last_day_of_the_month_is_cronsim_l() -> None:
    # "last day" is cron's L (a cronsim extension our checks accept): Feb has 28 days
    # in 2026 and 29 in 2028.
    assert fires("monthly on the last day at 00:00", "UTC", utc(2026, 1, 15), 3) == [
        utc(2026, 1, 31),
        utc(2026, 2, 28),
        utc(2026, 3, 31),
    ]
    assert fires("monthly on the last day at 00:00", "UTC", utc(2028, 2, 1), 1) == [
        utc(2028, 2, 29)
    ]


def test_the_31st_skips_shorter_months() -> None:
    assert fires("every month on the 31st at 9am", "UTC", utc(2026, 4, 1), 3) == [
        utc(2026, 5, 31, 9),
        utc(2026, 7, 31, 9),
        utc(2026, 8, 31, 9),
    ]


# ------------------------------------------------------------ one-shot day forms


@pytest.mark.parametrize(
    ("text", "tz", "now", "at"),
    [
        # NOW is Wednesday 2026-04-01 14:00 in Paris.
        ("today at 5pm", "Europe/Paris", NOW, utc(2026, 4, 1, 15)),
        ("today at 2:01pm", "Europe/Paris", NOW, utc(2026, 4, 1, 12, 1)),
        ("today at 9am", "Europe/Paris", NOW, utc(2026, 4, 2, 7)),  # passed: next day
        ("today at 2pm", "Europe/Paris", NOW, utc(2026, 4, 2, 12)),  # now is not ahead
        ("today at midnight", "Europe/Paris", NOW, utc(2026, 4, 1, 22)),  # the next 00:00
        ("tomorrow at 9am", "Europe/Paris", NOW, utc(2026, 4, 2, 7)),
        ("tomorrow at 5pm", "Europe/Paris", NOW, utc(2026, 4, 2, 15)),
        ("tomorrow at midnight", "Europe/Paris", NOW, utc(2026, 4, 1, 22)),
        ("friday at 5pm", "Europe/Paris", NOW, utc(2026, 4, 3, 15)),
        ("next friday at 5pm", "Europe/Paris", NOW, utc(2026, 4, 3, 15)),  # next: the same
        ("Fri at 5PM.", "Europe/Paris", NOW, utc(2026, 4, 3, 15)),
        ("wednesday at 5pm", "Europe/Paris", NOW, utc(2026, 4, 1, 15)),  # today, ahead
        ("next wednesday at 5pm", "Europe/Paris", NOW, utc(2026, 4, 1, 15)),
        ("wednesday at 9am", "Europe/Paris", NOW, utc(2026, 4, 8, 7)),  # passed: a week
        ("tuesday at 9am", "Europe/Paris", NOW, utc(2026, 4, 7, 7)),
        ("sunday at noon", "Europe/Paris", NOW, utc(2026, 4, 5, 10)),
        # "today" is the zone's day: in Tokyo it is already Thursday 05:00.
        ("today at 9am", "Asia/Tokyo", utc(2026, 4, 1, 20), utc(2026, 4, 2, 0)),
        ("tomorrow at 9am", "Asia/Tokyo", utc(2026, 4, 1, 20), utc(2026, 4, 3, 0)),
        ("thursday at 9am", "Asia/Tokyo", utc(2026, 4, 1, 20), utc(2026, 4, 2, 0)),
        # A wall time in the spring gap means the jump, as for an ISO one-shot.
        ("tomorrow at 2:30am", "Europe/Paris", utc(2026, 3, 28, 12), utc(2026, 3, 29, 1)),
        ("sunday at 2:30", "Europe/Paris", utc(2026, 3, 28, 12), utc(2026, 3, 29, 1)),
        ("today at 2:30", "Europe/Paris", utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 1)),
        ("tomorrow at 2:30am", "America/New_York", utc(2026, 3, 7, 12), utc(2026, 3, 8, 7)),
        ("tomorrow at 2:15", "Australia/Lord_Howe", utc(2026, 10, 3), utc(2026, 10, 3, 15, 30)),
        # The repeated autumn hour: the first pass.
        ("tomorrow at 2:30", "Europe/Paris", utc(2026, 10, 24, 12), utc(2026, 10, 25, 0, 30)),
        ("sunday at 1:30am", "America/New_York", utc(2026, 10, 30), utc(2026, 11, 1, 5, 30)),
        ("tomorrow at 1:45", "Australia/Lord_Howe", utc(2026, 4, 4), utc(2026, 4, 4, 14, 45)),
    ],
)
def test_day_forms(text: str, tz: str, now: datetime, at: datetime) -> None:
    sched = parse(text, tz, now=now)
    assert (sched.kind, sched.at, sched.text, sched.tz) == ("once", at, text, tz)
    assert not sched.recurring
    assert sched.next_after(now) == at  # always ahead of now
    assert preview(sched, after=now, count=3) == [at]


def test_day_form_resolves_like_the_iso_one_shot() -> None:
    # Same wall time, same zone: the same instant as the naive ISO text.
    for now, date in [(utc(2026, 3, 28, 12), "2026-03-29"), (utc(2026, 10, 24, 12), "2026-10-25")]:
        for clock in ("01:59", "02:00", "02:30", "02:59", "03:00"):
            assert (
                parse(f"sunday at {clock}", "Europe/Paris", now=now).at
                == parse(f"tomorrow at {clock}", "Europe/Paris", now=now).at
                == parse(f"{date}T{clock}", "Europe/Paris", now=now).at
            )


def test_a_day_form_in_the_second_pass_of_a_repeated_hour_waits_for_the_next_day() -> None:
    # 02:15 CET (01:15Z), in the second pass: today's 02:30 resolves to its first pass
    # (00:30Z, gone), as cron and the ISO one-shot do, so the job is tomorrow's 02:30.
    now = utc(2026, 10, 25, 1, 15)
    assert parse("today at 2:30", "Europe/Paris", now=now).at == utc(2026, 10, 26, 1, 30)


# ------------------------------------------------------------------------- record


@pytest.mark.parametrize(
    "text", [t for t, _e in SPEC_TABLE] + ["tomorrow at 9am", "Friday at 5pm.", "today at noon"]
)
def test_record_round_trip(text: str) -> None:
    sched = parse(text, tz="Europe/Paris")
    record = json.loads(json.dumps(sched.to_record()))
    assert record["text"] == text
    again = Schedule.from_record(record)
    assert again == sched
    assert again.next_after(NOW) == sched.next_after(NOW)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (
            {"kind": "cron", "text": "every monday 9am", "tz": "UTC", "expr": "0 9 * * 2"},
            "schedule record: text 'every monday 9am' does not match expr '0 9 * * 2'",
        ),
        (
            {"kind": "cron", "text": "tomorrow at 9am", "tz": "UTC", "expr": "0 9 * * *"},
            "'tomorrow at 9am': a one-time day form, not a recurring schedule",
        ),
        (
            {"kind": "cron", "text": "every day at 25:00", "tz": "UTC", "expr": "0 9 * * *"},
            "'every day at 25:00': 25:00 is not a time of day",
        ),
        (
            {
                "kind": "once",
                "text": "every monday 9am",
                "tz": "UTC",
                "at": "2026-04-06T09:00:00+00:00",
            },
            "schedule record: text 'every monday 9am' is not a one-shot time or delay",
        ),
    ],
)
def test_records_whose_words_do_not_say_what_runs_are_rejected(record: Any, message: str) -> None:
    with pytest.raises(ScheduleError) as info:
        Schedule.from_record(record)
    assert str(info.value) == message


# ---------------------------------------------------------------------- rejections


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("every day at 25:00", "'every day at 25:00': 25:00 is not a time of day"),
        ("every day at 24:00", "'every day at 24:00': 24:00 is not a time of day"),
        ("every day at 9:60", "'every day at 9:60': 9:60 is not a time of day"),
        ("every day at 9:5", "'every day at 9:5': 9:5 is not a time of day"),
        ("every day at 13pm", "'every day at 13pm': 13pm is not a time of day"),
        ("every day at 0am", "'every day at 0am': 0am is not a time of day"),
        ("every day at 9ish", "'every day at 9ish': 9ish is not a time of day"),
        ("every day at 0900", "'every day at 0900': 0900 is not a time of day"),
        ("every day at 9:", "'every day at 9:': 9: is not a time of day"),
        (
            "every funday at 9",
            "'every funday at 9': 'funday' is not a day name "
            "(monday...sunday, mon...sun, weekdays, weekends)",
        ),
        (
            "every monday and funday at 9",
            "'every monday and funday at 9': 'funday' is not a day name "
            "(monday...sunday, mon...sun, weekdays, weekends)",
        ),
        (
            "every day at 9:30 and 5pm",
            "'every day at 9:30 and 5pm': 9:30 and 5pm are not at the same minute; "
            "one job runs at one minute past the hours it names: use two jobs",
        ),
        (
            "weekdays at 9am and 5:30pm",
            "'weekdays at 9am and 5:30pm': 9am and 5:30pm are not at the same minute; "
            "one job runs at one minute past the hours it names: use two jobs",
        ),
        (
            "tomorrow at 9am and 5pm",
            "'tomorrow at 9am and 5pm': a one-shot runs at one time; use two jobs",
        ),
        (
            "monday and friday at 9",
            "'monday and friday at 9': a one-shot names one day; for a weekly job "
            "start with 'every', as in 'every mon, wed and fri at 8:15'",
        ),
        (
            "next mondays at 9",
            "'next mondays at 9': 'mondays' after 'next' is not a day name "
            "(one day, as in 'next friday at 5pm')",
        ),
        (
            "every day 9am",
            "'every day 9am': expected 'at' after 'every day', as in 'every day at 9am'",
        ),
        ("daily 9am", "'daily 9am': expected 'at' after 'daily', as in 'daily at 9am'"),
        ("friday 5pm", "'friday 5pm': expected 'at' after 'friday', as in 'friday at 5pm'"),
        ("weekdays 9am", "'weekdays 9am': expected 'at' after 'weekdays', as in 'weekdays at 9am'"),
        (
            "hourly at 15",
            "'hourly at 15': the minute past the hour is written :MM (:00 to :59), "
            "as in 'hourly at :15'",
        ),
        ("hourly at :60", "'hourly at :60': :60 is not a minute past the hour (:00 to :59)"),
        ("hourly at :5", "'hourly at :5': :5 is not a minute past the hour (:00 to :59)"),
        (
            "every month on the 32nd at 9",
            "'every month on the 32nd at 9': 32nd is not a day of the month "
            "(1st...31st or last day)",
        ),
        (
            "every month on the 0 at 9",
            "'every month on the 0 at 9': 0 is not a day of the month (1st...31st or last day)",
        ),
        (
            "every month on the 1th at 9",
            "'every month on the 1th at 9': 1th is not a day of the month (write 1st)",
        ),
        (
            "every month on the 12nd at 9",
            "'every month on the 12nd at 9': 12nd is not a day of the month (write 12th)",
        ),
        (
            "monthly on the 1st and 15th at 9",
            "'monthly on the 1st and 15th at 9': one day of the month per job; use two jobs",
        ),
        (
            "monthly on 1st at 9",
            "'monthly on 1st at 9': expected 'the' after 'monthly on', "
            "as in 'monthly on the 1st at 9am'",
        ),
        (
            "monthly on the last friday at 9",
            "'monthly on the last friday at 9': expected 'day' after "
            "'monthly on the last', as in 'monthly on the last day at 18:00'",
        ),
        (
            "every day at 9am sharp",
            "'every day at 9am sharp': 'sharp' is not understood after 'every day at 9am'",
        ),
        (
            "every day at 9 a.m.",
            "'every day at 9 a.m.': '.' has no meaning in a plain-English schedule",
        ),
        (
            "at 9am and 5pm",
            "'at 9am and 5pm': the day goes first, as in 'every day at 9am' or 'tomorrow at 9am'",
        ),
    ],
)
def test_near_misses_say_what_is_wrong(text: str, message: str) -> None:
    assert error_of(text) == message


@pytest.mark.parametrize(
    ("text", "missing"),
    [
        ("tomorrow", "'tomorrow': the time is missing after 'tomorrow', as in 'tomorrow at 9am'"),
        ("today at", "'today at': a time (such as 9, 9am, 9:30, 9:30pm, 17:30, noon or midnight)"
         " is missing after 'today at'"),
        ("every monday", "'every monday': the time is missing after 'every monday', "
         "as in 'every monday 9am'"),
        ("every monday and", "'every monday and': a day name (monday...sunday, mon...sun, "
         "weekdays, weekends) is missing after 'every monday and'"),
        ("every hour", "'every hour': 'at :MM' is missing after 'every hour', as in "
         "'every hour at :00' (an interval is 'every 1h')"),
        ("hourly", "'hourly': 'at' is missing after 'hourly', as in 'hourly at :15'"),
        ("daily", "'daily': 'at' is missing after 'daily', as in 'daily at 9am'"),
        ("every month", "'every month': 'on' is missing after 'every month', "
         "as in 'every month on the 1st at 9am'"),
        ("monthly on the", "'monthly on the': the day of the month (1st...31st or last day) "
         "is missing after 'the'"),
        ("next", "'next': a day name is missing after 'next', as in 'next friday at 5pm'"),
        ("weekdays", "'weekdays': 'at' is missing after 'weekdays', as in 'weekdays at 9am'"),
        ("every day at 9am and", "'every day at 9am and': a time (such as 9, 9am, 9:30, "
         "9:30pm, 17:30, noon or midnight) is missing after 'every day at 9am and'"),
    ],
)  # fmt: skip
def test_a_text_that_stops_short_says_what_is_missing_and_lists_the_forms(
    text: str, missing: str
) -> None:
    assert error_of(text) == f"{missing}; {FORMS}"


def test_the_list_of_forms_names_plain_english() -> None:
    assert error_of("hello world") == f"'hello world': not a schedule; {FORMS}"
    assert error_of("every") == (
        "'every': missing interval; expected e.g. every 90s, every 30m, every 2h"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # Not an English attempt: the other forms keep their own messages.
        (
            "every banana",
            "'every banana': bad interval; expected 'every <number><s|m|h|d|w>', "
            "e.g. every 90s, every 30m, every 2h, every 1d, every 1h30m",
        ),
        (
            "every 5 mondays",
            "'every 5 mondays': bad interval; expected 'every <number><s|m|h|d|w>', "
            "e.g. every 90s, every 30m, every 2h, every 1d, every 1h30m",
        ),
        ("mon * * * *", "'mon * * * *': minute 'mon' is not a number 0-59"),
    ],
)
def test_other_forms_keep_their_messages(text: str, message: str) -> None:
    assert error_of(text) == message


@pytest.mark.parametrize(
    ("text", "tz", "expected"),
    [
        ("every 90s", None, ("interval", None)),
        ("every 1 day", None, ("interval", None)),
        ("every 2 hours", None, ("interval", None)),
        ("@daily", None, ("cron", "0 0 * * *")),
        ("0 9 * * MON-FRI", None, ("cron", "0 9 * * MON-FRI")),
        ("+90s", None, ("once", None)),
        ("2026-05-01T09:00", "Europe/Paris", ("once", None)),
    ],
)
def test_existing_forms_are_not_read_as_english(text: str, tz: Any, expected: Any) -> None:
    assert not english.claims(text)
    sched = parse_schedule(text, tz=tz, now=NOW)
    assert (sched.kind, sched.expr) == expected


def test_tokens_record_gluing() -> None:
    tokens = english.tokenize("at 9:30pm, 1st")
    assert [(t.kind, t.text, t.glued) for t in tokens] == [
        ("word", "at", False),
        ("num", "9", False),
        (":", ":", True),
        ("num", "30", True),
        ("word", "pm", True),
        (",", ",", True),
        ("num", "1", False),
        ("word", "st", True),
    ]


def test_a_huge_number_is_a_message_not_a_crash() -> None:
    text = "every day at " + "9" * 5000
    assert error_of(text) == f"'{text}': {'9' * 5000} is not a time of day"


# ----------------------------------------------------------------------------- CLI


class CLI:
    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *argv: str) -> Tuple[int, str, str]:
        self.capsys.readouterr()
        code = main(list(argv))
        out, err = self.capsys.readouterr()
        return code, out, err

    def json(self, *argv: str) -> Any:
        code, out, err = self("--json", *argv)
        assert code == 0, err
        return json.loads(out)


@pytest.fixture
def cli(home: Path, capsys: pytest.CaptureFixture[str]) -> CLI:
    return CLI(capsys)


def test_cli_add_every_monday_9am(cli: CLI, home: Path) -> None:
    code, out, err = cli("add", "every monday 9am", "--tz", "Europe/Paris", "--", "echo", "hi")
    assert code == 0 and err == ""
    job_id = out.strip()
    record = cli.json("show", job_id)
    assert record["command"] == ["echo", "hi"]
    assert record["schedule"] == {
        "kind": "cron",
        "text": "every monday 9am",
        "tz": "Europe/Paris",
        "expr": "0 9 * * 1",
    }
    # Whatever today is, the next run is a Monday at 09:00 in Paris.
    local = parse_iso(record["next_run_at"]).astimezone(ZoneInfo("Europe/Paris"))
    assert (local.strftime("%a %H:%M:%S")) == "Mon 09:00:00"
    code, out, _ = cli("show", job_id)
    assert code == 0
    assert "schedule:    every monday 9am = 0 9 * * 1 (cron, Europe/Paris)\n" in out
    stored = json.loads((home / "cron" / "jobs.json").read_text())
    assert stored["jobs"][0]["schedule"]["expr"] == "0 9 * * 1"


def test_cli_add_words_as_separate_arguments(cli: CLI) -> None:
    job = cli.json("add", "every", "mon,", "wed", "and", "fri", "at", "8:15", "--prompt", "p")
    assert job["schedule"]["text"] == "every mon, wed and fri at 8:15"
    assert job["schedule"]["expr"] == "15 8 * * 1,3,5"


def test_cli_repeat_works_with_english(cli: CLI) -> None:
    job = cli.json("add", "weekdays at 9am", "--repeat", "3", "--tz", "UTC", "--", "true")
    assert job["repeat"] == {"times": 3, "completed": 0}
    assert job["schedule"]["expr"] == "0 9 * * 1-5"
    # A day form is a one-shot: repeat does not apply to it.
    code, out, err = cli("add", "tomorrow at 9am", "--repeat", "2", "--", "true")
    assert code == 2 and out == "" and "repeat" in err


def test_cli_add_a_day_form_is_a_one_shot(cli: CLI) -> None:
    before = datetime.now(UTC)
    job = cli.json("add", "tomorrow at 9am", "--tz", "UTC", "--", "true")
    assert job["schedule"]["kind"] == "once" and job["schedule"]["text"] == "tomorrow at 9am"
    at = parse_iso(job["schedule"]["at"])
    assert parse_iso(job["next_run_at"]) == at
    # Tomorrow (in UTC) at 09:00, whenever the test runs.
    assert at.astimezone(UTC).time().isoformat() == "09:00:00"
    assert before.date() + timedelta(days=1) <= at.date() <= before.date() + timedelta(days=2)


def test_cli_next_prints_the_expression_next_to_the_words(cli: CLI) -> None:
    argv = ["next", "every monday 9am", "--tz", "Europe/Paris", "--after", "2026-03-27T12:00"]
    code, out, err = cli(*argv, "--count", "2")
    assert (code, err) == (0, "")
    assert out == (
        "schedule: every monday 9am = 0 9 * * 1 (cron, Europe/Paris)\n"
        "  Mon 2026-03-30 09:00:00 CEST  2026-03-30T09:00:00+02:00\n"
        "  Mon 2026-04-06 09:00:00 CEST  2026-04-06T09:00:00+02:00\n"
    )
    # --json keeps its shape: an array of ISO times.
    assert cli.json(*argv, "--count", "2") == [
        "2026-03-30T09:00:00+02:00",
        "2026-04-06T09:00:00+02:00",
    ]
    code, out, _ = cli("next", "0 9 * * 1", "--tz", "UTC", "--after", "2026-03-27T12:00")
    assert out.startswith("schedule: 0 9 * * 1 (cron, UTC)\n")  # the words are the expr


def test_cli_next_a_day_form(cli: CLI) -> None:
    code, out, _ = cli(
        "next", "friday at 5pm", "--tz", "Europe/Paris", "--after", "2026-04-01T14:00"
    )
    assert code == 0
    assert out == (
        "schedule: friday at 5pm (once, Europe/Paris)\n"
        "  Fri 2026-04-03 17:00:00 CEST  2026-04-03T17:00:00+02:00\n"
    )


def test_cli_rejects_with_one_line_and_writes_nothing(cli: CLI, home: Path) -> None:
    code, out, err = cli("add", "every funday at 9", "--", "true")
    assert code == 2 and out == ""
    assert err == (
        "hermes-cron: 'every funday at 9': 'funday' is not a day name "
        "(monday...sunday, mon...sun, weekdays, weekends)\n"
    )
    assert not (home / "cron" / "jobs.json").exists() or cli.json("list") == []


def test_a_day_form_past_the_end_of_the_calendar_is_a_message() -> None:
    end = utc(9999, 12, 31, 20)  # already 10:00 on 1 January 10000 in Kiritimati
    assert error_of("tomorrow at 9", tz="Pacific/Kiritimati", now=end) == (
        "'tomorrow at 9': the time is out of range"
    )
