"""The job store: ``$HERMES_HOME/cron/jobs.json``.

File format ``{"version": 1, "jobs": [record, ...]}``, one record per line. A
record (SPEC §4) holds ``id``, ``name``, ``schedule`` (``Schedule.to_record()``),
``command`` (argv list) or ``prompt`` (the other one null), ``enabled``,
``state`` (scheduled/paused/completed), ``repeat`` ``{"times", "completed"}``,
``next_run_at``, ``last_run_at``, ``last_status``, ``last_error``,
``fire_claim`` (null or ``{fire_at, owner, claimed_at}``, plus ``manual: true``
for ``hermes-cron run``), ``misfire_grace`` (null: the store default),
``timeout`` (null: config default), ``created_at``, ``updated_at``. Times are
ISO 8601 with offset.

How it stays safe:

* **Writes.** Every mutation takes the cross-process lock (bounded wait,
  ``LockTimeoutError``), re-reads the file, changes only the records it means
  to, and replaces the file atomically (temp file, fsync, rename, fsync the
  folder). Records a mutation did not touch are written back with their exact
  source bytes. A mutation that changes nothing does not write.
* **Reads** need no lock (a rename is atomic); they are cached on the file's
  ``(st_ino, st_mtime_ns, st_size)``. Under the lock a mutation compares the
  bytes themselves, so a stat token that happens to repeat can never make a
  write start from a stale view.
* **Corruption.** A file that is unreadable, not UTF-8, not JSON, or not the
  expected shape raises ``StoreCorruptError`` ``"<path>: <fault>"`` on every
  read and every mutation, and is never written. A missing file is an empty
  store.
* **Quarantine.** A record that is valid JSON but has bad fields (or repeats an
  earlier id) is kept aside: reported by ``snapshot().quarantined``, never
  returned as a job, never claimed, and written back byte for byte in its
  position by later mutations.

Record objects handed out by ``snapshot()`` are shared with the cache: treat
them as read-only. ``get()``, ``list_jobs()`` and every mutation return private
copies.
"""

from __future__ import annotations

import bisect
import json
import os
import re
import secrets
import shlex
import string
import threading
from datetime import datetime
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, TypeVar

import attrs

from .clock import Clock
from .config import Config, cfg_get
from .errors import (
    JobNotFoundError,
    LockTimeoutError,
    ScheduleError,
    StoreCorruptError,
    StoreError,
    UsageError,
)
from .lock import FileLock, atomic_write
from .paths import HomePaths
from .schedules import Schedule
from .timeutil import parse_iso, to_iso

Job = Dict[str, Any]
T = TypeVar("T")

# Claim outcomes.
WON = "won"  # this owner holds the claim and must run the job, then finish_run
SKIPPED = "skipped"  # overlap: a fresh claim by a still-running fire; next_run_at advanced
MISSED = "missed"  # too late (beyond misfire_grace); next_run_at advanced / one-shot completed
LOST = "lost"  # not due for this fire_at (a duplicate, or another process won)
GONE = "gone"  # no such job
INACTIVE = "inactive"  # paused, disabled or completed
#: Returned by ``catch_up`` only: a claim went stale without its run ever finishing (the
#: process died mid-run). The claim is cleared and the job recorded as ``error``.
INTERRUPTED = "interrupted"

CLAIM_OUTCOMES = (WON, SKIPPED, MISSED, LOST, GONE, INACTIVE, INTERRUPTED)
STATES = ("scheduled", "paused", "completed")
LAST_STATUSES = ("ok", "error", "timeout", "skipped", "missed")
FINISH_STATUSES = ("ok", "error", "timeout")

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
_FIELDS: Tuple[str, ...] = (
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
    "misfire_grace",
    "timeout",
    "created_at",
    "updated_at",
)
#: Fields ``update()`` may change.
UPDATABLE = (
    "name",
    "enabled",
    "command",
    "prompt",
    "schedule",
    "repeat",
    "misfire_grace",
    "timeout",
)


@attrs.frozen
class Claim:
    """The answer of a claim attempt."""

    job_id: str
    fire_at: datetime  # the due time the fire is for (after coalescing missed times)
    outcome: str
    owner: str
    job: Optional[Job] = None  # the record as written by the claim (None when GONE)
    reason: str = ""  # why, for LOST/GONE/INACTIVE/MISSED/SKIPPED; for a coalesced catch-up,
    # which missed times were folded into this one
    #: For a coalesced catch-up: the first missed fire time folded into this run
    #: (the ``fire_at`` that was asked for). None when nothing was folded in.
    missed_from: Optional[datetime] = None
    #: True for ``claim_manual`` (``hermes-cron run ID``).
    manual: bool = False
    #: When this claim took over a stale one, the run that never finished, as an
    #: INTERRUPTED claim, so the runner writes its ledger row (nothing dropped silently).
    superseded: Optional[Claim] = None

    @property
    def won(self) -> bool:
        return self.outcome == WON


@attrs.frozen
class Quarantined:
    """A record kept aside because its fields are invalid."""

    index: int
    job_id: Optional[str]
    error: str
    record: Any


@attrs.frozen
class Snapshot:
    jobs: List[Job]
    quarantined: List[Quarantined]


# ---------------------------------------------------------------------------
# Parsing the file


class _Invalid(Exception):
    """A record field is wrong; the message is one line and names the field."""


class _Shape(Exception):
    """The document is valid JSON but not ``{"version": 1, "jobs": [...]}``."""


_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


