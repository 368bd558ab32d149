"""What a job record is: its fields, their checks, and the record as a backend holds it.

Every backend validates with ``check_record``, so a record that is quarantined in
``jobs.json`` is quarantined in PostgreSQL for the same reason, with the same words.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import string
from datetime import datetime
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from .._frozen import Frozen
from ..errors import ScheduleError
from ..schedules import Schedule
from ..timeutil import parse_iso

Job = Dict[str, Any]

STATES = ("scheduled", "paused", "completed")
LAST_STATUSES = ("ok", "error", "timeout", "skipped", "missed", "cancelled")
#: How a run may end (``finish_run``): ``cancelled`` is a run stopped by ``overlap: replace``.
FINISH_STATUSES = ("ok", "error", "timeout", "cancelled")
#: ``overlap`` values (SPEC §4.1); null means ``skip``.
OVERLAPS = ("skip", "queue", "replace")
#: The longest duration an option may hold (100 years, as for intervals): beyond it
#: datetime arithmetic overflows.
MAX_SECONDS = 100 * 366 * 86400
#: Most retries a job may ask for (each doubles the delay: more is never useful).
MAX_RETRIES = 100
#: What an ``env`` key may look like (a portable environment variable name).
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

#: What a job id may look like: URL-safe and unable to leave ``cron/output/``.
ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: Generated ids: this many characters from ``ID_ALPHABET``.
ID_LENGTH = 10
ID_ALPHABET = string.ascii_lowercase + string.digits
#: A claim for a fire more than this many seconds in the future is refused ("not due yet").
EARLY_TOLERANCE = 5.0
#: Longest derived job name.
NAME_MAX = 60

#: Field order of a new record (readers rely on names, not order; this keeps files tidy).
FIELDS: Tuple[str, ...] = (
    "id",
    "name",
    "schedule",
    "command",
    "prompt",
    "enabled",
    "state",
    "repeat",
    "next_run_at",
    "last_run_at",
    "last_status",
    "last_error",
    "fire_claim",
    # The job options of SPEC §4.1 (null: the default).
    "misfire_grace",
    "timeout",
    "jitter",
    "overlap",
    "retries",
    "retry_delay",
    "cwd",
    "env",
    "until",
    # Bookkeeping of the options (rules.py): the undelayed time of the next scheduled
    # fire (``next_run_at`` is it plus the jitter offset), a retry waiting to run, and a
    # fire kept by ``overlap: queue`` / ``replace`` until the running one ends.
    "next_scheduled_at",
    "pending_retry",
    "queued_fire",
    "created_at",
    "updated_at",
)
#: The job options (SPEC §4.1): record fields whose null means "the default".
OPTION_FIELDS = (
    "misfire_grace",
    "timeout",
    "jitter",
    "overlap",
    "retries",
    "retry_delay",
    "cwd",
    "env",
    "until",
)
#: Fields ``update()`` may change (``tz`` re-zones the schedule, ``env_add`` merges
#: variables into ``env``; see ``rules.update``).
UPDATABLE = (
    "name",
    "enabled",
    "command",
    "prompt",
    "schedule",
    "tz",
    "repeat",
    *OPTION_FIELDS,
    "env_add",
)


# Not attrs, dataclasses or NamedTuples: see hermes_cron._frozen (issue 12).


class Quarantined(Frozen):
    """A record kept aside because its fields are invalid."""

    __slots__ = ("index", "job_id", "error", "record")

    index: int
    job_id: Optional[str]
    error: str
    record: Any

    def __init__(self, index: int, job_id: Optional[str], error: str, record: Any) -> None:
        self._set(index=index, job_id=job_id, error=error, record=record)


class Snapshot(Frozen):
    __slots__ = ("jobs", "quarantined")

    jobs: List[Job]
    quarantined: List[Quarantined]

    def __init__(self, jobs: List[Job], quarantined: List[Quarantined]) -> None:
        self._set(jobs=jobs, quarantined=quarantined)


class Census(Frozen):
    """How many valid jobs the store holds in each state, and its quarantined
    records: what ``status`` and the metrics show, without every job."""

    __slots__ = ("states", "quarantined")

    states: Dict[str, int]
    quarantined: List[Quarantined]

    def __init__(self, states: Dict[str, int], quarantined: List[Quarantined]) -> None:
        self._set(states=states, quarantined=quarantined)

    @property
    def jobs(self) -> int:
        """The number of valid jobs."""
        return sum(self.states.values())


def census_of(jobs: Iterable[Mapping[str, Any]], quarantined: List[Quarantined]) -> Census:
    """The census of these valid jobs and quarantined records."""
    states: Dict[str, int] = {}
    for job in jobs:
        state = str(job["state"])
        states[state] = states.get(state, 0) + 1
    return Census(states, quarantined)


class Invalid(Exception):
    """A record field is wrong; the message is one line and names the field."""


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }.get(type(value), type(value).__name__)


def _time_field(record: Mapping[str, Any], key: str) -> Optional[datetime]:
    value = record.get(key)
    if value is None:
        return None
    try:
        return parse_iso(value)
    except (ValueError, TypeError) as exc:
        raise Invalid(f"{key}: {exc}") from None


def _number_field(record: Mapping[str, Any], key: str, *, positive: bool) -> None:
    value = record.get(key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise Invalid(f"{key}: expected a number of seconds or null, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise Invalid(f"{key}: must be {'> 0' if positive else '>= 0'}, got {value!r}")
    if value > MAX_SECONDS:
        raise Invalid(f"{key}: {value!r} seconds is longer than 100 years")


def _object_field(
    record: Mapping[str, Any], key: str, times: Sequence[str], optional: Sequence[str] = ()
) -> None:
    """An optional object of bookkeeping whose ``times`` keys are ISO 8601 times (and
    whose ``optional`` keys are times or null)."""
    value = record.get(key)
    if value is None:
        return
    if not isinstance(value, dict):
        raise Invalid(f"{key}: expected an object or null, got {value!r}")
    for name in (*times, *optional):
        if value.get(name) is None:
            if name in optional:
                continue
            raise Invalid(f"{key}.{name}: missing")
        try:
            parse_iso(value[name])
        except (ValueError, TypeError) as exc:
            raise Invalid(f"{key}.{name}: {exc}") from None


def check_options(value: Mapping[str, Any]) -> None:
    """The job options of SPEC §4.1 and their bookkeeping (raises ``Invalid``).

    The same check refuses a bad ``add`` / ``edit`` and quarantines a hand-edited
    record, so what the command line refuses can never be run from the file either.
    """
    _number_field(value, "misfire_grace", positive=False)
    _number_field(value, "timeout", positive=True)
    _number_field(value, "jitter", positive=False)
    _number_field(value, "retry_delay", positive=True)
    overlap = value.get("overlap")
    if overlap is not None and overlap not in OVERLAPS:
        raise Invalid(f"overlap: {overlap!r} is not one of {', '.join(OVERLAPS)}")
    retries = value.get("retries")
    if retries is not None and (
        isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_RETRIES
    ):
        raise Invalid(f"retries: expected a whole number from 0 to {MAX_RETRIES}, got {retries!r}")
    cwd = value.get("cwd")
    if cwd is not None:
        if not isinstance(cwd, str) or not cwd or "\0" in cwd or not os.path.isabs(cwd):
            raise Invalid(f"cwd: expected an absolute path, got {cwd!r}")
        if not is_text(cwd):
            raise Invalid(f"cwd: {_undecodable(cwd)}")
    env = value.get("env")
    if env is not None:
        if not isinstance(env, dict):
            raise Invalid(f"env: expected an object of NAME: value, got {env!r}")
        for key, item in env.items():
            if not ENV_KEY_RE.match(key):
                raise Invalid(f"env: {key!r} is not a variable name (letters, digits, _)")
            if not isinstance(item, str) or "\0" in item:
                raise Invalid(f"env.{key}: expected text without NUL, got {item!r}")
            if not is_text(item):
                raise Invalid(f"env.{key}: {_undecodable(item)}")
    _time_field(value, "until")
    _time_field(value, "next_scheduled_at")
    _object_field(value, "pending_retry", ("fire_at", "due_at"), ("resume_at",))
    retry = value.get("pending_retry")
    if retry is not None:
        attempt = retry.get("attempt")
        if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 2:
            raise Invalid(f"pending_retry.attempt: expected a whole number >= 2, got {attempt!r}")
    _object_field(value, "queued_fire", ("fire_at",), ("queued_at", "resume_at"))


def check_record(value: Any) -> Tuple[Job, Schedule, Optional[datetime]]:
    """Validate one record: returns ``(job, schedule, next_run)`` or raises ``Invalid``.

    ``job`` is a copy of ``value`` with absent optional fields filled with their
    defaults, so readers can index every documented field.
    """
    if not isinstance(value, dict):
        raise Invalid(f"record is {type_name(value)}, expected an object")
    job_id = value.get("id")
    if not isinstance(job_id, str) or not ID_RE.match(job_id):
        raise Invalid(f"id: {job_id!r} is not 1-64 characters of A-Z a-z 0-9 _ -")
    try:
        schedule = Schedule.from_record(value.get("schedule"))
    except ScheduleError as exc:
        raise Invalid(f"schedule: {exc}") from None
    except Exception as exc:  # a hand-edited record may trip anything inside from_record
        raise Invalid(f"schedule: {type(exc).__name__}: {exc}") from None
    command = value.get("command")
    prompt = value.get("prompt")
    if command is not None and prompt is not None:
        raise Invalid("has both command and prompt (exactly one is allowed)")
    if command is None and prompt is None:
        raise Invalid("needs a command or a prompt")
    if command is not None and (
        not isinstance(command, list)
        or not command
        or not all(isinstance(a, str) for a in command)
        or not command[0]
    ):
        raise Invalid(f"command: expected a non-empty list of strings, got {command!r}")
    if prompt is not None and (not isinstance(prompt, str) or not prompt.strip()):
        raise Invalid(f"prompt: expected non-empty text, got {prompt!r}")
    name = value.get("name")
    if name is not None and not isinstance(name, str):
        raise Invalid(f"name: expected text, got {name!r}")
    # Undecodable bytes from the command line arrive as lone surrogates ("\udcff"):
    # such text cannot be written to jobs.json as UTF-8, nor printed; refuse it here.
    named = [("command", a) for a in command or ()] + [("prompt", prompt), ("name", name)]
    for label, text in named:
        if isinstance(text, str) and not is_text(text):
            raise Invalid(f"{label}: {_undecodable(text)}")
    enabled = value.get("enabled", True)
    if not isinstance(enabled, bool):
        raise Invalid(f"enabled: expected true or false, got {enabled!r}")
    state = value.get("state", "scheduled")
    if state not in STATES:
        raise Invalid(f"state: {state!r} is not one of {', '.join(STATES)}")
    repeat = value.get("repeat")
    if repeat is None:
        repeat = {"times": None, "completed": 0}
    elif not isinstance(repeat, dict):
        raise Invalid(f"repeat: expected an object, got {repeat!r}")
    else:
        times = repeat.get("times")
        done = repeat.get("completed", 0)
        if times is not None and (
            isinstance(times, bool) or not isinstance(times, int) or times < 1
        ):
            raise Invalid(f"repeat.times: expected an integer >= 1 or null, got {times!r}")
        if isinstance(done, bool) or not isinstance(done, int) or done < 0:
            raise Invalid(f"repeat.completed: expected an integer >= 0, got {done!r}")
        repeat = {**repeat, "times": times, "completed": done}
    next_run = _time_field(value, "next_run_at")
    for key in ("last_run_at", "created_at", "updated_at"):
        _time_field(value, key)
    status = value.get("last_status")
    if status is not None and status not in LAST_STATUSES:
        raise Invalid(f"last_status: {status!r} is not one of {', '.join(LAST_STATUSES)}")
    error = value.get("last_error")
    if error is not None and not isinstance(error, str):
        raise Invalid(f"last_error: expected text or null, got {error!r}")
    claim = value.get("fire_claim")
    if claim is not None:
        if not isinstance(claim, dict):
            raise Invalid(f"fire_claim: expected an object or null, got {claim!r}")
        if not isinstance(claim.get("owner"), str):
            raise Invalid("fire_claim.owner: expected text")
        for key in ("fire_at", "claimed_at"):
            if claim.get(key) is None:
                raise Invalid(f"fire_claim.{key}: missing")
            try:
                parse_iso(claim[key])
            except (ValueError, TypeError) as exc:
                raise Invalid(f"fire_claim.{key}: {exc}") from None
        attempt = claim.get("attempt", 1)
        if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
            raise Invalid(f"fire_claim.attempt: expected a whole number >= 1, got {attempt!r}")
    check_options(value)
    job = dict(value)
    for key in FIELDS:
        job.setdefault(key, None)
    job["enabled"] = enabled
    job["state"] = state
    job["repeat"] = repeat
    if job["name"] is None:
        job["name"] = derive_name(command, prompt)
    return job, schedule, next_run


def is_text(text: str) -> bool:
    """True when ``text`` can be written as UTF-8 (no lone surrogates)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _undecodable(text: str) -> str:
    shown = text.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
    if len(shown) > 60:
        shown = shown[:59] + "…"
    return f"'{shown}' holds bytes that are not UTF-8 text"


