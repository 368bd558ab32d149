"""Schedules: every accepted form, the exact error messages, intervals, one-shots,
the Vixie day rule, and the stored record (DST cases: test_schedules_dst.py)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any, Dict

import pytest

from hermes_cron.errors import ScheduleError, UsageError
from hermes_cron.schedules import (
    ALIASES,
    PAST_TOLERANCE,
    Schedule,
    parse_schedule,
    preview,
)
from hermes_cron.timeutil import UTC

NOW = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)  # a Wednesday


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def parse(text: str, tz: str | None = None, now: datetime = NOW) -> Schedule:
    return parse_schedule(text, tz=tz, now=now)


def error_of(text: str, tz: str | None = None, now: datetime = NOW) -> str:
    with pytest.raises(ScheduleError) as info:
        parse_schedule(text, tz=tz, now=now)
    message = str(info.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------------------- forms


class TestCronForms:
    @pytest.mark.parametrize(
        ("text", "expr"),
        [
            ("*/5 * * * *", "*/5 * * * *"),
            ("  0   9 * *   1-5 ", "0 9 * * 1-5"),  # whitespace is normalised
            ("0 9 * * MON-FRI", "0 9 * * MON-FRI"),
            ("0 9 * jan,jul sun", "0 9 * jan,jul sun"),
            ("15,45 8-18/2 1,15 * *", "15,45 8-18/2 1,15 * *"),
            ("0 0 L * *", "0 0 L * *"),  # cronsim extension: last day of the month
            ("0 0 LW * *", "0 0 LW * *"),
            ("0 0 * * 5L", "0 0 * * 5L"),
            ("0 0 * * FRI#2", "0 0 * * FRI#2"),
            ("0 0 * * 7", "0 0 * * 7"),  # 7 is Sunday too
            ("0 0 31 jan,apr *", "0 0 31 jan,apr *"),
        ],
    )
    def test_parses(self, text: str, expr: str) -> None:
        sched = parse(text)
        assert (sched.kind, sched.expr, sched.tz, sched.text) == ("cron", expr, "UTC", text.strip())
        assert sched.recurring
        assert sched.next_after(NOW) is not None

    @pytest.mark.parametrize("alias", sorted(ALIASES))
    def test_aliases_expand(self, alias: str) -> None:
        sched = parse(alias)
        assert sched.expr == ALIASES[alias]
        assert sched.text == alias
        assert parse(alias.upper()).expr == ALIASES[alias]

    def test_alias_table(self) -> None:
        assert ALIASES == {
            "@yearly": "0 0 1 1 *",
            "@annually": "0 0 1 1 *",
            "@monthly": "0 0 1 * *",
            "@weekly": "0 0 * * 0",
            "@daily": "0 0 * * *",
            "@midnight": "0 0 * * *",
            "@hourly": "0 * * * *",
        }

    def test_evaluated_in_the_zone(self) -> None:
        sched = parse("0 9 * * *", tz="Asia/Tokyo")
        assert sched.tz == "Asia/Tokyo"
        assert sched.next_after(NOW) == utc(2026, 4, 2, 0, 0)  # 09:00 +09:00
        assert parse("0 9 * * *").next_after(NOW) == utc(2026, 4, 2, 9, 0)  # tz None: UTC

    def test_times_are_utc_and_aware(self) -> None:
        fire = parse("30 9 * * *", tz="America/New_York").next_after(NOW)
        assert fire == utc(2026, 4, 1, 13, 30)
        assert fire is not None and fire.utcoffset() == timedelta(0)

    def test_a_stepped_range_of_one_value_is_that_value(self) -> None:
        # Vixie: 53-53/2 is {53}; cronsim alone would read it as 53/2 = {53, 55, 57, 59}.
        sched = parse("53-53/2 * * * *")
        assert sched.expr == "53-53/2 * * * *"
        assert preview(sched, after=NOW, count=2) == [
            utc(2026, 4, 1, 12, 53),
            utc(2026, 4, 1, 13, 53),
        ]

    def test_special_fields(self) -> None:
        assert preview(parse("0 0 L * *"), after=NOW, count=2) == [
            utc(2026, 4, 30),
            utc(2026, 5, 31),
        ]
        assert parse("0 0 * * 5L").next_after(NOW) == utc(2026, 4, 24)  # last Friday
        assert parse("0 0 * * 5#2").next_after(NOW) == utc(2026, 4, 10)  # second Friday


class TestIntervalForms:
    @pytest.mark.parametrize(
        ("text", "seconds"),
        [
            ("every 90s", 90),
            ("every 30m", 1800),
            ("every 2h", 7200),
            ("every 1d", 86400),
            ("every 1w", 604800),
            ("every 1s", 1),
            ("every 90 seconds", 90),
            ("every 1 second", 1),
            ("every 30 minutes", 1800),
            ("every 5 mins", 300),
            ("every 2 hours", 7200),
            ("every 1 day", 86400),
            ("every 3 days", 259200),
            ("every 1h30m", 5400),
            ("every 1h 30m 15s", 5415),
            ("Every 10S", 10),
        ],
    )
    def test_parses(self, text: str, seconds: int) -> None:
        sched = parse(text)
        assert (sched.kind, sched.seconds, sched.anchor, sched.text) == (
            "interval",
            seconds,
            NOW,
            text,
        )
        assert sched.recurring

    def test_anchor_is_now_in_utc(self) -> None:
        local_now = NOW.astimezone(timezone(timedelta(hours=5, minutes=30)))
        sched = parse("every 1h", now=local_now)
        assert sched.anchor == NOW and sched.anchor.utcoffset() == timedelta(0)


class TestOnceForms:
    @pytest.mark.parametrize(
        ("text", "delay"),
        [
            ("+90s", 90),
            ("90s", 90),
            ("30m", 1800),
            ("+30m", 1800),
            ("2h", 7200),
            ("1d", 86400),
            ("+1h30m", 5400),
            ("+ 45 minutes", 2700),
            ("10 seconds", 10),
            ("in 30m", 1800),
            ("in 2 hours", 7200),
            ("In 1h30m", 5400),
        ],
    )
    def test_relative(self, text: str, delay: int) -> None:
        sched = parse(text)
        assert (sched.kind, sched.at) == ("once", NOW + timedelta(seconds=delay))
        assert not sched.recurring

    def test_relative_keeps_microseconds(self) -> None:
        now = NOW.replace(microsecond=123456)
        assert parse("+90s", now=now).at == now + timedelta(seconds=90)

    @pytest.mark.parametrize(
        ("text", "tz", "at"),
        [
            ("2026-05-01T09:00:00+02:00", None, utc(2026, 5, 1, 7)),
            ("2026-05-01T09:00+0200", None, utc(2026, 5, 1, 7)),
            ("2026-05-01T09:00Z", "Asia/Tokyo", utc(2026, 5, 1, 9)),
            ("2026-05-01T09:00", None, utc(2026, 5, 1, 9)),  # naive: the zone, UTC here
            ("2026-05-01T09:00", "Europe/Berlin", utc(2026, 5, 1, 7)),
            ("2026-05-01 09:00", "Europe/Berlin", utc(2026, 5, 1, 7)),
            ("2026-05-01 09:00:30.250000", None, utc(2026, 5, 1, 9, 0, 30, 250000)),
            ("2026-05-01", "America/New_York", utc(2026, 5, 1, 4)),
        ],
    )
    def test_absolute(self, text: str, tz: str | None, at: datetime) -> None:
        sched = parse(text, tz=tz)
        assert (sched.kind, sched.at, sched.tz) == ("once", at, tz or "UTC")

    def test_naive_time_in_spring_gap_means_the_jump(self) -> None:
        # Like a cron job: 02:30 does not exist on 2026-03-29 in Berlin; 03:00 CEST does.
        sched = parse("2026-03-29T02:30", tz="Europe/Berlin", now=utc(2026, 3, 1))
        assert sched.at == utc(2026, 3, 29, 1, 0)

    def test_naive_time_in_repeated_hour_means_the_first_pass(self) -> None:
        sched = parse("2026-10-25T02:30", tz="Europe/Berlin", now=utc(2026, 10, 1))
        assert sched.at == utc(2026, 10, 25, 0, 30)  # 02:30 CEST, not 02:30 CET

    def test_a_time_just_past_is_accepted_and_kept(self) -> None:
        # Typed to the minute for "now": still a valid job, due at once.
        text = "2026-04-01T11:59:30"
        sched = parse(text)
        assert sched.at == utc(2026, 4, 1, 11, 59, 30)
        assert sched.next_after(NOW) is None  # its first due time is ``at`` itself
        assert sched.latest_at_or_before(NOW) == sched.at

    def test_past_tolerance_bound(self) -> None:
        edge = NOW - PAST_TOLERANCE
        assert parse(edge.isoformat()).at == edge
        late = edge - timedelta(seconds=1)
        assert error_of(late.isoformat()) == (
            f"'{late.isoformat()}': 2026-04-01T11:58:59+00:00 is in the past"
        )


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("61 * * * *", "'61 * * * *': minute 61 is out of range 0-59"),
        ("0 24 * * *", "'0 24 * * *': hour 24 is out of range 0-23"),
        ("0 0 0 * *", "'0 0 0 * *': day-of-month 0 is out of range 1-31"),
        ("0 0 * 13 *", "'0 0 * 13 *': month 13 is out of range 1-12"),
        ("0 0 * * 8", "'0 0 * * 8': day-of-week 8 is out of range 0-7"),
        ("1-70 * * * *", "'1-70 * * * *': minute 70 is out of range 0-59"),
        (
            "* * * *",
            "'* * * *': a cron expression has 5 fields "
            "(minute hour day-of-month month day-of-week), got 4",
        ),
        (
            "0 0 * * * * *",
            "'0 0 * * * * *': 7 fields: a seconds or year field is not supported; "
            "use 5 fields (minute hour day-of-month month day-of-week)",
        ),
        (
            "*/10 * * * * *",
            "'*/10 * * * * *': 6 fields: a seconds or year field is not supported; "
            "use 5 fields (minute hour day-of-month month day-of-week)",
        ),
        (
            "@fortnightly",
            "'@fortnightly': unknown alias; use one of @annually, @daily, @hourly, "
            "@midnight, @monthly, @weekly, @yearly or a 5-field expression",
        ),
        ("@reboot", "'@reboot': @reboot is not supported (jobs run on a schedule, not at boot)"),
        ("x * * * *", "'x * * * *': minute 'x' is not a number 0-59"),
        ("0 0 * * FUN", "'0 0 * * FUN': day-of-week 'FUN' is not a number 0-7 or a name SUN-SAT"),
        (
            "0 0 * JANUARY *",
            "'0 0 * JANUARY *': month 'JANUARY' is not a number 1-12 or a name JAN-DEC",
        ),
        (
            "0 22-2 * * *",
            "'0 22-2 * * *': hour range '22-2' runs backwards "
            "(cron ranges do not wrap; use a list such as 22-23,0-2)",
        ),
        ("*/0 * * * *", "'*/0 * * * *': minute step '*/0': the step must be at least 1"),
        ("*/x * * * *", "'*/x * * * *': minute step 'x' is not a number"),
        ("1,,2 * * * *", "'1,,2 * * * *': empty list item in minute field '1,,2'"),
        ("0 0 ? * *", "'0 0 ? * *': '?' is not supported in the day-of-month field; use '*'"),
        (
            "0 0 * * 5#6",
            "'0 0 * * 5#6': day-of-week '5#6': the week after '#' must be 1-5, as in 5#2",
        ),
        (
            "0 0 * * FRIL",
            "'0 0 * * FRIL': day-of-week 'FRIL': 'L' follows a weekday number 0-7, as in 5L",
        ),
        ("0 0 * * 1.5", "'0 0 * * 1.5': day-of-week field '1.5' has a character cron does not use"),
        (
            "0 0 30 2 *",
            "'0 0 30 2 *': day-of-month 30 never occurs in the selected months "
            "(the longest has 29 days)",
        ),
        (
            "0 0 31 4,6 *",
            "'0 0 31 4,6 *': day-of-month 31 never occurs in the selected months "
            "(the longest has 30 days)",
        ),
        ("0 0 */40 2 1#5", "'0 0 */40 2 1#5': the expression never fires"),
        ("every 0s", "'every 0s': an interval must be at least 1 second"),
        ("every 0 minutes", "'every 0 minutes': an interval must be at least 1 second"),
        ("every -5m", "'every -5m': an interval cannot be negative"),
        ("every", "'every': missing interval; expected e.g. every 90s, every 30m, every 2h"),
        (
            "every banana",
            "'every banana': bad interval; expected 'every <number><s|m|h|d|w>', "
            "e.g. every 90s, every 30m, every 2h, every 1d, every 1h30m",
        ),
        (
            "every 1.5h",
            "'every 1.5h': bad interval; expected 'every <number><s|m|h|d|w>', "
            "e.g. every 90s, every 30m, every 2h, every 1d, every 1h30m",
        ),
        (
            "every 1M",
            "'every 1M': bad interval; expected 'every <number><s|m|h|d|w>', "
            "e.g. every 90s, every 30m, every 2h, every 1d, every 1h30m",
        ),
        ("every 40000d", "'every 40000d': an interval is longer than 100 years"),
        ("+0s", "'+0s': a delay must be at least 1 second"),
        ("-5m", "'-5m': a delay cannot be negative; use e.g. +90s"),
        ("+soon", "'+soon': bad delay; expected e.g. +90s, +30m, +2h, +1d"),
        ("in a while", "'in a while': bad delay; expected e.g. in 30m, in 2 hours, in 1h30m"),
        ("2020-01-01T00:00", "'2020-01-01T00:00': 2020-01-01T00:00:00+00:00 is in the past"),
        ("2026-13-01", "'2026-13-01': not a valid ISO 8601 time (month must be in 1..12)"),
        (
            "2026-05-01Tnine",
            "'2026-05-01Tnine': not a valid ISO 8601 time "
            "(expected e.g. 2026-05-01T09:00 or 2026-05-01T09:00+02:00)",
        ),
    ],
)
def test_error_messages(text: str, message: str) -> None:
    assert error_of(text) == message


@pytest.mark.parametrize("text", ["hello world", "tomorrow", "90", "whenever", "*", "   "])
def test_garbage_says_what_is_expected(text: str) -> None:
    message = error_of(text)
    assert message.startswith(f"'{text.strip()}': ") or message.startswith("'   ': empty schedule")
    assert "expected a cron expression ('*/5 * * * *'), an alias (@daily), an interval " in message


def test_messages_stay_on_one_line() -> None:
    assert error_of("0\n0") == (
        "'0\\n0': a cron expression has 5 fields "
        "(minute hour day-of-month month day-of-week), got 2"
    )
    assert error_of("9" * 300 + " * * * *").endswith(": the minute field is too long")


def test_unknown_zone_is_named() -> None:
    assert error_of("@daily", tz="Mars/Olympus") == (
        "unknown time zone 'Mars/Olympus' (expected an IANA name such as Europe/Berlin)"
    )
    # A fixed offset is not a zone: schedules keep IANA names only.
    assert "unknown time zone '+02:00'" in error_of("0 9 * * *", tz="+02:00")
    assert "not an IANA time zone name" in error_of("0 9 * * *", tz="localtime")


def test_schedule_error_is_a_usage_error() -> None:
    with pytest.raises(UsageError) as info:
        parse("61 * * * *")
    assert info.value.exit_code == 2


def test_non_text_is_rejected() -> None:
    with pytest.raises(ScheduleError, match="a schedule must be text"):
        parse_schedule(5, now=NOW)  # type: ignore[arg-type]


@pytest.mark.parametrize("call", ["parse", "next_after", "latest", "preview"])
def test_naive_datetimes_are_a_programming_error(call: str) -> None:
    naive = datetime(2026, 4, 1, 12)
    sched = parse("@daily")
    with pytest.raises(ValueError, match="timezone-aware"):
        if call == "parse":
            parse_schedule("@daily", now=naive)
        elif call == "next_after":
            sched.next_after(naive)
        elif call == "latest":
            sched.latest_at_or_before(naive)
        else:
            preview(sched, after=naive, count=1)


# ----------------------------------------------------------------- Vixie day rule


class TestVixieDayRule:
    # April 2026: the 13th is a Monday; the Fridays are the 3rd, 10th, 17th and 24th.
    AFTER = utc(2026, 4, 1)

    def days(self, expr: str, count: int = 6) -> list:
        return [t.day for t in preview(parse(expr), after=self.AFTER, count=count)]

    def test_both_restricted_means_or(self) -> None:
        assert self.days("0 0 13 * 5") == [3, 10, 13, 17, 24, 1]  # then Friday May 1st

    def test_day_of_week_only(self) -> None:
        assert self.days("0 0 * * 5") == [3, 10, 17, 24, 1, 8]

    def test_day_of_month_only(self) -> None:
        times = preview(parse("0 0 13 * *"), after=self.AFTER, count=3)
        assert times == [utc(2026, 4, 13), utc(2026, 5, 13), utc(2026, 6, 13)]

    def test_a_field_starting_with_star_means_and(self) -> None:
        # "*/1" is every day, but it starts with "*": AND, so Fridays only...
        assert self.days("0 0 */1 * 5") == [3, 10, 17, 24, 1, 8]
        # ...and the 13th only when day-of-week is "*/1".
        assert self.days("0 0 13 * */1", 2) == [13, 13]
        # A Friday the 13th with both fields restricted is still just OR.
        assert utc(2026, 2, 13) in preview(parse("0 0 13 * 5"), after=utc(2026, 2, 1), count=3)


# ----------------------------------------------------------------------- intervals


class TestInterval:
    ANCHOR = utc(2026, 4, 1, 12, 0, 0, 250000)

    def sched(self, seconds: int = 90) -> Schedule:
        return Schedule(
            kind="interval", text=f"every {seconds}s", tz="UTC", seconds=seconds, anchor=self.ANCHOR
        )

    def test_fire_times_are_anchor_plus_k_steps(self) -> None:
        sched, step = self.sched(), timedelta(seconds=90)
        assert sched.next_after(self.ANCHOR) == self.ANCHOR + step  # k >= 1: not the anchor
        assert sched.next_after(self.ANCHOR - timedelta(days=3)) == self.ANCHOR + step
        assert sched.next_after(self.ANCHOR + step) == self.ANCHOR + 2 * step
        just_before = self.ANCHOR + 2 * step - timedelta(microseconds=1)
        assert sched.next_after(just_before) == self.ANCHOR + 2 * step

    def test_no_drift_after_late_runs(self) -> None:
        # Each "run" finishes late by a varying amount; the schedule stays on the grid.
        sched, step = self.sched(), timedelta(seconds=90)
        due = sched.next_after(self.ANCHOR)
        assert due is not None
        for lateness in (1, 37, 89, 200, 3, 1000):
            finished = due + timedelta(seconds=lateness, microseconds=777)
            due = sched.next_after(finished)
            assert due is not None and due > finished
            assert (due - self.ANCHOR) % step == timedelta(0)
            assert due - step <= finished
        assert due.microsecond == 250000

    def test_far_future_is_exact(self) -> None:
        sched = self.sched(7)
        far = self.ANCHOR + timedelta(days=365 * 50, microseconds=3)
        nxt = sched.next_after(far)
        assert nxt is not None
        assert (nxt - self.ANCHOR) % timedelta(seconds=7) == timedelta(0)
        assert far < nxt <= far + timedelta(seconds=7)

    def test_latest_at_or_before(self) -> None:
        sched, step = self.sched(), timedelta(seconds=90)
        assert sched.latest_at_or_before(self.ANCHOR) is None  # the anchor is not a fire
        assert sched.latest_at_or_before(self.ANCHOR + step - timedelta(microseconds=1)) is None
        assert sched.latest_at_or_before(self.ANCHOR + step) == self.ANCHOR + step
        when = self.ANCHOR + 1000 * step + timedelta(seconds=89)
        assert sched.latest_at_or_before(when) == self.ANCHOR + 1000 * step
        assert sched.latest_at_or_before(self.ANCHOR - timedelta(days=1)) is None

    def test_preview(self) -> None:
        sched, step = self.sched(), timedelta(seconds=90)
        assert preview(sched, after=self.ANCHOR + step, count=3) == [
            self.ANCHOR + 2 * step,
            self.ANCHOR + 3 * step,
            self.ANCHOR + 4 * step,
        ]
        assert preview(sched, after=self.ANCHOR, count=0) == []

    def test_interval_follows_elapsed_time_across_dst(self) -> None:
        sched = parse("every 1d", tz="Europe/Berlin", now=utc(2026, 3, 28, 12))
        assert preview(sched, after=utc(2026, 3, 28, 12), count=2) == [
            utc(2026, 3, 29, 12),
            utc(2026, 3, 30, 12),
        ]


# ------------------------------------------------------------------------ one-shots


def test_once_fire_times() -> None:
    sched = parse("+90s")
    at = NOW + timedelta(seconds=90)
    assert sched.next_after(NOW) == at
    assert sched.next_after(at) is None
    assert sched.latest_at_or_before(at - timedelta(microseconds=1)) is None
    assert sched.latest_at_or_before(at) == at
    assert preview(sched, after=NOW, count=5) == [at]
    assert preview(sched, after=at, count=5) == []


# ----------------------------------------------------------------------- cron calls


def test_cron_next_after_is_strict_and_latest_is_inclusive() -> None:
    sched = parse("*/15 * * * *")
    fire = utc(2026, 4, 1, 12, 15)
    assert sched.next_after(utc(2026, 4, 1, 12, 0)) == fire
    assert sched.next_after(fire - timedelta(microseconds=1)) == fire
    assert sched.next_after(fire) == utc(2026, 4, 1, 12, 30)
    assert sched.latest_at_or_before(fire) == fire
    assert sched.latest_at_or_before(fire - timedelta(microseconds=1)) == utc(2026, 4, 1, 12)
    assert sched.latest_at_or_before(fire + timedelta(seconds=59, microseconds=9)) == fire


def test_cron_answers_are_consistent_in_any_order() -> None:
    # The per-expression memo must never answer from a stale window.
    sched = parse("7 */3 * * *", tz="Europe/Berlin")
    probes = [NOW + timedelta(minutes=37 * i) for i in range(60)]
    forward = [sched.next_after(t) for t in probes]
    latest = [sched.latest_at_or_before(t) for t in probes]
    for t, nxt, last in reversed(list(zip(probes, forward, latest))):
        assert sched.next_after(t) == nxt
        assert sched.latest_at_or_before(t) == last
        assert last is not None and nxt is not None and last <= t < nxt
        assert sched.next_after(last) == nxt


def test_preview_is_strictly_increasing_and_counts() -> None:
    times = preview(parse("*/20 9-10 * * 1-5", tz="Europe/Berlin"), after=NOW, count=10)
    assert len(times) == 10
    assert all(a < b for a, b in zip(times, times[1:]))
    assert times[0] == utc(2026, 4, 2, 7, 0)  # Thursday 09:00 CEST
    with pytest.raises(ValueError):
        preview(parse("@daily"), after=NOW, count=-1)


# -------------------------------------------------------------------------- records


@pytest.mark.parametrize(
    ("text", "tz", "record"),
    [
        (
            "@daily",
            "Europe/Berlin",
            {"kind": "cron", "text": "@daily", "tz": "Europe/Berlin", "expr": "0 0 * * *"},
        ),
        (
            "0  9 * * 1-5",
            None,
            {"kind": "cron", "text": "0  9 * * 1-5", "tz": "UTC", "expr": "0 9 * * 1-5"},
        ),
        (
            "every 90s",
            None,
            {
                "kind": "interval",
                "text": "every 90s",
                "tz": "UTC",
                "seconds": 90,
                "anchor": "2026-04-01T12:00:00.000001+00:00",
            },
        ),
        (
            "2026-05-01T09:00",
            "America/New_York",
            {
                "kind": "once",
                "text": "2026-05-01T09:00",
                "tz": "America/New_York",
                "at": "2026-05-01T13:00:00+00:00",
            },
        ),
        (
            "+90s",
            None,
            {"kind": "once", "text": "+90s", "tz": "UTC", "at": "2026-04-01T12:01:30.000001+00:00"},
        ),
    ],
)
def test_record_round_trip(text: str, tz: str | None, record: Dict[str, Any]) -> None:
    sched = parse_schedule(text, tz=tz, now=NOW + timedelta(microseconds=1))
    assert sched.to_record() == record
    again = Schedule.from_record(json.loads(json.dumps(sched.to_record())))
    assert again == sched
    assert again.to_record() == record


def test_from_record_accepts_other_offsets_and_normalises() -> None:
    sched = Schedule.from_record(
        {"kind": "once", "text": "+1h", "tz": "UTC", "at": "2026-05-01T11:00:00+02:00"}
    )
    assert sched.at == utc(2026, 5, 1, 9)
    assert sched.to_record()["at"] == "2026-05-01T09:00:00+00:00"


GOOD_CRON = {"kind": "cron", "text": "0 9 * * *", "tz": "UTC", "expr": "0 9 * * *"}
GOOD_INTERVAL = {
    "kind": "interval",
    "text": "every 90s",
    "tz": "UTC",
    "seconds": 90,
    "anchor": "2026-04-01T12:00:00+00:00",
}
GOOD_ONCE = {"kind": "once", "text": "+90s", "tz": "UTC", "at": "2026-04-01T12:01:30+00:00"}


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ("0 9 * * *", "schedule record must be an object, got str"),
        (None, "schedule record must be an object, got NoneType"),
        (
            {**GOOD_CRON, "kind": "weekly"},
            "schedule record: unknown kind 'weekly' (one of cron, interval, once)",
        ),
        (
            {k: v for k, v in GOOD_CRON.items() if k != "expr"},
            "schedule record: missing field 'expr'",
        ),
        ({k: v for k, v in GOOD_CRON.items() if k != "tz"}, "schedule record: missing field 'tz'"),
        (
            {**GOOD_CRON, "seconds": 90},
            "schedule record: unexpected field 'seconds' for a cron schedule",
        ),
        (
            {**GOOD_CRON, "tz": "Mars/Olympus"},
            "unknown time zone 'Mars/Olympus' (expected an IANA name such as Europe/Berlin)",
        ),
        ({**GOOD_CRON, "tz": 3}, "schedule record: 'tz' must be an IANA zone name, got 3"),
        ({**GOOD_CRON, "text": ""}, "schedule record: 'text' must be a non-empty string, got ''"),
        ({**GOOD_CRON, "expr": 5}, "schedule record: 'expr' must be a string, got 5"),
        (
            {**GOOD_CRON, "text": "61 9 * * *", "expr": "61 9 * * *"},
            "'61 9 * * *': minute 61 is out of range 0-59",
        ),
        (
            {**GOOD_CRON, "expr": "0 10 * * *"},
            "schedule record: text '0 9 * * *' does not match expr '0 10 * * *'",
        ),
        (
            {**GOOD_CRON, "text": "@hourly"},
            "schedule record: text '@hourly' does not match expr '0 9 * * *'",
        ),
        (
            {**GOOD_INTERVAL, "seconds": "90"},
            "an interval needs 'seconds', a whole number, got '90'",
        ),
        (
            {**GOOD_INTERVAL, "seconds": 90.0},
            "an interval needs 'seconds', a whole number, got 90.0",
        ),
        (
            {**GOOD_INTERVAL, "seconds": True},
            "an interval needs 'seconds', a whole number, got True",
        ),
        ({**GOOD_INTERVAL, "seconds": 0}, "'every 90s': an interval must be at least 1 second"),
        (
            {**GOOD_INTERVAL, "seconds": 60},
            "schedule record: text 'every 90s' does not match seconds 60",
        ),
        (
            {**GOOD_INTERVAL, "anchor": "yesterday"},
            "schedule record: 'anchor' must be an ISO 8601 time with offset, got 'yesterday'",
        ),
        (
            {**GOOD_INTERVAL, "anchor": "2026-04-01T12:00:00"},
            "schedule record: 'anchor' must be an ISO 8601 time with offset, "
            "got '2026-04-01T12:00:00'",
        ),
        (
            {**GOOD_INTERVAL, "anchor": None},
            "schedule record: 'anchor' must be an ISO 8601 time with offset, got None",
        ),
        (
            {**GOOD_ONCE, "at": 17},
            "schedule record: 'at' must be an ISO 8601 time with offset, got 17",
        ),
        (
            {**GOOD_ONCE, "text": "whenever"},
            "schedule record: text 'whenever' is not a one-shot time or delay",
        ),
        (
            {**GOOD_ONCE, "expr": None},
            "schedule record: unexpected field 'expr' for a once schedule",
        ),
        (
            {**GOOD_ONCE, "tags": ["x"]},
            "schedule record: unexpected field 'tags' for a once schedule",
        ),
    ],
)
def test_from_record_rejects_bad_fields(record: Any, message: str) -> None:
    with pytest.raises(ScheduleError) as info:
        Schedule.from_record(record)
    assert str(info.value) == message


def test_from_record_accepts_good_records_and_caches() -> None:
    for record in (GOOD_CRON, GOOD_INTERVAL, GOOD_ONCE):
        first = Schedule.from_record(dict(record))
        assert Schedule.from_record(dict(record)) is first  # cached: same immutable object
        assert first.to_record() == record


def test_from_record_cache_does_not_conflate_equal_values_of_other_types() -> None:
    assert Schedule.from_record({**GOOD_INTERVAL, "seconds": 1, "text": "every 1s"}).seconds == 1
    with pytest.raises(ScheduleError):
        Schedule.from_record({**GOOD_INTERVAL, "seconds": True, "text": "every 1s"})


def test_direct_construction_is_validated() -> None:
    with pytest.raises(ScheduleError, match="a cron schedule has no 'seconds'"):
        Schedule(kind="cron", text="@daily", tz="UTC", expr="0 0 * * *", seconds=5)
    with pytest.raises(ScheduleError, match="has no UTC offset"):
        Schedule(kind="once", text="+1s", tz="UTC", at=datetime(2026, 1, 1))
    with pytest.raises(ScheduleError, match="a one-shot needs 'at'"):
        Schedule(kind="once", text="+1s", tz="UTC")
    with pytest.raises(ScheduleError, match="unknown schedule kind 'daily'"):
        Schedule(kind="daily", text="@daily", tz="UTC")
