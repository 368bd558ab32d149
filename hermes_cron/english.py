"""Plain-English schedules: a tokenizer and a recursive-descent parser.

The grammar is small on purpose (SPEC section 4): every accepted text is one of the
forms below, so what a job does is never a guess. Case-insensitive; runs of spaces
and one trailing period are ignored.

::

    schedule  := recurring | day-form
    recurring := "every" "day" at-times | "daily" at-times
               | "every" DAYS (at-times | times)
               | DAYS at-times                  (DAYS with a plural or a group)
               | ("every" "hour" | "hourly") "at" ":"MM
               | ("every" "month" | "monthly") "on" "the" N at-times
    day-form  := ("today" | "tomorrow" | ["next"] DAY) "at" T     (DAY singular)
    at-times  := "at" times
    times     := T (("," | "and" | "," "and") T)*    (all at the same minute)
    DAYS      := day (("," | "and" | "," "and") day)*
    day       := monday...sunday | mon...sun | mondays...sundays
               | weekday | weekdays | weekend | weekends
    T         := H | H am|pm | H:MM | H:MM am|pm | noon | midnight
    N         := 1st...31st | 1...31 | "last" "day"

A recurring form becomes a cron expression (``Recurring.expr``), evaluated by the
cron machinery in the job's zone; a day form becomes a ``DayForm`` that
``hermes_cron.schedules`` resolves to one instant. This module knows nothing of
zones or clocks, so parsing the same text always gives the same answer (a stored
record is checked by parsing its text again).
"""

from __future__ import annotations

from typing import Dict, FrozenSet, List, NoReturn, Optional, Sequence, Tuple, Union

from ._frozen import Frozen
from .errors import ScheduleError

#: The forms, for messages about a text we cannot read at all.
FORMS_HELP = (
    "plain English ('every day at 9am', 'weekdays at 9am', 'every mon and fri 8:15', "
    "'hourly at :15', 'monthly on the 1st at 9am', 'tomorrow at 9am', 'friday at 5pm')"
)

# Cron day-of-week numbers (0 is Sunday, as cron reads them).
_DAY_NUMBERS: Dict[str, int] = {}
for _number, _name in enumerate("sunday monday tuesday wednesday thursday friday saturday".split()):
    _DAY_NUMBERS[_name] = _number
    _DAY_NUMBERS[_name[:3]] = _number
_PLURAL_DAYS = {name + "s": number for name, number in _DAY_NUMBERS.items() if len(name) > 3}
_GROUPS: Dict[str, Tuple[int, ...]] = {
    "weekday": (1, 2, 3, 4, 5),
    "weekdays": (1, 2, 3, 4, 5),
    "weekend": (0, 6),
    "weekends": (0, 6),
}
_DAY_WORDS = frozenset(_DAY_NUMBERS) | frozenset(_PLURAL_DAYS) | frozenset(_GROUPS)
_DAY_HELP = "monday...sunday, mon...sun, weekdays, weekends"
_TIME_HELP = "such as 9, 9am, 9:30, 9:30pm, 17:30, noon or midnight"
_ORDINALS = {"1": "st", "2": "nd", "3": "rd"}

#: First words that make a text plain English (as opposed to cron, an interval...).
_STARTS: FrozenSet[str] = frozenset(
    {"every", "daily", "hourly", "monthly", "today", "tomorrow", "next", "at"} | _DAY_WORDS
)
#: Words that only plain English uses: after "every" they tell an English attempt
#: ("every funday at 9") from a garbled interval ("every banana").
_VOCABULARY: FrozenSet[str] = _DAY_WORDS | frozenset(
    {"day", "hour", "month", "at", "on", "the", "last", "noon", "midnight", "am", "pm", "and"}
)


# Frozen, not attrs: every command that reads or parses a schedule imports this module
# (see hermes_cron._frozen, issue 12).
class Recurring(Frozen):
    """A recurring form: ``expr`` is the 5-field cron expression it stands for."""

    __slots__ = ("expr",)

    expr: str

    def __init__(self, expr: str) -> None:
        self._set(expr=expr)