def _scan_document(text: str) -> Tuple[List[Tuple[str, str]], List[Tuple[Any, str]]]:
    """Parse ``text`` and keep the source of each record.

    Returns ``(head, records)``: ``head`` is the other top-level members as
    ``(key, raw value text)`` (``version`` checked and left out), ``records``
    is ``(value, raw text)`` per element of ``jobs``. Raises
    ``json.JSONDecodeError`` (with line and column) or ``_Shape``.
    """

    def ws(i: int) -> int:
        return _WS.match(text, i).end()  # type: ignore[union-attr]

    def fail(msg: str, i: int) -> None:
        raise json.JSONDecodeError(msg, text, i)

    i = ws(0)
    if i >= len(text):
        fail("Expecting value (the file is empty)", i)
    if text[i] != "{":
        value, end = _DECODER.raw_decode(text, i)
        if ws(end) != len(text):
            fail("Extra data", ws(end))
        raise _Shape(f"top level is {_type_name(value)}, expected an object with a 'jobs' list")
    head: List[Tuple[str, str]] = []
    records: Optional[List[Tuple[Any, str]]] = None
    i = ws(i + 1)
    if text[i : i + 1] == "}":
        i += 1
    else:
        while True:
            if text[i : i + 1] != '"':
                fail("Expecting property name enclosed in double quotes", i)
            key, i = _DECODER.raw_decode(text, i)
            i = ws(i)
            if text[i : i + 1] != ":":
                fail("Expecting ':' delimiter", i)
            i = ws(i + 1)
            if key == "jobs":
                if records is not None:
                    raise _Shape("the 'jobs' key appears twice")
                if text[i : i + 1] != "[":
                    value, _ = _DECODER.raw_decode(text, i)
                    raise _Shape(f"'jobs' is {_type_name(value)}, expected a list")
                records = []
                i = ws(i + 1)
                if text[i : i + 1] == "]":
                    i += 1
                else:
                    while True:
                        value, end = _DECODER.raw_decode(text, i)
                        records.append((value, text[i:end]))
                        i = ws(end)
                        c = text[i : i + 1]
                        if c == ",":
                            i = ws(i + 1)
                        elif c == "]":
                            i += 1
                            break
                        else:
                            fail("Expecting ',' delimiter", i)
            else:
                value, end = _DECODER.raw_decode(text, i)
                if key == "version":
                    if value != 1 or isinstance(value, bool):
                        raise _Shape(f"unsupported version {value!r} (this hermes-cron reads 1)")
                else:
                    head.append((key, text[i:end]))
                i = end
            i = ws(i)
            c = text[i : i + 1]
            if c == ",":
                i = ws(i + 1)
            elif c == "}":
                i += 1
                break
            else:
                fail("Expecting ',' delimiter", i)
    if ws(i) != len(text):
        fail("Extra data", ws(i))
    if records is None:
        raise _Shape("no 'jobs' list in the top-level object")
    return head, records


def _type_name(value: Any) -> str:
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
        raise _Invalid(f"{key}: {exc}") from None


