"""The file store: ``$HERMES_HOME/cron/jobs.json``, ``cron/runs.jsonl`` and ``cron/output/``.

File format ``{"version": 1, "jobs": [record, ...]}``, one record per line (the
record's fields: SPEC §4 and ``records.py``). The rules every mutation applies live
in ``rules.py``; this module only reads, locks and writes the file. Run ledger rows
go to ``cron/runs.jsonl`` (``ledger.RunLedger``), outputs to ``cron/output/``
(``outputs.OutputFiles``).

How it stays safe:

* **Writes.** Every mutation takes the cross-process lock (bounded wait,
  ``LockTimeoutError``), re-reads the file, changes only the records it means
  to, and replaces the file atomically (temp file, fsync, rename, fsync the
  folder). Records a mutation did not touch are written back with their exact
  source bytes. A mutation that changes nothing does not write.
* **Reads** need no lock (a rename is atomic); they are cached on the file's
  ``(st_ino, st_mtime_ns, st_size)``. Under the lock a mutation compares the
  bytes themselves, so a stat token that happens to repeat can never make a
  write start from a stale view, except for the file this process wrote
  last: it keeps that file open, so its inode cannot be reused, and an
  unchanged token proves no writer replaced it (which saves re-reading a
  large file before every write of a busy daemon).
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
import threading
from datetime import datetime
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, TypeVar

from .. import punctual
from .._frozen import Frozen
from ..clock import Clock
from ..config import Config, cfg_get
from ..errors import (
    JobNotFoundError,
    LockTimeoutError,
    StoreCorruptError,
    StoreError,
    UsageError,
)
from ..ledger import RunLedger
from ..lock import FileLock, atomic_write
from ..paths import HomePaths
from ..schedules import Schedule
from . import rules
from .base import CatchUpRule, Rule, RuleStore, policy_from_config
from .outputs import OutputFiles
from .records import (
    Invalid,
    Job,
    Quarantined,
    Record,
    Snapshot,
    check_record,
    copy_json,
    is_text,
    new_id,
    type_name,
)
from .rules import Claim, Policy

T = TypeVar("T")


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
        raise _Shape(f"top level is {type_name(value)}, expected an object with a 'jobs' list")
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
                    raise _Shape(f"'jobs' is {type_name(value)}, expected a list")
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


# ---------------------------------------------------------------------------
# The parsed file


class _Entry(Frozen):
    """One element of the ``jobs`` array, validated once.

    ``raw`` is the element's text in the file: its exact source as read, or the JSON
    this process wrote for it. ``job`` is None when the element is invalid (``error``
    says why). Not attrs: see hermes_cron._frozen (issue 12).
    """

    __slots__ = ("raw", "blob", "value", "job", "schedule", "next_run", "error")
    __eq__ = Frozen.identity_eq
    __hash__ = Frozen.identity_hash

    raw: str
    #: ``raw`` as UTF-8, kept so a write hands the records' bytes to the kernel as they
    #: are instead of joining and encoding megabytes while holding the GIL.
    blob: bytes
    value: Any
    job: Optional[Job]
    schedule: Optional[Schedule]
    next_run: Optional[datetime]
    error: Optional[str]

    def __init__(
        self,
        raw: str,
        value: Any,
        job: Optional[Job] = None,
        schedule: Optional[Schedule] = None,
        next_run: Optional[datetime] = None,
        error: Optional[str] = None,
    ) -> None:
        self._set(
            raw=raw,
            blob=raw.encode("utf-8"),
            value=value,
            job=job,
            schedule=schedule,
            next_run=next_run,
            error=error,
        )

    @classmethod
    def parse(cls, value: Any, raw: str) -> _Entry:
        try:
            job, schedule, next_run = check_record(value)
            # An escaped lone surrogate ("\udcff") in any field reads back as text that
            # cannot be written again: such a record would fail every later write.
            if ("\\ud" in raw or "\\uD" in raw) and not is_text(
                json.dumps(value, ensure_ascii=False)
            ):
                raise Invalid("holds an escaped lone surrogate (\\udXXX), which is not text")
        except Invalid as exc:
            return cls(raw=raw, value=value, error=str(exc))
        return cls(raw=raw, value=value, job=job, schedule=schedule, next_run=next_run)

    @property
    def record(self) -> Optional[Record]:
        if self.job is None:
            return None
        return Record(self.job, self.schedule, self.next_run)  # type: ignore[arg-type]

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
        #: (times, positions, ids) of the active entries, sorted by (time, position).
        self._due: Optional[Tuple[List[datetime], List[int], List[str]]] = None
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

    def _active(self, index: int) -> Optional[datetime]:
        """The entry's next run time when it belongs in the due index, else None."""
        e = self.entries[index]
        if (
            e.job is None
            or e.next_run is None
            or index in self.bad
            or e.job["state"] != "scheduled"
            or not e.job["enabled"]
        ):
            return None
        return e.next_run

    def due_index(self) -> Tuple[List[datetime], List[str]]:
        """Active jobs' next run times, sorted, with their ids (built once per version)."""
        if self._due is None:
            self._due = self._due_from_scratch()
        return self._due[0], self._due[2]

    def _due_from_scratch(self) -> Tuple[List[datetime], List[int], List[str]]:
        pairs = sorted(
            (at, i) for i in range(len(self.entries)) if (at := self._active(i)) is not None
        )
        return (
            [p[0] for p in pairs],
            [p[1] for p in pairs],
            [self.entries[p[1]].job["id"] for p in pairs],  # type: ignore[index]
        )

    def derive_due(
        self, previous: _State, changed: Sequence[int], step: Callable[[], None] = lambda: None
    ) -> None:
        """Build this version's due index from ``previous``'s (same positions; the
        entries at ``changed`` replaced or appended) instead of sorting every entry:
        a claim batch changes a few dozen records of thousands. ``step`` is called per
        change (each moves up to three lists of every active job: 0.75 ms a batch)."""
        if previous._due is None:
            return
        times, order, ids = (list(previous._due[0]), list(previous._due[1]), list(previous._due[2]))
        for index in dict.fromkeys(changed):  # one job changed twice in a group commit
            step()
            old = previous._active(index) if index < len(previous.entries) else None
            if old is not None:
                pos = bisect.bisect_left(times, old)
                while pos < len(order) and order[pos] != index:
                    pos += 1
                if pos == len(order):  # cannot happen; never serve a wrong index
                    return
                del times[pos], order[pos], ids[pos]
            at = self._active(index)
            if at is not None:
                # Among equal times the file order decides, as in the full sort.
                pos = bisect.bisect_right(times, at)
                while pos > 0 and times[pos - 1] == at and order[pos - 1] > index:
                    pos -= 1
                times.insert(pos, at)
                order.insert(pos, index)
                ids.insert(pos, self.entries[index].job["id"])  # type: ignore[index]
        self._due = (times, order, ids)

    def serialize(self, step: Callable[[], None] = lambda: None) -> List[bytes]:
        """The file's bytes, in pieces (``atomic_write`` writes them with one system
        call per thousand): every record's ``raw`` text, one per line. ``step`` is
        called between slices of records (``punctual.Pacer``)."""
        parts = ['{\n  "version": 1,\n']
        for key, raw in self.head:
            parts.append(f"  {json.dumps(key, ensure_ascii=False)}: {raw},\n")
        if not self.entries:
            parts.append('  "jobs": []\n}\n')
            return ["".join(parts).encode("utf-8")]
        parts.append('  "jobs": [\n    ')
        chunks: List[bytes] = [_RECORD_SEP] * (2 * len(self.entries) + 1)
        chunks[0] = "".join(parts).encode("utf-8")
        entries = self.entries
        for start in range(0, len(entries), _SLICE):
            step()
            end = min(start + _SLICE, len(entries))
            chunks[2 * start + 1 : 2 * end : 2] = [e.blob for e in entries[start:end]]
        chunks[-1] = b"\n  ]\n}\n"
        return chunks