def derive_name(command: Optional[Sequence[str]], prompt: Optional[str]) -> str:
    """A short display name: the command line, or the prompt's first line."""
    if command:
        text = " ".join(shlex.quote(a) for a in command)
    else:
        lines = (prompt or "").strip().splitlines()
        text = lines[0] if lines else ""
    text = " ".join(text.split())
    return text if len(text) <= NAME_MAX else text[: NAME_MAX - 1] + "…"


def copy_json(value: Any) -> Any:
    """Deep copy of JSON-shaped data (much faster than ``copy.deepcopy``)."""
    if isinstance(value, dict):
        return {k: copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_json(v) for v in value]
    return value


# ---------------------------------------------------------------------------
# The parsed file


def new_id() -> str:
    """A fresh random job id (``ID_LENGTH`` characters of ``ID_ALPHABET``)."""
    # secrets.choice is SystemRandom().choice (os.urandom); the secrets module would
    # also import hmac and OpenSSL's hashlib, which ``add`` need not pay for (issue 12).
    from random import SystemRandom

    choice = SystemRandom().choice
    return "".join(choice(ID_ALPHABET) for _ in range(ID_LENGTH))


class Record(Frozen):
    """A valid job as a backend holds it: the record, its parsed schedule and next run.

    Rules (``rules.py``) take and return these; a backend only reads and writes them.
    Compared by identity.
    """

    __slots__ = ("job", "schedule", "next_run")
    __eq__ = Frozen.identity_eq
    __hash__ = Frozen.identity_hash

    job: Job
    schedule: Schedule
    next_run: Optional[datetime]

    def __init__(self, job: Job, schedule: Schedule, next_run: Optional[datetime]) -> None:
        self._set(job=job, schedule=schedule, next_run=next_run)

    @classmethod
    def check(cls, value: Any) -> Record:
        """Validate ``value`` (raises ``Invalid``)."""
        job, schedule, next_run = check_record(value)
        return cls(job, schedule, next_run)

    def with_job(self, job: Job) -> Record:
        """The same schedule with a changed record (``job`` is a new dict, never one
        handed out before); ``next_run`` follows ``job["next_run_at"]``."""
        next_run = parse_iso(job["next_run_at"]) if job.get("next_run_at") else None
        return Record(job, self.schedule, next_run)