def _number_field(record: Mapping[str, Any], key: str, *, positive: bool) -> None:
    value = record.get(key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise _Invalid(f"{key}: expected a number of seconds or null, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise _Invalid(f"{key}: must be {'> 0' if positive else '>= 0'}, got {value!r}")


def _check_record(value: Any) -> Tuple[Job, Schedule, Optional[datetime]]:
    """Validate one record: returns ``(job, schedule, next_run)`` or raises ``_Invalid``.

    ``job`` is a copy of ``value`` with absent optional fields filled with their
    defaults, so readers can index every documented field.
    """
    if not isinstance(value, dict):
        raise _Invalid(f"record is {_type_name(value)}, expected an object")
    job_id = value.get("id")
    if not isinstance(job_id, str) or not ID_RE.match(job_id):
        raise _Invalid(f"id: {job_id!r} is not 1-64 characters of A-Z a-z 0-9 _ -")
    try:
        schedule = Schedule.from_record(value.get("schedule"))
    except ScheduleError as exc:
        raise _Invalid(f"schedule: {exc}") from None
    except Exception as exc:  # a hand-edited record may trip anything inside from_record
        raise _Invalid(f"schedule: {type(exc).__name__}: {exc}") from None
    command = value.get("command")
    prompt = value.get("prompt")
    if command is not None and prompt is not None:
        raise _Invalid("has both command and prompt (exactly one is allowed)")
    if command is None and prompt is None:
        raise _Invalid("needs a command or a prompt")
    if command is not None and (
        not isinstance(command, list)
        or not command
        or not all(isinstance(a, str) for a in command)
        or not command[0]
    ):
        raise _Invalid(f"command: expected a non-empty list of strings, got {command!r}")
    if prompt is not None and (not isinstance(prompt, str) or not prompt.strip()):
        raise _Invalid(f"prompt: expected non-empty text, got {prompt!r}")
    name = value.get("name")
    if name is not None and not isinstance(name, str):
        raise _Invalid(f"name: expected text, got {name!r}")
    # Undecodable bytes from the command line arrive as lone surrogates ("\udcff"):
    # such text cannot be written to jobs.json as UTF-8, nor printed; refuse it here.
    named = [("command", a) for a in command or ()] + [("prompt", prompt), ("name", name)]
    for label, text in named:
        if isinstance(text, str) and not _is_text(text):
            raise _Invalid(f"{label}: {_undecodable(text)}")
    enabled = value.get("enabled", True)
    if not isinstance(enabled, bool):
        raise _Invalid(f"enabled: expected true or false, got {enabled!r}")
    state = value.get("state", "scheduled")
    if state not in STATES:
        raise _Invalid(f"state: {state!r} is not one of {', '.join(STATES)}")
    repeat = value.get("repeat")
    if repeat is None:
        repeat = {"times": None, "completed": 0}
    elif not isinstance(repeat, dict):
        raise _Invalid(f"repeat: expected an object, got {repeat!r}")
    else:
        times = repeat.get("times")
        done = repeat.get("completed", 0)
        if times is not None and (
            isinstance(times, bool) or not isinstance(times, int) or times < 1
        ):
            raise _Invalid(f"repeat.times: expected an integer >= 1 or null, got {times!r}")
        if isinstance(done, bool) or not isinstance(done, int) or done < 0:
            raise _Invalid(f"repeat.completed: expected an integer >= 0, got {done!r}")
        repeat = {**repeat, "times": times, "completed": done}
    next_run = _time_field(value, "next_run_at")
    for key in ("last_run_at", "created_at", "updated_at"):
        _time_field(value, key)
    status = value.get("last_status")
    if status is not None and status not in LAST_STATUSES:
        raise _Invalid(f"last_status: {status!r} is not one of {', '.join(LAST_STATUSES)}")
    error = value.get("last_error")
    if error is not None and not isinstance(error, str):
        raise _Invalid(f"last_error: expected text or null, got {error!r}")
    claim = value.get("fire_claim")
    if claim is not None:
        if not isinstance(claim, dict):
            raise _Invalid(f"fire_claim: expected an object or null, got {claim!r}")
        if not isinstance(claim.get("owner"), str):
            raise _Invalid("fire_claim.owner: expected text")
        for key in ("fire_at", "claimed_at"):
            if claim.get(key) is None:
                raise _Invalid(f"fire_claim.{key}: missing")
            try:
                parse_iso(claim[key])
            except (ValueError, TypeError) as exc:
                raise _Invalid(f"fire_claim.{key}: {exc}") from None
    _number_field(value, "misfire_grace", positive=False)
    _number_field(value, "timeout", positive=True)
    job = dict(value)
    for key in _FIELDS:
        job.setdefault(key, None)
    job["enabled"] = enabled
    job["state"] = state
    job["repeat"] = repeat
    if job["name"] is None:
        job["name"] = derive_name(command, prompt)
    return job, schedule, next_run


def _is_text(text: str) -> bool:
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


def _copy_json(value: Any) -> Any:
    """Deep copy of JSON-shaped data (much faster than ``copy.deepcopy``)."""
    if isinstance(value, dict):
        return {k: _copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_json(v) for v in value]
    return value


# ---------------------------------------------------------------------------
# The parsed file


@attrs.frozen(eq=False)
class _Entry:
    """One element of the ``jobs`` array, validated once.

    ``raw`` is the element's text in the file: its exact source as read, or the JSON
    this process wrote for it. ``job`` is None when the element is invalid (``error``
    says why).
    """

    raw: str
    value: Any
    job: Optional[Job] = None
    schedule: Optional[Schedule] = None
    next_run: Optional[datetime] = None
    error: Optional[str] = None

    @classmethod
    def parse(cls, value: Any, raw: str) -> _Entry:
        try:
            job, schedule, next_run = _check_record(value)
            # An escaped lone surrogate ("\udcff") in any field reads back as text that
            # cannot be written again: such a record would fail every later write.
            if ("\\ud" in raw or "\\uD" in raw) and not _is_text(
                json.dumps(value, ensure_ascii=False)
            ):
                raise _Invalid("holds an escaped lone surrogate (\\udXXX), which is not text")
        except _Invalid as exc:
            return cls(raw=raw, value=value, error=str(exc))
        return cls(raw=raw, value=value, job=job, schedule=schedule, next_run=next_run)

    @property
    def id_text(self) -> Optional[str]:
        value = self.value.get("id") if isinstance(self.value, dict) else None
        return value if isinstance(value, str) else None


class _State:
    """One version of the file, parsed. Immutable once built; derived views are lazy."""

    def __init__(
        self,
        token: Optional[Tuple[int, int, int]],
        data: Optional[bytes],
        head: List[Tuple[str, str]],
        entries: List[_Entry],
        by_id: Optional[Dict[str, int]] = None,
        bad: Optional[Dict[int, str]] = None,
    ) -> None:
        self.token = token
        self.data = data
        self.head = head
        self.entries = entries
        self._jobs: Optional[List[Job]] = None
        self._quarantined: Optional[List[Quarantined]] = None
        self._due: Optional[Tuple[List[datetime], List[str]]] = None
        if by_id is not None and bad is not None:
            # Handed over by a mutation that kept every position: no need to rebuild.
            self.by_id, self.bad = by_id, bad
            return
        self.by_id = {}
        self.bad = {}  # index -> error, for quarantined entries
        for index, entry in enumerate(entries):
            if entry.job is None:
                self.bad[index] = entry.error or "invalid record"
                continue
            job_id = entry.job["id"]
            first = self.by_id.get(job_id)
            if first is not None:
                self.bad[index] = f"duplicate id {job_id!r} (first used by record #{first + 1})"
            else:
                self.by_id[job_id] = index

    @property
    def jobs(self) -> List[Job]:
        if self._jobs is None:
            self._jobs = [
                e.job for i, e in enumerate(self.entries) if e.job is not None and i not in self.bad
            ]
        return self._jobs

    @property
    def quarantined(self) -> List[Quarantined]:
        if self._quarantined is None:
            self._quarantined = [
                Quarantined(
                    index=i,
                    job_id=self.entries[i].id_text,
                    error=f"record #{i + 1}"
                    + (f" (id {self.entries[i].id_text!r})" if self.entries[i].id_text else "")
                    + f": {error}",
                    record=self.entries[i].value,
                )
                for i, error in sorted(self.bad.items())
            ]
        return self._quarantined

    def due_index(self) -> Tuple[List[datetime], List[str]]:
        """Active jobs' next run times, sorted, with their ids (built once per version)."""
        if self._due is None:
            pairs = sorted(
                (e.next_run, i)
                for i, e in enumerate(self.entries)
                if e.job is not None
                and e.next_run is not None
                and i not in self.bad
                and e.job["state"] == "scheduled"
                and e.job["enabled"]
            )
            self._due = ([p[0] for p in pairs], [self.entries[p[1]].job["id"] for p in pairs])  # type: ignore[index]
        return self._due

    def serialize(self) -> bytes:
        """The file's bytes: every record's ``raw`` text, one per line."""
        parts = ['{\n  "version": 1,\n']
        for key, raw in self.head:
            parts.append(f"  {json.dumps(key, ensure_ascii=False)}: {raw},\n")
        if self.entries:
            parts.append('  "jobs": [\n    ')
            parts.append(",\n    ".join([e.raw for e in self.entries]))
            parts.append("\n  ]\n}\n")
        else:
            parts.append('  "jobs": []\n}\n')
        return "".join(parts).encode("utf-8")


class _Txn:
    """A mutation in progress: the entries of the state read under the lock."""

    def __init__(self, store: JobStore, state: _State, now: datetime) -> None:
        self.store = store
        self.state = state
        self.now = now
        self.entries = state.entries
        self.changed = False
        self.deleted = False
        self._index: Optional[Dict[str, int]] = None

    def _own(self) -> None:
        if not self.changed:
            self.entries = list(self.entries)
            self._index = dict(self.state.by_id)
            self.changed = True

    def index_of(self, job_id: str) -> Optional[int]:
        index = (self._index if self._index is not None else self.state.by_id).get(job_id)
        return index

    def entry(self, job_id: str) -> Optional[_Entry]:
        index = self.index_of(job_id)
        return None if index is None else self.entries[index]

    def require(self, job_id: str) -> _Entry:
        entry = self.entry(job_id)
        if entry is None:
            for q in self.state.quarantined:
                if q.job_id == job_id:
                    raise UsageError(
                        f"job {job_id!r} is quarantined ({q.error}); fix it in "
                        f"{self.store.path} by hand"
                    )
            raise JobNotFoundError(job_id)
        return entry

    def put(self, job: Job, schedule: Schedule) -> None:
        """Store ``job`` (a new dict, never one handed out before) in place of its old record."""
        next_run = parse_iso(job["next_run_at"]) if job.get("next_run_at") else None
        raw = json.dumps(job, ensure_ascii=False)
        entry = _Entry(raw=raw, value=job, job=job, schedule=schedule, next_run=next_run)
        self._own()
        assert self._index is not None
        index = self._index.get(job["id"])
        if index is None:
            self._index[job["id"]] = len(self.entries)
            self.entries.append(entry)
        else:
            self.entries[index] = entry

    def delete(self, job_id: str) -> None:
        self._own()
        assert self._index is not None
        index = self._index.pop(job_id)
        del self.entries[index]
        self.deleted = True
        # Positions after the deleted one moved down by one.
        self._index = {k: (v - 1 if v > index else v) for k, v in self._index.items()}

    def id_taken(self, job_id: str) -> bool:
        """True when a job, or a quarantined record, already uses ``job_id``."""
        if self.index_of(job_id) is not None:
            return True
        return any(q.job_id == job_id for q in self.state.quarantined)


# ---------------------------------------------------------------------------
# The store


class JobStore:
    """All access to ``jobs.json``. Safe across threads and processes.

    :param paths: the home's paths (``paths.jobs``, ``paths.jobs_lock``).
    :param clock: the clock every "now" comes from.
    :param default_tz: the zone used when a caller parses schedules for this store.
    :param claim_ttl: seconds a claim stays fresh without renewal.
    :param misfire_grace: default seconds a fire may be late and still run.
    :param lock_timeout: longest wait for the cross-process lock.
    """

    def __init__(
        self,
        paths: HomePaths,
        *,
        clock: Clock,
        default_tz: str = "UTC",
        claim_ttl: float = 300.0,
        misfire_grace: float = 3600.0,
        lock_timeout: float = 10.0,
    ) -> None:
        self.paths = paths
        self.path = paths.jobs
        self.clock = clock
        self.default_tz = default_tz
        self.claim_ttl = float(claim_ttl)
        self.misfire_grace = float(misfire_grace)
        self.lock_timeout = float(lock_timeout)
        self._lock = FileLock(paths.jobs_lock, timeout=lock_timeout)
        self._cache = _State(None, None, [], [])
        # Group commit (``_mutate_grouped``): requests waiting for the next shared write.
        self._group: List[Tuple[Callable[[_Txn], Any], _Slot]] = []
        self._group_guard = threading.Lock()
        self._group_leader = threading.Lock()

    @classmethod
    def from_config(
        cls,
        paths: HomePaths,
        config: Config,
        *,
        clock: Clock,
        default_tz: str = "UTC",
        lock_timeout: float = 10.0,
    ) -> JobStore:
        """A store with ``cron.claim_ttl`` and ``cron.misfire_grace`` from ``config``."""
        return cls(
            paths,
            clock=clock,
            default_tz=default_tz,
            claim_ttl=float(cfg_get(config, "cron", "claim_ttl", default=300)),
            misfire_grace=float(cfg_get(config, "cron", "misfire_grace", default=3600)),
            lock_timeout=lock_timeout,
        )

    # -- loading ------------------------------------------------------------

    def _corrupt(self, fault: str) -> StoreCorruptError:
        return StoreCorruptError(f"{self.path}: {fault}")

    def _load(self, *, locked: bool = False) -> _State:
        """The current state of the file, parsed (from the cache when unchanged).

        Unlocked, the stat token decides. Locked (a mutation), the bytes decide.
        """
        cache = self._cache
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            if cache.token is None and cache.data is None:
                return cache
            state = _State(None, None, [], [])
            self._cache = state
            return state
        except OSError as exc:
            raise self._corrupt(f"cannot read: {exc.strerror or exc}") from None
        try:
            st = os.fstat(fd)
            token = (st.st_ino, st.st_mtime_ns, st.st_size)
            if not locked and token == cache.token:
                return cache
            chunks = []
            while True:
                chunk = os.read(fd, max(st.st_size + 1, 65536))
                if not chunk:
                    break
                chunks.append(chunk)
            data = b"".join(chunks)
        except IsADirectoryError:
            raise self._corrupt("cannot read: it is a directory") from None
        except OSError as exc:
            raise self._corrupt(f"cannot read: {exc.strerror or exc}") from None
        finally:
            os.close(fd)
        if data == cache.data and cache.data is not None:
            if cache.token != token:
                cache.token = token
            return cache
        state = self._parse(token, data, cache)
        self._cache = state
        return state

    def _parse(self, token: Tuple[int, int, int], data: bytes, previous: _State) -> _State:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self._corrupt(
                f"not UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start}"
            ) from None
        try:
            head, records = _scan_document(text)
        except json.JSONDecodeError as exc:
            raise self._corrupt(
                f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
            ) from None
        except _Shape as exc:
            raise self._corrupt(str(exc)) from None
        except RecursionError:
            raise self._corrupt("not valid JSON: nested too deeply") from None
        # Records whose source text did not change keep their validated entry.
        known = {e.raw: e for e in previous.entries}
        entries = []
        for value, raw in records:
            entry = known.get(raw)
            entries.append(entry if entry is not None else _Entry.parse(value, raw))
        return _State(token, data, head, entries)

    def _mutate(self, fn: Callable[[_Txn], T]) -> T:
        """Run ``fn`` on a fresh view under the lock; write once if it changed anything."""
        try:
            self._lock.acquire()
        except LockTimeoutError:
            raise
        except OSError as exc:
            raise StoreError(f"{self._lock.path}: cannot open the lock file: {exc}") from None
        try:
            state = self._load(locked=True)
            txn = _Txn(self, state, self.clock.now())
            result = fn(txn)
            if txn.changed:
                if txn.deleted:
                    new = _State(None, None, state.head, txn.entries)
                else:
                    new = _State(None, None, state.head, txn.entries, txn._index, state.bad)
                data = new.serialize()
                try:
                    self._remove_dead_temps()
                    atomic_write(self.path, data)
                    st = os.stat(self.path)
                except OSError as exc:
                    raise StoreError(f"{self.path}: cannot write: {exc}") from None
                new.token = (st.st_ino, st.st_mtime_ns, st.st_size)
                new.data = data
                self._cache = new
            return result
        finally:
            self._lock.release()

    def _mutate_grouped(self, fn: Callable[[_Txn], T]) -> T:
        """``_mutate`` for small, frequent record updates (a run's end, a claim renewal):
        calls that arrive from several threads while a write is in progress share the
        next write (group commit), in arrival order, instead of rewriting the file once
        each. Each caller still returns only once its change is on disk, and gets the
        store's error if that write failed. ``fn`` must not raise for a normal outcome.
        """
        slot = _Slot()
        with self._group_guard:
            self._group.append((fn, slot))
        with self._group_leader:
            if not slot.done:
                with self._group_guard:
                    batch, self._group = self._group, []
                self._run_group(batch)
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[no-any-return]

    def _run_group(self, batch: List[Tuple[Callable[[_Txn], Any], _Slot]]) -> None:
        def apply(txn: _Txn) -> None:
            for fn, slot in batch:
                slot.result = fn(txn)

        try:
            self._mutate(apply)
        except Exception as exc:
            if len(batch) == 1:
                batch[0][1].error = exc
            elif isinstance(exc, StoreError):
                for _, slot in batch:  # nothing was written: each caller hears why
                    slot.error = exc
            else:
                # One request raised (a bug, or bad input): nothing was written; give
                # every request its own write so one cannot fail the others.
                for fn, slot in batch:
                    try:
                        slot.result = self._mutate(fn)
                    except Exception as each:
                        slot.error = each
        finally:
            for _, slot in batch:
                slot.done = True

    def _remove_dead_temps(self) -> None:
        """Delete temp files a killed writer left behind. Only a lock holder writes
        temp files, and we hold the lock: any that exist now belong to a dead process."""
        prefix = f".{self.path.name}."
        try:
            names = [n for n in os.listdir(self.path.parent) if n.startswith(prefix)]
        except FileNotFoundError:
            return
        for name in names:
            if name.endswith(".tmp"):
                try:
                    os.unlink(self.path.parent / name)
                except OSError:
                    pass

    # -- reads ----------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """Every valid job and every quarantined record (shared objects: read-only)."""
        state = self._load()
        return Snapshot(jobs=state.jobs, quarantined=state.quarantined)

    def list_jobs(self, *, include_completed: bool = False) -> List[Job]:
        """Copies of the job records in file order; completed ones only if asked."""
        return [
            _copy_json(j)
            for j in self._load().jobs
            if include_completed or j["state"] != "completed"
        ]

    def get(self, job_id: str) -> Job:
        """The job record; ``JobNotFoundError`` if absent."""
        state = self._load()
        index = state.by_id.get(job_id) if isinstance(job_id, str) else None
        if index is None:
            raise JobNotFoundError(job_id)
        return _copy_json(state.entries[index].job)

    def get_schedule(self, job_id: str) -> Schedule:
        """The parsed schedule of a job (cached with the record)."""
        state = self._load()
        index = state.by_id.get(job_id)
        if index is None:
            raise JobNotFoundError(job_id)
        schedule = state.entries[index].schedule
        assert schedule is not None
        return schedule

    def schedules(self) -> List[Tuple[str, Schedule]]:
        """``(job_id, schedule)`` of every valid job, from the cache."""
        state = self._load()
        return [(job_id, state.entries[i].schedule) for job_id, i in state.by_id.items()]  # type: ignore[misc]

    def change_token(self) -> Tuple[int, int, int]:
        """A cheap stat-based token that changes whenever another process writes the file."""
        try:
            st = os.stat(self.path)
        except OSError:
            return (0, 0, 0)
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def due(self, now: datetime) -> List[Tuple[str, datetime]]:
        """``(job_id, next_run_at)`` of active jobs whose ``next_run_at <= now``, earliest first."""
        times, ids = self._load().due_index()
        end = bisect.bisect_right(times, now)
        return list(zip(ids[:end], times[:end]))

    def next_due_at(self) -> Optional[datetime]:
        """The earliest ``next_run_at`` among active jobs."""
        times, _ = self._load().due_index()
        return times[0] if times else None

    def upcoming(self, limit: int) -> List[Tuple[str, datetime]]:
        """The ``limit`` earliest ``(job_id, next_run_at)`` among active jobs."""
        times, ids = self._load().due_index()
        return list(zip(ids[:limit], times[:limit]))

    # -- mutations --------------------------------------------------------------

    def add(
        self,
        schedule: Schedule,
        *,
        command: Optional[Sequence[str]] = None,
        prompt: Optional[str] = None,
        name: Optional[str] = None,
        repeat: Optional[int] = None,
        misfire_grace: Optional[float] = None,
        timeout: Optional[float] = None,
    ) -> Job:
        """Create a job (exactly one of command/prompt); returns the stored record.

        ``next_run_at`` is the schedule's first fire time after now (a one-shot:
        its time, even if already past: the missed-run policy then applies).
        ``repeat`` limits a recurring schedule to that many runs.
        """
        if (command is None) == (prompt is None):
            raise UsageError("a job needs exactly one of a command or a prompt")
        if command is not None:
            if isinstance(command, (str, bytes)) or not all(isinstance(a, str) for a in command):
                raise UsageError("command must be a list of arguments (strings)")
            command = list(command)
            if not command or not command[0]:
                raise UsageError("command is empty")
        if prompt is not None and (not isinstance(prompt, str) or not prompt.strip()):
            raise UsageError("prompt is empty")
        if repeat is not None:
            if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
                raise UsageError(f"repeat must be a whole number >= 1, got {repeat!r}")
            if not schedule.recurring:
                raise UsageError("repeat applies to recurring schedules, not to a one-shot")
        for label, number, positive in (
            ("misfire grace", misfire_grace, False),
            ("timeout", timeout, True),
        ):
            if number is not None and (
                isinstance(number, bool)
                or not isinstance(number, (int, float))
                or number < 0
                or (positive and number == 0)
            ):
                raise UsageError(f"{label} must be a number of seconds > 0, got {number!r}")
        if name is not None and not isinstance(name, str):
            raise UsageError("name must be text")

        def fn(txn: _Txn) -> Job:
            now = txn.now
            if schedule.recurring:
                first = schedule.next_after(now)
            else:
                first = schedule.at
            if first is None:
                raise UsageError(f"schedule {schedule.text!r} never fires")
            job_id = _new_id()
            while txn.id_taken(job_id):  # no set of every id: O(1), not O(jobs)
                job_id = _new_id()
            stamp = to_iso(now)
            record: Job = {
                "id": job_id,
                "name": (name or "").strip() or derive_name(command, prompt),
                "schedule": schedule.to_record(),
                "command": command,
                "prompt": prompt,
                "enabled": True,
                "state": "scheduled",
                "repeat": {"times": repeat, "completed": 0},
                "next_run_at": to_iso(first),
                "last_run_at": None,
                "last_status": None,
                "last_error": None,
                "fire_claim": None,
                "misfire_grace": misfire_grace,
                "timeout": timeout,
                "created_at": stamp,
                "updated_at": stamp,
            }
            # What is written must read back as valid, or it would be quarantined.
            try:
                job, checked, _ = _check_record(record)
            except _Invalid as exc:
                raise UsageError(f"invalid job: {exc}") from None
            txn.put(job, checked)
            return _copy_json(job)

        return self._mutate(fn)

    def update(self, job_id: str, **fields: Any) -> Job:
        """Change fields of a job (``UPDATABLE``): name, enabled, command, prompt,
        schedule (a ``Schedule`` or its record), repeat (times, or None), misfire_grace,
        timeout. A new schedule, or enabling a disabled job, recomputes ``next_run_at``
        from now. The result is validated; nothing is written when it is invalid or
        when nothing changed."""
        unknown = sorted(set(fields) - set(UPDATABLE))
        if unknown:
            raise UsageError(
                f"cannot update {', '.join(unknown)} (allowed: {', '.join(UPDATABLE)})"
            )
        schedule_arg = fields.get("schedule")
        if isinstance(schedule_arg, Schedule):
            fields["schedule"] = schedule_arg.to_record()

        def fn(txn: _Txn) -> Job:
            entry = txn.require(job_id)
            old = entry.job
            assert old is not None
            job = _copy_json(old)
            for key, value in fields.items():
                if key == "repeat":
                    if value is not None and (
                        isinstance(value, bool) or not isinstance(value, int) or value < 1
                    ):
                        raise UsageError(f"repeat must be a whole number >= 1, got {value!r}")
                    if value is not None and job["repeat"]["completed"] >= value:
                        raise UsageError(
                            f"job {job_id!r} already ran {job['repeat']['completed']} times"
                        )
                    job["repeat"] = {**job["repeat"], "times": value}
                elif key == "name":
                    job["name"] = (value or "").strip() or derive_name(
                        job.get("command"), job.get("prompt")
                    )
                else:
                    job[key] = _copy_json(value)
            try:
                job, schedule, _ = _check_record(job)
            except _Invalid as exc:
                raise UsageError(f"invalid update of job {job_id!r}: {exc}") from None
            if job["state"] != "completed" and (
                job["schedule"] != old["schedule"] or (job["enabled"] and not old["enabled"])
            ):
                job["next_run_at"] = _opt_iso(_first_fire(schedule, txn.now))
            if job == old:
                return _copy_json(old)
            job["updated_at"] = to_iso(txn.now)
            txn.put(job, schedule)
            return _copy_json(job)

        return self._mutate(fn)

    def remove(self, job_id: str) -> Job:
        """Delete the record; returns it as it was."""

        def fn(txn: _Txn) -> Job:
            entry = txn.require(job_id)
            txn.delete(job_id)
            return _copy_json(entry.job)

        return self._mutate(fn)

    def pause(self, job_id: str) -> Job:
        """``scheduled`` → ``paused`` (``next_run_at`` kept for display). Pausing a paused
        job changes nothing; a completed job cannot be paused (``UsageError``)."""

        def fn(txn: _Txn) -> Job:
            entry = txn.require(job_id)
            job = entry.job
            assert job is not None and entry.schedule is not None
            if job["state"] == "completed":
                raise UsageError(f"job {job_id!r} is completed: it has no runs left to pause")
            if job["state"] == "paused":
                return _copy_json(job)
            job = _copy_json(job)
            job["state"] = "paused"
            job["updated_at"] = to_iso(txn.now)
            txn.put(job, entry.schedule)
            return _copy_json(job)

        return self._mutate(fn)

    def resume(self, job_id: str) -> Job:
        """Back to ``scheduled`` with ``next_run_at`` recomputed from now.

        An interval keeps its anchor (fixed rate); a one-shot gets its own time
        back (if that has passed, the missed-run policy decides). Resuming a
        scheduled job changes nothing; a completed job cannot be resumed
        (``UsageError``).
        """

        def fn(txn: _Txn) -> Job:
            entry = txn.require(job_id)
            job = entry.job
            assert job is not None and entry.schedule is not None
            if job["state"] == "completed":
                raise UsageError(f"job {job_id!r} is completed and cannot be resumed")
            if job["state"] == "scheduled":
                return _copy_json(job)
            job = _copy_json(job)
            job["state"] = "scheduled"
            if not _exhausted(job):
                job["next_run_at"] = _opt_iso(_first_fire(entry.schedule, txn.now))
            job["updated_at"] = to_iso(txn.now)
            txn.put(job, entry.schedule)
            return _copy_json(job)

        return self._mutate(fn)

    # -- firing -----------------------------------------------------------------

    def claim(self, job_id: str, fire_at: datetime, owner: str) -> Claim:
        """Compare-and-set one fire (SPEC §4). Applies the missed-run policy and the
        overlap rule; advances ``next_run_at`` (recurring) or clears it (one-shot,
        last repeat) and counts the repeat, all before returning WON."""
        _check_owner(owner)
        return self._mutate(lambda txn: self._claim_in(txn, job_id, fire_at, owner))

    def claim_many(self, fires: Sequence[Tuple[str, datetime]], owner: str) -> List[Claim]:
        """``claim`` for many fires in one locked write (the built-in loop's batch)."""
        _check_owner(owner)
        fires = list(fires)
        if not fires:
            return []
        return self._mutate(
            lambda txn: [self._claim_in(txn, job_id, at, owner) for job_id, at in fires]
        )

    def claim_manual(self, job_id: str, owner: str) -> Claim:
        """Claim for ``hermes-cron run ID``: fire_at = now; the schedule is not advanced.

        Allowed in any state (paused, disabled and completed jobs too: the user
        asked by hand). Refused (LOST, "already running") while a fresh claim is
        held. A manual run does not count toward ``repeat`` and does not complete
        a one-shot; the claim carries ``manual: true`` so ``finish_run`` knows.
        """
        _check_owner(owner)

        def fn(txn: _Txn) -> Claim:
            now = txn.now
            entry = txn.entry(job_id)
            if entry is None:
                return Claim(job_id, now, GONE, owner, reason=self._gone_reason(txn, job_id))
            job = entry.job
            assert job is not None and entry.schedule is not None
            held = job.get("fire_claim")
            if held and self._fresh(held, now):
                return Claim(
                    job_id,
                    now,
                    LOST,
                    owner,
                    job=_copy_json(job),
                    reason=f"already running (claimed by {held['owner']} at {held['claimed_at']})",
                    manual=True,
                )
            job = _copy_json(job)
            job["fire_claim"] = {
                "fire_at": to_iso(now),
                "owner": owner,
                "claimed_at": to_iso(now),
                "manual": True,
            }
            job["updated_at"] = to_iso(now)
            txn.put(job, entry.schedule)
            return Claim(job_id, now, WON, owner, job=_copy_json(job), manual=True)

        return self._mutate(fn)

    def renew_claim(self, job_id: str, owner: str) -> bool:
        """Refresh ``claimed_at`` if ``owner`` still holds the claim."""

        def fn(txn: _Txn) -> bool:
            entry = txn.entry(job_id)
            if entry is None:
                return False
            job = entry.job
            assert job is not None and entry.schedule is not None
            held = job.get("fire_claim")
            if not held or held.get("owner") != owner:
                return False
            job = _copy_json(job)
            job["fire_claim"]["claimed_at"] = to_iso(txn.now)
            txn.put(job, entry.schedule)
            return True

        return self._mutate_grouped(fn)

    def finish_run(
        self,
        job_id: str,
        owner: str,
        *,
        status: str,
        error: Optional[str],
        started_at: datetime,
    ) -> Optional[Job]:
        """Record a run's end if ``owner`` still holds the claim (else None): last_* fields,
        clear the claim, complete a one-shot or an exhausted repeat."""
        _check_finish_status(status)
        return self._mutate_grouped(
            lambda txn: self._finish_in(txn, job_id, owner, status, error, started_at)
        )

    def finish_runs(
        self, runs: Sequence[Tuple[str, str, str, Optional[str], datetime]]
    ) -> List[Optional[Job]]:
        """``finish_run`` for many runs in one locked write: ``runs`` holds
        ``(job_id, owner, status, error, started_at)``; returns each run's record, or
        None where the owner no longer held the claim."""
        runs = list(runs)
        for run in runs:
            _check_finish_status(run[2])
        if not runs:
            return []
        return self._mutate(lambda txn: [self._finish_in(txn, *run) for run in runs])

    def _finish_in(
        self,
        txn: _Txn,
        job_id: str,
        owner: str,
        status: str,
        error: Optional[str],
        started_at: datetime,
    ) -> Optional[Job]:
        entry = txn.entry(job_id)
        if entry is None:
            return None
        job = entry.job
        assert job is not None and entry.schedule is not None
        held = job.get("fire_claim")
        if not held or held.get("owner") != owner:
            return None
        job = _copy_json(job)
        job["last_run_at"] = to_iso(started_at)
        job["last_status"] = status
        job["last_error"] = error
        job["fire_claim"] = None
        if not held.get("manual") and (not entry.schedule.recurring or _exhausted(job)):
            job["state"] = "completed"
            job["next_run_at"] = None
        job["updated_at"] = to_iso(txn.now)
        txn.put(job, entry.schedule)
        return _copy_json(job)

    def catch_up(self, now: Optional[datetime] = None) -> List[Claim]:
        """Bring every job up to date (at daemon start, and on each reconcile).

        In one locked write: fires too late for their grace become MISSED (a
        recurring job resumes at its next time after now, a one-shot completes);
        stale claims whose run never finished become INTERRUPTED (cleared,
        ``last_status`` error, a one-shot or spent repeat completes); an active
        job with no ``next_run_at`` (a hand-written record) gets one. Fires still
        within grace are left alone: they are due, and callers claim them
        (``due()``). Returns the MISSED and INTERRUPTED claims so the caller can
        record them (``execute_claim`` writes their ledger rows). O(1) per job.
        ``now`` is ignored in favour of the store clock when None.
        """

        def fn(txn: _Txn) -> List[Claim]:
            at = now or txn.now
            out: List[Claim] = []
            for index, entry in enumerate(list(txn.entries)):
                if entry.job is None or index in txn.state.bad:
                    continue
                job, schedule = entry.job, entry.schedule
                assert schedule is not None
                held = job.get("fire_claim")
                if held and not self._fresh(held, at):
                    job = _copy_json(job)
                    job["fire_claim"] = None
                    job["last_status"] = "error"
                    job["last_error"] = (
                        f"interrupted: the run claimed by {held['owner']} at "
                        f"{held['claimed_at']} never finished"
                    )
                    if not held.get("manual") and (not schedule.recurring or _exhausted(job)):
                        job["state"] = "completed"
                        job["next_run_at"] = None
                    job["updated_at"] = to_iso(at)
                    txn.put(job, schedule)
                    out.append(
                        Claim(
                            job["id"],
                            parse_iso(held["fire_at"]),
                            INTERRUPTED,
                            held["owner"],
                            job=_copy_json(job),
                            reason=job["last_error"],
                            manual=bool(held.get("manual")),
                        )
                    )
                    entry = txn.entry(job["id"])  # type: ignore[assignment]
                    assert entry is not None
                    job = entry.job  # type: ignore[assignment]
                    held = None
                if job["state"] != "scheduled" or not job["enabled"] or held:
                    continue
                next_run = parse_iso(job["next_run_at"]) if job["next_run_at"] else None
                if next_run is None:
                    if schedule.recurring and not _exhausted(job):
                        job = _copy_json(job)
                        job["next_run_at"] = _opt_iso(schedule.next_after(at))
                        job["updated_at"] = to_iso(at)
                        txn.put(job, schedule)
                    continue
                if next_run > at:
                    continue
                claim = self._apply_policy(txn, entry, next_run, "", at)
                if claim is not None:
                    out.append(claim)
            return out

        return self._mutate(fn)

    # -- claim internals ------------------------------------------------------------

    def _fresh(self, held: Mapping[str, Any], now: datetime) -> bool:
        """A claim is fresh when it was taken or renewed within ``claim_ttl`` and is not
        dated in the future (a future date means a clock went backwards: stale)."""
        try:
            claimed_at = parse_iso(held["claimed_at"])
        except (KeyError, ValueError, TypeError):
            return False
        age = (now - claimed_at).total_seconds()
        return 0 <= age < self.claim_ttl

    def _grace(self, job: Job) -> float:
        value = job.get("misfire_grace")
        return self.misfire_grace if value is None else float(value)

    def _gone_reason(self, txn: _Txn, job_id: str) -> str:
        for q in txn.state.quarantined:
            if q.job_id == job_id:
                return f"quarantined: {q.error}"
        return "no such job"

    def _claim_in(self, txn: _Txn, job_id: str, fire_at: datetime, owner: str) -> Claim:
        now = txn.now
        if fire_at.tzinfo is None:
            raise UsageError(f"fire time {fire_at.isoformat()} has no UTC offset")
        entry = txn.entry(job_id)
        if entry is None:
            return Claim(job_id, fire_at, GONE, owner, reason=self._gone_reason(txn, job_id))
        job = entry.job
        assert job is not None and entry.schedule is not None
        if job["state"] != "scheduled" or not job["enabled"]:
            why = job["state"] if job["state"] != "scheduled" else "disabled"
            return Claim(job_id, fire_at, INACTIVE, owner, job=_copy_json(job), reason=why)
        if entry.next_run is None:
            return Claim(
                job_id, fire_at, LOST, owner, job=_copy_json(job), reason="no run is pending"
            )
        if fire_at != entry.next_run:
            return Claim(
                job_id,
                fire_at,
                LOST,
                owner,
                job=_copy_json(job),
                reason=f"not due for {to_iso(fire_at)}: next run is {job['next_run_at']}",
            )
        if (fire_at - now).total_seconds() > EARLY_TOLERANCE:
            return Claim(
                job_id,
                fire_at,
                LOST,
                owner,
                job=_copy_json(job),
                reason=f"not due yet (due at {job['next_run_at']})",
            )
        held = job.get("fire_claim")
        if held and self._fresh(held, now):
            # Overlap: the previous fire is still running. Skip this one, move on.
            job = _copy_json(job)
            reason = (
                f"overlap: still running the fire claimed by {held['owner']} "
                f"at {held['claimed_at']}"
            )
            if entry.schedule.recurring:
                job["next_run_at"] = _opt_iso(entry.schedule.next_after(now))
            else:
                # A one-shot's time came while a manual run of it is in progress: that run
                # is its run. Waiting would re-fire forever; completing is the honest end.
                job["next_run_at"] = None
                job["state"] = "completed"
                reason += "; the one-shot is complete"
            job["last_status"] = "skipped"
            job["last_error"] = reason
            job["updated_at"] = to_iso(now)
            txn.put(job, entry.schedule)
            return Claim(job_id, fire_at, SKIPPED, owner, job=_copy_json(job), reason=reason)
        missed = self._apply_policy(txn, entry, fire_at, owner, now)
        if missed is not None:
            return missed
        superseded = None
        if held:
            superseded = Claim(
                job_id,
                parse_iso(held["fire_at"]),
                INTERRUPTED,
                held["owner"],
                reason=(
                    f"interrupted: the run claimed by {held['owner']} at {held['claimed_at']} "
                    "never finished (its claim went stale and a later fire took over)"
                ),
                manual=bool(held.get("manual")),
            )
        effective = fire_at
        if entry.schedule.recurring:
            latest = entry.schedule.latest_at_or_before(now)
            if latest is not None and latest > fire_at:
                effective = latest
        job = _copy_json(job)
        job["fire_claim"] = {
            "fire_at": to_iso(effective),
            "owner": owner,
            "claimed_at": to_iso(now),
        }
        repeat = job["repeat"]
        if repeat["times"] is not None:
            repeat["completed"] += 1
        if not entry.schedule.recurring or _exhausted(job):
            job["next_run_at"] = None
        else:
            job["next_run_at"] = _opt_iso(entry.schedule.next_after(max(now, effective)))
        job["updated_at"] = to_iso(now)
        txn.put(job, entry.schedule)
        reason = ""
        missed_from = None
        if effective != fire_at:
            missed_from = fire_at
            reason = "catch-up: " + _folded(entry.schedule, fire_at, effective)
        return Claim(
            job_id,
            effective,
            WON,
            owner,
            job=_copy_json(job),
            reason=reason,
            missed_from=missed_from,
            superseded=superseded,
        )

    def _apply_policy(
        self, txn: _Txn, entry: _Entry, fire_at: datetime, owner: str, now: datetime
    ) -> Optional[Claim]:
        """The missed-run policy for a due fire: None when it may run (within grace),
        else the MISSED claim after writing the skip-ahead. O(1): one
        ``latest_at_or_before`` and one ``next_after``, never an enumeration."""
        job, schedule = entry.job, entry.schedule
        assert job is not None and schedule is not None
        grace = self._grace(job)
        latest = fire_at
        if schedule.recurring:
            found = schedule.latest_at_or_before(now)
            if found is not None and found > fire_at:
                latest = found
        late = (now - latest).total_seconds()
        if late <= grace:
            return None
        job = _copy_json(job)
        if schedule.recurring:
            resume = schedule.next_after(now)
            job["next_run_at"] = _opt_iso(resume)
            reason = (
                f"missed: due at {to_iso(fire_at)}"
                + (f", latest missed {to_iso(latest)}" if latest != fire_at else "")
                + f", {_seconds(late)} late (grace {_seconds(grace)}); resumes at "
                + (to_iso(resume) if resume else "never")
            )
        else:
            job["next_run_at"] = None
            job["state"] = "completed"
            reason = (
                f"missed: due at {to_iso(fire_at)}, {_seconds(late)} late "
                f"(grace {_seconds(grace)}); the one-shot will not run"
            )
        job["last_status"] = "missed"
        job["last_error"] = reason
        job["updated_at"] = to_iso(now)
        txn.put(job, schedule)
        return Claim(job["id"], fire_at, MISSED, owner, job=_copy_json(job), reason=reason)


class _Slot:
    """One request in a group commit: its result or error, once the write is done."""

    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = False
        self.result: Any = None
        self.error: Optional[BaseException] = None


def _new_id() -> str:
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))