class DayForm(Frozen):
    """A one-shot day form: ``day`` is ``"today"``, ``"tomorrow"`` or a cron weekday
    number (0 = Sunday); the wall time is ``hour:minute`` in the job's zone."""

    __slots__ = ("day", "hour", "minute")

    day: Union[str, int]
    hour: int
    minute: int

    def __init__(self, day: Union[str, int], hour: int, minute: int) -> None:
        self._set(day=day, hour=hour, minute=minute)


Parsed = Union[Recurring, DayForm]


# ------------------------------------------------------------------------ tokenizer


class Token(Frozen):
    """``kind`` is ``word`` (ASCII letters, lowercased), ``num`` (ASCII digits), ``:``
    or ``,``; ``start:end`` is where it is in the text; ``glued`` means no space
    before it (``9am`` is two glued tokens, and so is ``1st``)."""

    __slots__ = ("kind", "text", "start", "end", "glued")

    kind: str
    text: str
    start: int
    end: int
    glued: bool

    def __init__(self, kind: str, text: str, start: int, end: int, glued: bool) -> None:
        self._set(kind=kind, text=text, start=start, end=end, glued=glued)


def _q(text: str) -> str:
    # Same quoting as every schedule message (a control character stays escaped).
    return f"'{text}'" if text.isprintable() else repr(text)


def _normalise(text: str) -> str:
    stripped = text.strip()
    if stripped.endswith("."):
        stripped = stripped[:-1].rstrip()
    return stripped


def tokenize(text: str, q: Optional[str] = None) -> List[Token]:
    """The tokens of ``text``; ScheduleError on a character the grammar has no use for."""
    tokens: List[Token] = []
    i, n = 0, len(text)
    glued = False
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            glued = False
            continue
        start = i
        if ch.isascii() and ch.isalpha():
            while i < n and text[i].isascii() and text[i].isalpha():
                i += 1
            kind = "word"
        elif ch in "0123456789":
            while i < n and text[i] in "0123456789":
                i += 1
            kind = "num"
        elif ch in ":,":
            i += 1
            kind = ch
        else:
            where = _q(text) if q is None else q
            raise ScheduleError(f"{where}: {_q(ch)} has no meaning in a plain-English schedule")
        tokens.append(Token(kind, text[start:i].lower(), start, i, glued and bool(tokens)))
        glued = True
    return tokens


# --------------------------------------------------------------------------- parser


