"""The job options of SPEC §4.1 as users give them: ``--jitter 2m``, ``--retries 3``...

One table (``OPTIONS``) drives ``hermes-cron add`` and ``edit`` (flags, help,
``--clear``) and ``CronService.add_job`` / ``edit_job`` (``normalize``): text
becomes the value the record stores (seconds, a list of variables, an ISO 8601
time with an offset). A bad value raises ``UsageError`` with one line naming the
option. The record check (``store.records.check_options``) checks the stored
values again, so a hand-edited record is held to the same rules.
"""

from __future__ import annotations

import math
import os
from datetime import datetime
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from ._frozen import Frozen
from .errors import ScheduleError, UsageError
from .timeutil import to_iso

# The limits are the record check's (``store.records``), imported when a value is
# parsed: building the command line must not load the store.

DURATION_HINT = "e.g. 90s, 30m, 1h30m, or a number of seconds"


def parse_duration(text: Any, *, what: str = "duration", allow_zero: bool = True) -> float:
    """Seconds in ``90s``, ``30m``, ``1h30m``, ``2 hours`` (the units of intervals) or a
    plain number of seconds (``90``, ``1.5``); an int when whole. ``UsageError`` else."""
    from .schedules import _duration_seconds
    from .store.records import MAX_SECONDS

    if isinstance(text, bool):
        raise UsageError(f"{what}: {text!r} is not a duration ({DURATION_HINT})")
    found: Optional[float]
    if isinstance(text, (int, float)):
        found = float(text)
    else:
        raw = str(text).strip()
        try:
            found = float(raw)
        except ValueError:
            whole = _duration_seconds(raw) if raw else None
            found = None if whole is None else float(whole)
        if found is None:
            raise UsageError(f"{what}: {raw!r} is not a duration ({DURATION_HINT})")
    value = found
    if not math.isfinite(value) or value < 0:
        raise UsageError(f"{what}: {text!r} is not a duration ({DURATION_HINT})")
    if value == 0 and not allow_zero:
        raise UsageError(f"{what}: must be more than 0 seconds")
    if value > MAX_SECONDS:
        raise UsageError(f"{what}: {text!r} is longer than 100 years")
    return int(value) if value.is_integer() else value


def parse_until(text: Any, tz: str) -> str:
    """An ISO 8601 time (a naive one is wall time in ``tz``) as stored: UTC, with offset."""
    from .schedules import _parse_time, _zone

    if isinstance(text, datetime):
        if text.tzinfo is None:
            raise UsageError("until: the time has no UTC offset")
        return to_iso(text)
    raw = str(text).strip()
    try:
        when = _parse_time(raw, _zone(tz))
    except ScheduleError as exc:
        raise UsageError(f"until: {exc}") from None
    if when is None:
        raise UsageError(
            f"until: {raw!r} is not an ISO 8601 time (e.g. 2026-12-31T18:00 or 2026-12-31)"
        )
    return to_iso(when)


def _positive(what: str) -> Callable[[Any], float]:
    return lambda text: parse_duration(text, what=what, allow_zero=False)


def _non_negative(what: str) -> Callable[[Any], float]:
    return lambda text: parse_duration(text, what=what)


def _overlap(text: Any) -> str:
    from .store.records import OVERLAPS

    value = str(text).strip().lower()
    if value not in OVERLAPS:
        raise UsageError(f"overlap: {text!r} is not one of {', '.join(OVERLAPS)}")
    return value


def _retries(text: Any) -> int:
    from .store.records import MAX_RETRIES

    try:
        value = int(str(text).strip()) if not isinstance(text, int) else text
    except ValueError:
        value = -1
    if isinstance(text, bool) or not 0 <= value <= MAX_RETRIES:
        raise UsageError(f"retries: {text!r} is not a whole number from 0 to {MAX_RETRIES}")
    return value


def _cwd(text: Any) -> str:
    value = str(text)
    if not value or not os.path.isabs(value):
        raise UsageError(f"cwd: {text!r} is not an absolute path")
    return value