def _check_finish_status(status: str) -> None:
    if status not in FINISH_STATUSES:
        raise UsageError(f"run status must be one of {', '.join(FINISH_STATUSES)}")


def _check_owner(owner: str) -> None:
    if not isinstance(owner, str) or not owner:
        raise UsageError("a claim needs an owner token")


def _exhausted(job: Job) -> bool:
    repeat = job["repeat"]
    return repeat["times"] is not None and repeat["completed"] >= repeat["times"]


def _first_fire(schedule: Schedule, now: datetime) -> Optional[datetime]:
    """Where a (re)started schedule goes next: a recurring one's next time after now,
    a one-shot's own time."""
    return schedule.next_after(now) if schedule.recurring else schedule.at


def _folded(schedule: Schedule, first: datetime, effective: datetime) -> str:
    """Describe the missed times a catch-up run stands for, without enumerating them."""
    if schedule.kind == "interval" and schedule.seconds:
        count = int((effective - first).total_seconds() // schedule.seconds) + 1
        return f"runs once for the {count} fire times from {to_iso(first)} to {to_iso(effective)}"
    return f"runs once for the fire times from {to_iso(first)} to {to_iso(effective)}"


def _opt_iso(value: Optional[datetime]) -> Optional[str]:
    return None if value is None else to_iso(value)


def _seconds(value: float) -> str:
    """A duration for messages: ``90s``, ``2h 5m``, ``3d 0h``."""
    total = int(round(value))
    if total < 120:
        return f"{value:g}s" if value < 10 else f"{total}s"
    minutes, secs = divmod(total, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s"


__all__ = [
    "CLAIM_OUTCOMES",
    "GONE",
    "INACTIVE",
    "INTERRUPTED",
    "LOST",
    "MISSED",
    "SKIPPED",
    "WON",
    "Claim",
    "Job",
    "JobStore",
    "Quarantined",
    "Snapshot",
    "derive_name",
]