def _cron_list(values: Sequence[int]) -> str:
    """Sorted values as a cron list; runs of three or more become ranges (1-5)."""
    ordered = sorted(set(values))
    parts: List[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        if j - i >= 2:
            parts.append(f"{ordered[i]}-{ordered[j]}")
        else:
            parts.extend(str(v) for v in ordered[i : j + 1])
        i = j + 1
    return ",".join(parts)


class Incomplete(ScheduleError):
    """The text stops short of a form (or starts like none). The caller adds the list
    of forms to the message: we cannot tell which form was meant."""


class _Parser:
    def __init__(self, text: str) -> None:
        # Messages quote the text as given; the tokens come from the normalised text,
        # which only lacks a trailing period, so their offsets fit both.
        self.q = _q(text)
        self.text = _normalise(text)
        self.tokens = tokenize(self.text, self.q)
        self.pos = 0

    # -- helpers
    def fail(self, detail: str) -> NoReturn:
        raise ScheduleError(f"{self.q}: {detail}")

    def incomplete(self, detail: str) -> NoReturn:
        raise Incomplete(f"{self.q}: {detail}")

    def peek(self, ahead: int = 0) -> Optional[Token]:
        index = self.pos + ahead
        return self.tokens[index] if index < len(self.tokens) else None

    def raw(self, first: Token, last: Token) -> str:
        return self.text[first.start : last.end]

    def is_word(self, *words: str) -> bool:
        tok = self.peek()
        return tok is not None and tok.kind == "word" and tok.text in words

    def take(self) -> Token:
        tok = self.peek()
        assert tok is not None
        self.pos += 1
        return tok

    def accept(self, *words: str) -> bool:
        if self.is_word(*words):
            self.pos += 1
            return True
        return False

    def after(self) -> str:
        """The text read so far, for messages ("after 'every day'")."""
        return _q(self.text[: self.tokens[self.pos - 1].end]) if self.pos else "the start"

    def expect_word(self, word: str, example: str) -> None:
        tok = self.peek()
        if tok is None:
            self.incomplete(f"{word!r} is missing after {self.after()}, as in {example!r}")
        if not self.accept(word):
            self.fail(f"expected {word!r} after {self.after()}, as in {example!r}")

    def separator(self) -> bool:
        """``,`` or ``and`` or ``, and`` between two list items."""
        tok = self.peek()
        if tok is not None and tok.kind == ",":
            self.pos += 1
            self.accept("and")
            return True
        return self.accept("and")

    def end(self) -> None:
        tok = self.peek()
        if tok is not None:
            self.fail(f"{_q(self.text[tok.start :])} is not understood after {self.after()}")

    # -- grammar
    def parse(self) -> Parsed:
        tok = self.peek()
        if tok is None or tok.kind != "word":
            self.incomplete("not a schedule")
        word = tok.text
        if word == "every":
            self.take()
            return self.every()
        if word == "daily":
            self.take()
            return self.daily("*", "daily at 9am")
        if word == "hourly":
            self.take()
            return self.hourly("hourly at :15")
        if word == "monthly":
            self.take()
            return self.monthly("monthly on the 1st at 9am")
        if word in ("today", "tomorrow"):
            self.take()
            return self.day_form(word, f"{word} at 9am")
        if word == "next":
            self.take()
            tok = self.peek()
            if tok is None:
                self.incomplete("a day name is missing after 'next', as in 'next friday at 5pm'")
            if tok.kind != "word" or tok.text not in _DAY_NUMBERS:
                self.fail(
                    f"{_q(self.text[tok.start : tok.end])} after 'next' is not a day name "
                    "(one day, as in 'next friday at 5pm')"
                )
            self.take()
            return self.day_form(_DAY_NUMBERS[tok.text], "next friday at 5pm")
        if word in _DAY_WORDS:
            return self.days_first()
        if word == "at":
            self.fail("the day goes first, as in 'every day at 9am' or 'tomorrow at 9am'")
        self.incomplete("not a schedule")

    def every(self) -> Recurring:
        tok = self.peek()
        if tok is None:
            self.incomplete("what to repeat is missing after 'every'")
        if self.accept("day"):
            return self.daily("*", "every day at 9am")
        if self.accept("hour"):
            if self.peek() is None:
                self.incomplete(
                    "'at :MM' is missing after 'every hour', as in 'every hour at :00' "
                    "(an interval is 'every 1h')"
                )
            return self.hourly("every hour at :15")
        if self.accept("month"):
            return self.monthly("every month on the 1st at 9am")
        days, _recurring, _count = self.days()
        if self.peek() is None:
            self.incomplete(f"the time is missing after {self.after()}, as in 'every monday 9am'")
        self.accept("at")
        minute, hours = self.times()
        self.end()
        return Recurring(f"{minute} {hours} * * {days}")

    def days_first(self) -> Parsed:
        """A text that starts with day words: weekly if it names a plural or a group,
        a one-shot if it names one day."""
        first = self.peek()
        assert first is not None
        days, recurring, count = self.days()
        if recurring:
            self.expect_word("at", "weekdays at 9am")
            minute, hours = self.times()
            self.end()
            return Recurring(f"{minute} {hours} * * {days}")
        if count > 1:
            self.fail(
                "a one-shot names one day; for a weekly job start with 'every', "
                "as in 'every mon, wed and fri at 8:15'"
            )
        return self.day_form(_DAY_NUMBERS[first.text], "friday at 5pm")

    def days(self) -> Tuple[str, bool, int]:
        """DAYS as a day-of-week field, whether it names a plural or a group, and how
        many distinct days it names."""
        numbers: List[int] = []
        recurring = False
        while True:
            tok = self.peek()
            if tok is None:
                self.incomplete(f"a day name ({_DAY_HELP}) is missing after {self.after()}")
            if tok.kind != "word" or tok.text not in _DAY_WORDS:
                self.fail(f"{_q(self.text[tok.start : tok.end])} is not a day name ({_DAY_HELP})")
            self.take()
            if tok.text in _GROUPS:
                numbers.extend(_GROUPS[tok.text])
                recurring = True
            elif tok.text in _PLURAL_DAYS:
                numbers.append(_PLURAL_DAYS[tok.text])
                recurring = True
            else:
                numbers.append(_DAY_NUMBERS[tok.text])
            if not self.separator():
                break
        count = len(set(numbers))
        return ("*" if count == 7 else _cron_list(numbers)), recurring, count

    def daily(self, days: str, example: str) -> Recurring:
        self.expect_word("at", example)
        minute, hours = self.times()
        self.end()
        return Recurring(f"{minute} {hours} * * {days}")

    def hourly(self, example: str) -> Recurring:
        self.expect_word("at", example)
        tok = self.peek()
        if tok is None:
            self.incomplete(f"the minute past the hour is missing after 'at', as in {example!r}")
        nxt = self.peek(1)
        if tok.kind != ":" or nxt is None or nxt.kind != "num" or not nxt.glued:
            self.fail(f"the minute past the hour is written :MM (:00 to :59), as in {example!r}")
        self.pos += 2
        if len(nxt.text) != 2 or int(nxt.text) > 59:
            self.fail(f"{self.raw(tok, nxt)} is not a minute past the hour (:00 to :59)")
        self.end()
        return Recurring(f"{int(nxt.text)} * * * *")

    def monthly(self, example: str) -> Recurring:
        self.expect_word("on", example)
        self.expect_word("the", example)
        day = self.month_day()
        if self.separator():
            self.fail("one day of the month per job; use two jobs")
        self.expect_word("at", example)
        minute, hours = self.times()
        self.end()
        return Recurring(f"{minute} {hours} {day} * *")

    def month_day(self) -> str:
        tok = self.peek()
        help_ = "1st...31st or last day"
        if tok is None:
            self.incomplete(f"the day of the month ({help_}) is missing after 'the'")
        if self.accept("last"):
            if self.peek() is None:
                self.incomplete("'day' is missing after 'last', as in 'on the last day'")
            self.expect_word("day", "monthly on the last day at 18:00")
            return "L"
        if tok.kind != "num":
            self.fail(f"{_q(self.text[tok.start : tok.end])} is not a day of the month ({help_})")
        self.take()
        last = tok
        suffix = self.peek()
        if suffix is not None and suffix.kind == "word" and suffix.glued:
            self.take()
            last = suffix
        raw = self.raw(tok, last)
        number = int(tok.text) if len(tok.text) <= 2 else 0
        if not 1 <= number <= 31:
            self.fail(f"{raw} is not a day of the month ({help_})")
        if last is not tok:
            teen = 10 <= number % 100 <= 20
            wanted = "th" if teen else _ORDINALS.get(tok.text[-1], "th")
            if last.text != wanted:
                self.fail(f"{raw} is not a day of the month (write {number}{wanted})")
        return str(number)

    def day_form(self, day: Union[str, int], example: str) -> DayForm:
        tok = self.peek()
        if tok is None:
            self.incomplete(f"the time is missing after {self.after()}, as in {example!r}")
        self.expect_word("at", example)
        times = self.time_list()
        if len(times) > 1:
            self.fail("a one-shot runs at one time; use two jobs")
        self.end()
        hour, minute, _raw = times[0]
        return DayForm(day, hour, minute)

    def times(self) -> Tuple[int, str]:
        """T, T and T...: the shared minute and the hour field."""
        times = self.time_list()
        minutes = {minute for _hour, minute, _raw in times}
        if len(minutes) > 1:
            listed = " and ".join(raw for _h, _m, raw in times)
            self.fail(
                f"{listed} are not at the same minute; one job runs at one minute "
                "past the hours it names: use two jobs"
            )
        return minutes.pop(), _cron_list([hour for hour, _minute, _raw in times])

    def time_list(self) -> List[Tuple[int, int, str]]:
        times = [self.time()]
        while self.separator():
            times.append(self.time())
        return times

    def time(self) -> Tuple[int, int, str]:
        """One T: ``(hour, minute, the text as written)``."""
        tok = self.peek()
        if tok is None:
            self.incomplete(f"a time ({_TIME_HELP}) is missing after {self.after()}")
        if tok.kind == "word" and tok.text in ("noon", "midnight"):
            self.take()
            return (12 if tok.text == "noon" else 0), 0, tok.text
        if tok.kind != "num":
            self.fail(f"expected a time ({_TIME_HELP}), got {_q(self.text[tok.start : tok.end])}")
        self.take()
        last = tok
        minute_text: Optional[str] = None
        colon, digits = self.peek(), self.peek(1)
        if colon is not None and colon.kind == ":" and colon.glued:
            if digits is None or digits.kind != "num" or not digits.glued:
                self.fail(f"{self.raw(tok, colon)} is not a time of day")
            self.pos += 2
            minute_text, last = digits.text, digits
        meridiem: Optional[str] = None
        word = self.peek()
        if word is not None and word.kind == "word" and (word.glued or word.text in ("am", "pm")):
            self.take()
            last = word
            if word.text not in ("am", "pm"):
                self.fail(f"{self.raw(tok, last)} is not a time of day")
            meridiem = word.text
        raw = self.raw(tok, last)
        hour = int(tok.text) if len(tok.text) <= 2 else 99
        minute = 0
        if minute_text is not None:
            minute = int(minute_text) if len(minute_text) == 2 else 99
        if meridiem is None:
            ok = hour <= 23 and minute <= 59
        else:
            ok = 1 <= hour <= 12 and minute <= 59
            hour = hour % 12 + (12 if meridiem == "pm" else 0)  # 12am is 0, 12pm is 12
        if not ok:
            self.fail(f"{raw} is not a time of day")
        return hour, minute, raw


# ---------------------------------------------------------------------------- entry


def _first_word(text: str) -> str:
    end = 0
    while end < len(text) and text[end].isascii() and text[end].isalpha():
        end += 1
    return text[:end].lower()


def claims(text: str) -> bool:
    """Whether ``text`` should be read as plain English (the other forms keep their
    own messages: ``every 5x`` is a bad interval, ``mon * * * *`` bad cron)."""
    stripped = text.strip()
    first = _first_word(stripped)
    if first not in _STARTS or "*" in stripped:
        return False
    if first != "every":
        return True
    rest = stripped[len(first) :].lstrip()
    if not rest or rest[0] in "0123456789+-":
        return False  # an interval ("every 90s"), right or wrong
    words = "".join(c.lower() if c.isascii() and c.isalpha() else " " for c in rest).split()
    return any(word in _VOCABULARY for word in words)


def parse(text: str) -> Parsed:
    """Parse a plain-English schedule (``claims(text)`` should be true).

    Raises ``ScheduleError`` naming what is wrong: ``'every day at 25:00': 25:00 is
    not a time of day``. The message quotes ``text`` as given, stripped.
    """
    return _Parser(text.strip()).parse()


__all__ = ["FORMS_HELP", "DayForm", "Incomplete", "Recurring", "claims", "parse", "tokenize"]