#: What separates two records in ``jobs.json``.
_RECORD_SEP = b",\n    "
#: Records per slice of work between two pacing steps (about 50 µs each).
_SLICE = 1024


class _Txn:
    """A mutation in progress: the entries of the state read under the lock."""

    def __init__(self, store: JobStore, state: _State, now: datetime) -> None:
        self.store = store
        self.state = state
        self.now = now
        self.entries = state.entries
        self.changed = False
        self.deleted = False
        #: The id index, copied only once a record is added or deleted: a claim or a
        #: finish replaces records in place (copying 10,000 ids held the GIL 0.2 ms).
        self._index: Optional[Dict[str, int]] = None
        #: Positions put() replaced or appended (for the due index of the new version).
        self.touched: List[int] = []
        #: Called between the steps of a long mutation (see ``punctual``).
        self.step = punctual.pacer()

    def _own(self) -> None:
        if not self.changed:
            self.entries = list(self.entries)
            self.changed = True

    def _own_index(self) -> Dict[str, int]:
        self._own()
        if self._index is None:
            self._index = dict(self.state.by_id)
        return self._index

    @property
    def by_id(self) -> Dict[str, int]:
        """The id index of the entries as they are now."""
        return self._index if self._index is not None else self.state.by_id

    def index_of(self, job_id: str) -> Optional[int]:
        return self.by_id.get(job_id)

    def entry(self, job_id: str) -> Optional[_Entry]:
        index = self.index_of(job_id)
        return None if index is None else self.entries[index]

    def put(self, rec: Record) -> None:
        """Store ``rec`` (its job a new dict, never one handed out before) in place of its
        old record."""
        job = rec.job
        raw = json.dumps(job, ensure_ascii=False)
        entry = _Entry(raw=raw, value=job, job=job, schedule=rec.schedule, next_run=rec.next_run)
        index = self.index_of(job["id"])
        if index is None:
            by_id = self._own_index()
            index = by_id[job["id"]] = len(self.entries)
            self.entries.append(entry)
        else:
            self._own()
            self.entries[index] = entry
        self.touched.append(index)

    def delete(self, job_id: str) -> None:
        by_id = self._own_index()
        index = by_id.pop(job_id)
        del self.entries[index]
        self.deleted = True
        # Positions after the deleted one moved down by one.
        self._index = {k: (v - 1 if v > index else v) for k, v in by_id.items()}

    def id_taken(self, job_id: str) -> bool:
        """True when a job, or a quarantined record, already uses ``job_id``."""
        if self.index_of(job_id) is not None:
            return True
        return any(q.job_id == job_id for q in self.state.quarantined)