def env_pair(text: str) -> Tuple[str, str]:
    """``KEY=VALUE`` as a pair; ``UsageError`` for anything else."""
    from .store.records import ENV_KEY_RE

    key, sep, value = str(text).partition("=")
    if not sep or not ENV_KEY_RE.match(key):
        raise UsageError(f"env: {text!r} is not KEY=VALUE with KEY a variable name")
    if "\0" in value:
        raise UsageError(f"env: the value of {key} holds a NUL byte")
    return key, value


def _env(value: Any) -> Dict[str, str]:
    if isinstance(value, Mapping):
        return dict(env_pair(f"{k}={v}") for k, v in value.items())
    if isinstance(value, str):
        return dict([env_pair(value)])
    return dict(env_pair(item) for item in value)


class Option(Frozen):
    """One job option: its record field, its command-line flag, how text becomes a value."""

    __slots__ = ("field", "flag", "metavar", "help", "parse")

    field: str
    flag: str
    metavar: str
    help: str
    parse: Callable[[Any], Any]

    def __init__(
        self, field: str, flag: str, metavar: str, help: str, parse: Callable[[Any], Any]
    ) -> None:
        self._set(field=field, flag=flag, metavar=metavar, help=help, parse=parse)

    @property
    def name(self) -> str:
        """The name ``--clear`` takes: the flag without its dashes."""
        return self.flag[2:]


OPTIONS: Tuple[Option, ...] = (
    Option(
        "misfire_grace",
        "--misfire-grace",
        "DUR",
        "how late a missed fire may still run (default cron.misfire_grace)",
        _non_negative("misfire-grace"),
    ),
    Option(
        "timeout",
        "--timeout",
        "DUR",
        "stop a run after this long, recorded timeout (default cron.job_timeout)",
        _positive("timeout"),
    ),
    Option(
        "jitter",
        "--jitter",
        "DUR",
        "delay each fire by an offset in [0, DUR) drawn from the job id and the time",
        _non_negative("jitter"),
    ),
    Option(
        "overlap",
        "--overlap",
        "skip|queue|replace",
        "a fire due while the previous run goes on: skip it (default), queue one, "
        "or replace the running run",
        _overlap,
    ),
    Option(
        "retries",
        "--retries",
        "N",
        "try a run that ended error or timeout again, up to N more times",
        _retries,
    ),
    Option(
        "retry_delay",
        "--retry-delay",
        "DUR",
        "before the first retry (default 30s), doubling each time",
        _positive("retry-delay"),
    ),
    Option(
        "cwd",
        "--cwd",
        "DIR",
        "working directory of a command job, an absolute path (default: your home)",
        _cwd,
    ),
    Option(
        "env",
        "--env",
        "KEY=VALUE",
        "add a variable to a command job's environment (repeatable)",
        _env,
    ),
    Option(
        "until",
        "--until",
        "TIME",
        "no fire after this ISO 8601 time; the job then completes",
        lambda text: text,  # needs the job's zone: see normalize
    ),
)

BY_FIELD: Dict[str, Option] = {o.field: o for o in OPTIONS}
#: What ``edit --clear`` accepts: each option's name, and ``repeat``.
CLEARABLE: Tuple[str, ...] = (*(o.name for o in OPTIONS), "repeat")


def clear_field(name: str) -> str:
    """The record field ``--clear NAME`` resets (``retry-delay`` → ``retry_delay``)."""
    key = name.strip().lstrip("-").replace("-", "_")
    if key == "repeat" or key in BY_FIELD:
        return key
    raise UsageError(f"--clear: {name!r} is not an option (one of {', '.join(CLEARABLE)})")


def normalize(options: Mapping[str, Any], tz: str) -> Dict[str, Any]:
    """Job options as given (text or values) → the values the record stores. None stays
    None (the default). ``tz`` is the zone of a naive ``until``."""
    out: Dict[str, Any] = {}
    for key, value in options.items():
        option = BY_FIELD.get(key)
        if option is None:
            raise UsageError(f"unknown job option {key!r} (one of {', '.join(BY_FIELD)})")
        if value is None:
            out[key] = None
        elif key == "until":
            out[key] = parse_until(value, tz)
        else:
            out[key] = option.parse(value)
    return out


__all__ = [
    "BY_FIELD",
    "CLEARABLE",
    "OPTIONS",
    "Option",
    "clear_field",
    "env_pair",
    "normalize",
    "parse_duration",
    "parse_until",
]