# ---------------------------------------------------------------------------
# The store


class JobStore(RuleStore):
    """The file store: all access to ``jobs.json``. Safe across threads and processes.

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
        output_retention: int = 50,
        ledger_max_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.paths = paths
        self.path = paths.jobs
        self.clock = clock
        self.default_tz = default_tz
        self.policy = Policy(claim_ttl=float(claim_ttl), misfire_grace=float(misfire_grace))
        #: The run ledger and the run outputs of this store.
        self.runs = RunLedger(paths, max_bytes=ledger_max_bytes)
        self.outputs = OutputFiles(paths, retention=output_retention)
        self.lock_timeout = float(lock_timeout)
        self._lock = FileLock(paths.jobs_lock, timeout=lock_timeout)
        self._cache = _State(None, None, [], [])
        #: The state a mutation of this process is writing (set only under the lock).
        self._writing: Optional[_State] = None
        #: The state this process wrote last, and an open descriptor of that file.
        self._pinned: Optional[_State] = None
        self._pin_fd: Optional[int] = None
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
        policy = policy_from_config(config)
        return cls(
            paths,
            clock=clock,
            default_tz=default_tz,
            claim_ttl=policy.claim_ttl,
            misfire_grace=policy.misfire_grace,
            lock_timeout=lock_timeout,
            output_retention=int(cfg_get(config, "cron", "output_retention", default=50)),
            ledger_max_bytes=int(cfg_get(config, "cron", "ledger_max_bytes", default=1 << 26)),
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
            if token == cache.token and (not locked or cache is self._pinned):
                # Locked, the token alone is trusted only for the file this process
                # wrote last and still holds open: its inode cannot be reused by
                # another file while open, so the same token means no writer has
                # replaced it since (writers only ever replace, under the lock).
                return cache
            if not locked:
                # A write of this process between its rename and its cache update, or
                # one that finished since this read took the cache: the file is the
                # state it wrote, already parsed (and with its due index). Without
                # this a reader thread would parse all records again (0.15 s at
                # 10,000 jobs, and a full GC after it).
                for mine in (self._writing, self._cache):
                    if mine is not None and mine is not cache and token == mine.token:
                        return mine
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
        if self._cache is cache:  # never replace a newer view a writer put meanwhile
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
        step = punctual.pacer(budget=0.25)
        for value, raw in records:
            step()
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
                    new = _State(None, None, state.head, txn.entries, txn.by_id, state.bad)
                    new.derive_due(state, txn.touched, txn.step)
                chunks = new.serialize(txn.step)

                def announce(st: os.stat_result) -> None:
                    # Written and synced, about to be renamed into place: readers in
                    # this process know the file by its stat token (a rename keeps it).
                    new.token = (st.st_ino, st.st_mtime_ns, st.st_size)
                    self._writing = new

                try:
                    self._remove_dead_temps()
                    atomic_write(self.path, chunks, before_replace=announce, step=txn.step)
                    # Opened under the lock, so it is the file just written.
                    pin = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
                    st = os.fstat(pin)
                except OSError as exc:
                    self._writing = None
                    raise StoreError(f"{self.path}: cannot write: {exc}") from None
                new.token = (st.st_ino, st.st_mtime_ns, st.st_size)
                # The cache first, then ``_writing`` cleared: a reader must always find
                # the new bytes in one of the two (see ``_load``).
                self._cache = new
                self._writing = None
                self._pin(new, pin)
            return result
        finally:
            self._lock.release()

    def _pin(self, state: _State, fd: int) -> None:
        """Hold ``fd`` (the file ``state`` was written to) open; see ``_load``."""
        old, self._pin_fd, self._pinned = self._pin_fd, fd, state
        if old is not None:
            os.close(old)

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
            copy_json(j)
            for j in self._load().jobs
            if include_completed or j["state"] != "completed"
        ]

    def get(self, job_id: str) -> Job:
        """The job record; ``JobNotFoundError`` if absent."""
        state = self._load()
        index = state.by_id.get(job_id) if isinstance(job_id, str) else None
        if index is None:
            raise JobNotFoundError(job_id)
        return copy_json(state.entries[index].job)

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

    def describe(self) -> str:
        """``json:<path of jobs.json>`` (``status``'s ``store``)."""
        return f"json:{self.path}"

    # -- the backend primitives of RuleStore ------------------------------------------

    def _apply(self, items: Sequence[Tuple[str, Rule]], *, grouped: bool = False) -> List[Any]:
        def fn(txn: _Txn) -> List[Any]:
            out = []
            for job_id, rule in items:
                txn.step()
                entry = txn.entry(job_id)
                new, answer = rule(entry.record if entry is not None else None, txn.now)
                if new is not None:
                    txn.put(new)
                out.append(answer)
            return out

        return (self._mutate_grouped if grouped else self._mutate)(fn)

    def _catch_up_all(self, rule: CatchUpRule) -> List[Claim]:
        def fn(txn: _Txn) -> List[Claim]:
            out: List[Claim] = []
            for index, entry in enumerate(list(txn.entries)):
                txn.step()
                rec = entry.record
                if rec is None or index in txn.state.bad:
                    continue
                new, claims = rule(rec, txn.now)
                if new is not None:
                    txn.put(new)
                out.extend(claims)
            return out

        return self._mutate(fn)

    def _insert(self, make: Callable[[str, datetime], Record]) -> Job:
        def fn(txn: _Txn) -> Job:
            job_id = new_id()
            while txn.id_taken(job_id):  # no set of every id: O(1), not O(jobs)
                job_id = new_id()
            rec = make(job_id, txn.now)
            txn.put(rec)
            return copy_json(rec.job)

        return self._mutate(fn)

    def _delete(self, job_id: str) -> Job:
        def fn(txn: _Txn) -> Job:
            entry = txn.entry(job_id)
            if entry is None:
                raise self._missing(job_id)
            txn.delete(job_id)
            return copy_json(entry.job)

        return self._mutate(fn)

    # -- moving between stores ----------------------------------------------------------

    def export_records(self) -> List[Any]:
        """Every record in file order, quarantined ones as they are."""
        return [copy_json(e.value) for e in self._load().entries]

    def import_records(
        self, records: Sequence[Job], *, replace: bool
    ) -> Tuple[List[str], List[str]]:
        """Add records keeping ids and next run times (see ``rules.imported``)."""
        checked = [rules.imported(r) for r in records]

        def fn(txn: _Txn) -> Tuple[List[str], List[str]]:
            done: List[str] = []
            kept: List[str] = []
            for rec in checked:
                job_id = rec.job["id"]
                if txn.id_taken(job_id) and not (replace and txn.entry(job_id) is not None):
                    kept.append(job_id)
                    continue
                txn.put(rec)
                done.append(job_id)
            return done, kept

        return self._mutate(fn)

    def close(self) -> None:
        """Close the descriptor held on the file last written (see ``_load``)."""
        fd, self._pin_fd, self._pinned = self._pin_fd, None, None
        if fd is not None:
            os.close(fd)

    def __del__(self, _close: Callable[[int], None] = os.close) -> None:
        # ``os`` may already be torn down when this runs at interpreter exit: bind early.
        fd = getattr(self, "_pin_fd", None)
        if fd is not None:
            try:
                _close(fd)
            except OSError:
                pass

    # -- processes using the store ------------------------------------------------------

    def add_listener(self, callback: Callable[[], None]) -> None:
        """One host, one file: readers notice other processes' writes by polling the
        file's stat token, so there is nothing to call back."""

    def heartbeat(self, info: Dict[str, Any]) -> None:
        """The daemon's heartbeat is ``cron/status.json`` (``status_file``), already
        written by the loop: nothing more to keep here."""

    def schedulers(self) -> List[Dict[str, Any]]:
        """The process ``cron/status.json`` names, if any (one home, one scheduler)."""
        from ..status_file import read_status

        disk = read_status(self.paths)
        if not disk.get("heartbeat_at"):
            return []
        keys = ("host", "pid", "provider", "started_at", "heartbeat_at", "stopped_at")
        return [{k: disk.get(k) for k in keys}]

    def _missing(self, job_id: str) -> Exception:
        for q in self._load().quarantined:
            if q.job_id == job_id:
                return UsageError(
                    f"job {job_id!r} is quarantined ({q.error}); fix it in {self.path} by hand"
                )
        return JobNotFoundError(job_id)

    def _gone_reason(self, job_id: str) -> str:
        for q in self._load().quarantined:
            if q.job_id == job_id:
                return f"quarantined: {q.error}"
        return "no such job"


class _Slot:
    """One request in a group commit: its result or error, once the write is done."""

    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = False
        self.result: Any = None
        self.error: Optional[BaseException] = None
