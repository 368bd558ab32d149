"""The PostgreSQL store: several processes on several hosts sharing one set of jobs.

``cron.store: postgresql://user@host/db`` (or ``HERMES_CRON_STORE``). The SQL lives in
``postgres.sql`` (named queries, loaded once); this module only reads, locks and
writes rows. The rules every mutation applies are those of ``rules.py``, as for
``jobs.json`` (``base.RuleStore``).

How it stays safe:

* **One row per job**, ``record`` holding the job exactly as ``jobs.json`` would, plus
  index columns (``next_run_at``, ``active``, ``claim_owner``) and a fencing counter
  ``fence``. A mutation is one transaction: lock the rows (``FOR UPDATE``; for the
  built-in loop's claims of due jobs ``FOR UPDATE SKIP LOCKED``, so replicas never
  queue behind each other: a row locked elsewhere is LOST "claimed elsewhere"), read
  the database's clock *after* the locks are held, apply the rule, and write back
  with a compare-and-set on ``(fence, claim_owner)`` whose row count is checked. A
  new claim bumps ``fence``; the claim, the advance of ``next_run_at`` and the fire's
  ledger row (status ``running``, replaced by the run's final row) commit together.
* **Time** is the database's (``clock_timestamp()``), so hosts with skewed clocks
  agree on which claims are fresh. ``now_from="clock"`` uses the store's clock
  instead (tests that move a fake clock).
* **Notifications.** Every mutation sends ``NOTIFY hermes_cron, '<ids>'`` in its
  transaction; a listener thread (its own connection) calls the ``add_listener``
  callbacks, so a change on any host wakes every daemon at once. After the
  listening connection drops it reconnects with backoff and calls them again (a
  full rescan). ``change_token`` counts what it heard.
* **Quarantine.** A row whose record is not a valid job (``check_record``) is
  reported by ``snapshot().quarantined``, never claimed and never rewritten. A row
  changed outside hermes-cron is taken out of service by a trigger until the next
  catch-up has checked it.
* **Database down.** Nothing connects before the first call. A call that cannot
  reach the database raises ``StoreUnavailableError``, one line naming the URL
  without its password. Nothing is run on a claim that was not committed.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import threading
import time
from contextlib import contextmanager
from datetime import datetime
from importlib import resources
from typing import (
    Any,
    Callable,
    Dict,
    Hashable,
    Iterator,
    List,
    Optional,
    Sequence,
    Set,
    Tuple,
    TypeVar,
)
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import attrs
import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool, PoolTimeout

from .. import punctual
from ..clock import Clock
from ..config import Config, cfg_get
from ..errors import (
    JobNotFoundError,
    LockTimeoutError,
    StoreError,
    StoreUnavailableError,
    UsageError,
)
from ..ledger import is_final_row_of, is_run_end
from ..paths import HomePaths
from ..schedules import Schedule
from ..timeutil import UTC, to_iso
from . import rules
from .base import CatchUpRule, Rule, RuleStore, _claim_rule, policy_from_config
from .records import (
    FIELDS,
    Census,
    Invalid,
    Job,
    Quarantined,
    Record,
    Snapshot,
    census_of,
    check_record,
    copy_json,
    new_id,
)
from .rules import LOST, WON, Claim

T = TypeVar("T")
log = logging.getLogger("hermes_cron.store.postgres")

#: The schema this code creates and understands (``hermes_cron_meta.schema_version``).
SCHEMA_VERSION = 1
#: The notification channel.
CHANNEL = "hermes_cron"
#: Rows locked by one transaction at most (a larger batch is cut into several).
BATCH = 200
#: Run outputs kept per job unless configured (``cron.output_retention``).
OUTPUT_RETENTION = 50
#: The ledger keeps about ``cron.ledger_max_bytes / LEDGER_ROW_BYTES`` rows in all.
LEDGER_MAX_BYTES = 67108864
LEDGER_ROW_BYTES = 512
#: The ledger is pruned on every this many rows written.
LEDGER_PRUNE_EVERY = 100
#: ``schedulers()`` lists processes seen within this many seconds.
SCHEDULERS_SEEN = 600.0
#: The listener's reconnect backoff (seconds), and how long it waits for notifications
#: between checks of its stop flag.
LISTEN_BACKOFF = (0.5, 2.0)
LISTEN_POLL = 0.5
#: Seconds of silence after which the listener checks that its connection is alive.
LISTEN_PING = 5.0
#: The ``application_name`` of the listening connection (the others: ``hermes-cron``).
LISTENER_NAME = "hermes-cron-listen"
_NUL_ESCAPE = "\\u0000"


def _load_queries() -> Dict[str, str]:
    text = resources.files("hermes_cron.store").joinpath("postgres.sql").read_text("utf-8")
    queries: Dict[str, str] = {}
    for chunk in re.split(r"^-- name: ", text, flags=re.M)[1:]:
        name, _, body = chunk.partition("\n")
        queries[name.strip()] = body.strip()
    return queries


#: The named queries of ``postgres.sql``.
Q = _load_queries()


def redact(url: str) -> str:
    """``url`` without its password (in the authority or as a ``password=`` parameter)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return re.sub(r":[^:@/]*@", "@", url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hosts = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}@{hosts}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, v) for k, v in pairs if k.lower() != "password"])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


@attrs.frozen(eq=False)
class _Entry:
    """One row's record, checked once per distinct text."""

    text: str
    value: Any
    record: Optional[Record] = None
    error: Optional[str] = None


def _ordered(value: Any) -> Any:
    """A record with its fields in the file store's order (jsonb keeps its own order)."""
    if not isinstance(value, dict):
        return value
    out = {k: value[k] for k in FIELDS if k in value}
    out.update((k, v) for k, v in value.items() if k not in out)
    return out


def _check_row(job_id: str, text: str) -> _Entry:
    try:
        value = _ordered(json.loads(text))
    except ValueError as exc:  # jsonb always parses; this is for safety only
        return _Entry(text, None, error=f"not JSON: {exc}")
    try:
        job, schedule, next_run = check_record(value)
        if job["id"] != job_id:
            raise Invalid(f"id: the record says {job['id']!r} but its row is {job_id!r}")
    except Invalid as exc:
        return _Entry(text, value, error=str(exc))
    return _Entry(text, value, record=Record(job, schedule, next_run))


def _quarantined(index: int, job_id: str, entry: _Entry) -> Quarantined:
    return Quarantined(
        index=index,
        job_id=job_id,
        error=f"record #{index + 1} (id {job_id!r}): {entry.error}",
        record=entry.value,
    )


def _record_text(job: Job) -> str:
    text = json.dumps(job, ensure_ascii=False)
    if _NUL_ESCAPE in text:
        raise UsageError(
            f"job {job.get('id')!r} holds a NUL character (\\u0000), which PostgreSQL cannot store"
        )
    return text


def _no_nul(value: Any) -> Any:
    """JSON-shaped data with NUL characters replaced (PostgreSQL text cannot hold them)."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, dict):
        return {k: _no_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nul(v) for v in value]
    return value


def _columns(rec: Record) -> Tuple[Optional[datetime], bool, Optional[str]]:
    """``(next_run_at, active, claim_owner)`` of a valid record."""
    job = rec.job
    held = job.get("fire_claim")
    owner = held.get("owner") if isinstance(held, dict) else None
    return rec.next_run, job["state"] == "scheduled" and bool(job["enabled"]), owner


def _utc(value: Optional[datetime]) -> Optional[datetime]:
    return None if value is None else value.astimezone(UTC)


class _Busy:
    """The answer for a row another process held locked (claims of due jobs skip it)."""


_BUSY = _Busy()


@attrs.define
class _Locked:
    """A row read under its lock."""

    id: str
    fence: int
    entry: _Entry
    quarantine: Optional[str]
    owner: Optional[str]


class PostgresStore(RuleStore):
    """Jobs, claims, the run ledger and run outputs in one PostgreSQL database.

    :param url: ``postgresql://`` (or ``postgres://``) URL; libpq parameters allowed.
    :param paths: the home (kept for symmetry with the file store; nothing is written).
    :param clock: the clock waits use; "now" is the database's unless ``now_from="clock"``.
    :param now_from: ``"database"`` (default) or ``"clock"``.
    :param connect_timeout: seconds to wait for a connection before the store counts
        as unavailable.
    """

    def __init__(
        self,
        url: str,
        paths: HomePaths,
        *,
        clock: Clock,
        default_tz: str = "UTC",
        claim_ttl: float = 300.0,
        misfire_grace: float = 3600.0,
        output_retention: int = OUTPUT_RETENTION,
        ledger_max_bytes: int = LEDGER_MAX_BYTES,
        now_from: str = "database",
        connect_timeout: float = 5.0,
        pool_size: Tuple[int, int] = (1, 4),
    ) -> None:
        if now_from not in ("database", "clock"):
            raise ValueError(f"now_from must be 'database' or 'clock', not {now_from!r}")
        self.url = url
        self.paths = paths
        self.clock = clock
        self.default_tz = default_tz
        self.policy = rules.Policy(claim_ttl=float(claim_ttl), misfire_grace=float(misfire_grace))
        self.now_from = now_from
        self.connect_timeout = float(connect_timeout)
        self.output_retention = max(1, int(output_retention))
        self.ledger_rows = max(1000, int(ledger_max_bytes) // LEDGER_ROW_BYTES)
        self._pool_size = pool_size
        self._pool: Optional[ConnectionPool] = None
        self._init_lock = threading.Lock()
        self._closed = False
        self._down = False
        self._local = threading.local()
        self._entries: Dict[str, _Entry] = {}
        self._changes = itertools.count(1)
        self._changed = 0
        self._listeners: List[Callable[[], None]] = []
        self._listener: Optional[_Listener] = None
        self._own_pids: Set[int] = set()
        self.runs = PgRunLog(self)
        self.outputs = PgOutputs(self)

    @classmethod
    def from_config(
        cls,
        url: str,
        paths: HomePaths,
        config: Config,
        *,
        clock: Clock,
        default_tz: str = "UTC",
        **kwargs: Any,
    ) -> PostgresStore:
        """A store on ``url`` with the ``cron.*`` settings of ``config``."""
        policy = policy_from_config(config)

        def number(key: str, default: int) -> int:
            value = cfg_get(config, "cron", key, default=default)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                return default
            return int(value)

        return cls(
            url,
            paths,
            clock=clock,
            default_tz=default_tz,
            claim_ttl=policy.claim_ttl,
            misfire_grace=policy.misfire_grace,
            output_retention=number("output_retention", OUTPUT_RETENTION),
            ledger_max_bytes=number("ledger_max_bytes", LEDGER_MAX_BYTES),
            **kwargs,
        )

    def describe(self) -> str:
        """The URL without its password (``status``'s ``store``)."""
        return redact(self.url)

    # -- connections ------------------------------------------------------------------

    def _unavailable(self, exc: BaseException) -> StoreUnavailableError:
        self._down = True
        return StoreUnavailableError(f"cannot reach the store {self.describe()}: {_one_line(exc)}")

    def _connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        kwargs.setdefault("application_name", "hermes-cron")
        return psycopg.connect(
            self.url, connect_timeout=max(1, round(self.connect_timeout)), **kwargs
        )

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(Q["configure"])
        self._own_pids.add(conn.info.backend_pid)

    def _ready(self) -> ConnectionPool:
        """The pool, opened on first use once the schema is known to be current."""
        pool = self._pool
        if pool is not None:
            return pool
        with self._init_lock:
            if self._closed:
                raise StoreError(f"{self.describe()}: the store is closed")
            if self._pool is None:
                # A first connection of our own: it fails fast with the server's reason
                # (a pool would only time out), and it creates the schema.
                try:
                    conn = self._connect(autocommit=True)
                except psycopg.Error as exc:
                    raise self._unavailable(exc) from None
                try:
                    self._ensure_schema(conn)
                finally:
                    conn.close()
                low, high = self._pool_size
                pool = ConnectionPool(
                    self.url,
                    min_size=low,
                    max_size=high,
                    open=False,
                    kwargs={
                        "autocommit": True,
                        "connect_timeout": max(1, round(self.connect_timeout)),
                        "application_name": "hermes-cron",
                    },
                    configure=self._configure,
                    timeout=max(self.connect_timeout, 10.0),
                    reconnect_timeout=10.0,
                    name="hermes-cron",
                )
                pool.open(wait=False)
                self._pool = pool
            return self._pool

    def _ensure_schema(self, conn: psycopg.Connection[Any]) -> str:
        try:
            return self._create_schema(conn)
        except psycopg.OperationalError as exc:
            raise self._unavailable(exc) from None
        except psycopg.Error as exc:
            raise StoreError(
                f"{self.describe()}: cannot create the schema: {_one_line(exc)}"
            ) from None

    def _create_schema(self, conn: psycopg.Connection[Any]) -> str:
        with conn.transaction():
            conn.execute(Q["lock_schema"])
            version = self._schema_version(conn)
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.describe()}: the database holds hermes-cron schema version "
                    f"{version}, newer than this hermes-cron understands ({SCHEMA_VERSION}); "
                    "upgrade hermes-cron (the database was not changed)"
                )
            if version == SCHEMA_VERSION:
                return f"schema version {SCHEMA_VERSION} is up to date"
            conn.execute(Q["schema"])
            conn.execute(Q["set_schema_version"], {"version": str(SCHEMA_VERSION)})
        return f"created schema version {SCHEMA_VERSION}"

    @staticmethod
    def _schema_version(conn: psycopg.Connection[Any]) -> int:
        row = conn.execute(Q["has_meta"]).fetchone()
        if not row or not row[0]:
            return 0
        row = conn.execute(Q["schema_version"]).fetchone()
        try:
            return int(row[0]) if row else 0
        except ValueError:
            return 0

    def init_schema(self) -> str:
        """Create or upgrade the schema (``hermes-cron store init``); says what it did."""
        with self._init_lock:
            try:
                conn = self._connect(autocommit=True)
            except psycopg.Error as exc:
                raise self._unavailable(exc) from None
            try:
                return self._ensure_schema(conn)
            finally:
                conn.close()

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        pool = self._ready()
        try:
            # While the database is known to be down, do not wait the full timeout.
            conn = pool.getconn(timeout=1.0 if self._down else None)
        except PoolTimeout:
            try:
                self._connect().close()  # the server's own reason, if it has one
            except psycopg.Error as exc:
                raise self._unavailable(exc) from None
            raise self._unavailable(
                RuntimeError("no free connection (the pool is exhausted)")
            ) from None
        try:
            yield conn
        finally:
            pool.putconn(conn)

    def _run(self, body: Callable[[psycopg.Cursor[Any]], T], *, write: bool) -> T:
        """``body`` in one transaction (``write``) or as autocommit reads.

        A pooled connection that died while idle (the server restarted) fails at its
        first statement: the work is retried on another connection, as nothing was
        committed. A failure while committing is never retried (the outcome is unknown;
        the rules make the next attempt safe: a committed claim reads as LOST).
        """
        for attempt in range(6):
            committing = False
            with self._connection() as conn:
                try:
                    if write:
                        with conn.transaction():
                            with conn.cursor() as cur:
                                self._local.cur = cur
                                result = body(cur)
                            committing = True
                    else:
                        with conn.cursor() as cur:
                            result = body(cur)
                    self._down = False
                    return result
                except pg_errors.LockNotAvailable:
                    raise LockTimeoutError(
                        f"{self.describe()}: a job row stayed locked by another process "
                        "for more than 10 s"
                    ) from None
                except psycopg.OperationalError as exc:
                    if conn.broken and not committing and attempt < 5:
                        continue
                    raise self._unavailable(exc) from None
                except psycopg.Error as exc:
                    raise StoreError(f"{self.describe()}: {_one_line(exc)}") from None
                finally:
                    self._local.cur = None
        raise AssertionError("unreachable")  # pragma: no cover

    def _read(self, name: str, params: Optional[Dict[str, Any]] = None) -> List[Any]:
        return self._run(lambda cur: cur.execute(Q[name], params).fetchall(), write=False)

    def _now(self, cur: psycopg.Cursor[Any]) -> datetime:
        if self.now_from == "clock":
            return self.clock.now()
        row = cur.execute(Q["now"]).fetchone()
        assert row is not None
        return row[0].astimezone(UTC)  # type: ignore[no-any-return]

    def _entry(self, job_id: str, text: str) -> _Entry:
        cached = self._entries.get(job_id)
        if cached is not None and cached.text == text:
            return cached
        entry = _check_row(job_id, text)
        self._entries[job_id] = entry
        return entry

    def _notify(self, cur: psycopg.Cursor[Any], ids: Sequence[str]) -> None:
        payload = ",".join(ids)
        cur.execute(Q["notify"], {"payload": payload if len(payload) < 7000 else "*"})

    def _changed_here(self) -> None:
        self._changed = next(self._changes)

    # -- reads --------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """Every valid job and every quarantined row (shared objects: read-only)."""
        jobs: List[Job] = []
        quarantined: List[Quarantined] = []
        rows = self._read("all_jobs")
        if len(self._entries) > 2 * len(rows) + 100:
            # Forget the checked records of rows that are gone (removed jobs).
            keep = {row[0] for row in rows}
            self._entries = {k: v for k, v in self._entries.items() if k in keep}
        for index, (job_id, text, _why) in enumerate(rows):
            entry = self._entry(job_id, text)
            if entry.record is not None:
                jobs.append(entry.record.job)
            else:
                quarantined.append(_quarantined(index, job_id, entry))
        return Snapshot(jobs=jobs, quarantined=quarantined)

    def census(self) -> Census:
        """Jobs by state counted in the database (rows hermes-cron wrote were checked
        when written), and the other rows checked here: a cost that does not read
        every record."""
        states: Dict[str, int] = {
            str(state): int(count) for state, count in self._read("census_states")
        }
        jobs: List[Job] = []
        quarantined: List[Quarantined] = []
        for index, job_id, text in self._read("census_suspects"):
            entry = self._entry(job_id, text)
            if entry.record is not None:
                jobs.append(entry.record.job)  # edited by hand, yet a valid job
            else:
                quarantined.append(_quarantined(index, job_id, entry))
        for state, count in census_of(jobs, []).states.items():
            states[state] = states.get(state, 0) + count
        return Census(states, quarantined)

    def list_jobs(self, *, include_completed: bool = False) -> List[Job]:
        return [
            copy_json(j)
            for j in self.snapshot().jobs
            if include_completed or j["state"] != "completed"
        ]

    def _valid(self, job_id: str) -> Record:
        rows = self._read("one_job", {"id": job_id}) if isinstance(job_id, str) else []
        if not rows:
            raise JobNotFoundError(job_id)
        record = self._entry(job_id, rows[0][0]).record
        if record is None:
            raise JobNotFoundError(job_id)
        return record

    def get(self, job_id: str) -> Job:
        return copy_json(self._valid(job_id).job)  # type: ignore[no-any-return]

    def get_schedule(self, job_id: str) -> Schedule:
        return self._valid(job_id).schedule

    def schedules(self) -> List[Tuple[str, Schedule]]:
        out = []
        for job_id, text, _why in self._read("all_jobs"):
            record = self._entry(job_id, text).record
            if record is not None:
                out.append((job_id, record.schedule))
        return out

    def change_token(self) -> Hashable:
        """Changes whenever this or another process changed the store: what this
        process wrote plus what the listener heard (a unique value while it is not
        listening, so nothing is ever taken as unchanged by mistake)."""
        listener = self._start_listener(wait=2.0)
        if listener is None or not listener.live:
            return ("not listening", next(self._changes))
        return (listener.generation, listener.heard, self._changed)

    def due(self, now: datetime) -> List[Tuple[str, datetime]]:
        rows = self._read("due", {"now": now})
        return [(job_id, at.astimezone(UTC)) for job_id, at in rows]

    def next_due_at(self) -> Optional[datetime]:
        rows = self._read("next_due_at")
        return _utc(rows[0][0]) if rows else None

    def upcoming(self, limit: int) -> List[Tuple[str, datetime]]:
        rows = self._read("upcoming", {"limit": max(0, int(limit))})
        return [(job_id, at.astimezone(UTC)) for job_id, at in rows]

    # -- the backend primitives of RuleStore ------------------------------------------------

    def _lock(
        self, cur: psycopg.Cursor[Any], ids: Sequence[str], *, skip: bool
    ) -> Tuple[Dict[str, _Locked], Set[str]]:
        """Lock ``ids``; returns the rows and, with ``skip``, the ids held elsewhere."""
        rows = cur.execute(Q["lock_jobs_skip" if skip else "lock_jobs"], {"ids": list(ids)})
        locked: Dict[str, _Locked] = {}
        for job_id, text, fence, quarantine, owner in rows.fetchall():
            locked[job_id] = _Locked(job_id, fence, self._entry(job_id, text), quarantine, owner)
        busy: Set[str] = set()
        if skip and len(locked) < len(set(ids)):
            missing = [i for i in ids if i not in locked]
            found = cur.execute(Q["existing_ids"], {"ids": missing}).fetchall()
            busy = {row[0] for row in found}
        return locked, busy

    def _write(
        self,
        cur: psycopg.Cursor[Any],
        locked: Dict[str, _Locked],
        changed: Dict[str, Record],
        now: datetime,
    ) -> Dict[str, int]:
        """Write the changed records (compare-and-set); returns each row's new fence."""
        cols: Dict[str, List[Any]] = {
            k: []
            for k in (
                "ids",
                "records",
                "next_runs",
                "actives",
                "owners",
                "fences",
                "old_fences",
                "old_owners",
            )
        }
        fences: Dict[str, int] = {}
        for job_id, rec in changed.items():
            row = locked[job_id]
            next_run, active, owner = _columns(rec)
            fence = row.fence + (1 if owner is not None and owner != row.owner else 0)
            fences[job_id] = fence
            for key, value in (
                ("ids", job_id),
                ("records", _record_text(rec.job)),
                ("next_runs", next_run),
                ("actives", active),
                ("owners", owner),
                ("fences", fence),
                ("old_fences", row.fence),
                ("old_owners", row.owner),
            ):
                cols[key].append(value)
        written = {r[0] for r in cur.execute(Q["write_jobs"], cols).fetchall()}
        if written != set(changed):
            # Impossible while we hold the row locks; refuse to go on if it ever happens.
            lost = sorted(set(changed) - written)
            raise StoreError(f"{self.describe()}: rows {lost} changed under their lock")
        self._notify(cur, sorted(changed))
        return fences

    def _apply(
        self,
        items: Sequence[Tuple[str, Rule]],
        *,
        grouped: bool = False,
        skip_locked: bool = False,
    ) -> List[Any]:
        out: List[Any] = []
        for start in range(0, len(items), BATCH):
            out += self._apply_batch(items[start : start + BATCH], skip_locked)
        return out

    def _apply_batch(self, items: Sequence[Tuple[str, Rule]], skip_locked: bool) -> List[Any]:
        ids = sorted({job_id for job_id, _ in items if isinstance(job_id, str)})

        def body(cur: psycopg.Cursor[Any]) -> List[Any]:
            locked, busy = self._lock(cur, ids, skip=skip_locked) if ids else ({}, set())
            now = self._now(cur)
            current: Dict[str, Optional[Record]] = {i: r.entry.record for i, r in locked.items()}
            changed: Dict[str, Record] = {}
            answers: List[Any] = []
            step = punctual.pacer()
            for job_id, rule in items:
                step()
                if job_id in busy:
                    answers.append(_BUSY)
                    continue
                new, answer = rule(current.get(job_id), now)
                if new is not None:
                    current[job_id] = changed[job_id] = new
                answers.append(answer)
            if not changed:
                return answers
            wrote.append(True)
            fences = self._write(cur, locked, changed, now)
            won = []
            for n, answer in enumerate(answers):
                if isinstance(answer, Claim) and answer.job_id in fences:
                    answer = answers[n] = answer._replace(fence=fences[answer.job_id])
                    if answer.outcome == WON:
                        won.append(answer)
            if won:
                self._insert_running(cur, won, now)
            return answers

        wrote: List[bool] = []
        result = self._run(body, write=True)
        if wrote:
            self._changed_here()
        return result

    def _insert_running(self, cur: psycopg.Cursor[Any], won: List[Claim], now: datetime) -> None:
        """The ledger rows of the fires just won (status ``running``), in the claim's
        transaction: a fire that was claimed is in the ledger even if its process dies."""
        rows = []
        for claim in won:
            row: Dict[str, Any] = {
                "job_id": claim.job_id,
                "fire_at": to_iso(claim.fire_at),
                "provider": None,
                "started_at": to_iso(now),
                "finished_at": None,
                "status": "running",
                "output": None,
                "error": None,
                "owner": claim.owner,
                "fence": claim.fence,
            }
            if claim.manual:
                row["manual"] = True
            if claim.missed_from is not None:
                row["coalesced_from"] = to_iso(claim.missed_from)
            rows.append(json.dumps(_no_nul(row), ensure_ascii=False, default=str))
        cur.execute(
            Q["runs_insert_running"],
            {
                "job_ids": [c.job_id for c in won],
                "owners": [c.owner for c in won],
                "statuses": ["running"] * len(won),
                "rows": rows,
            },
        )

    def claim(self, job_id: str, fire_at: datetime, owner: str) -> Claim:
        """One fire (a webhook, ``tick``): waits for a row lock held by another process
        rather than skip it, so a fire delivered once is never dropped for a lock."""
        self._local.wait_for_locks = True
        try:
            return super().claim(job_id, fire_at, owner)
        finally:
            self._local.wait_for_locks = False

    def claim_many(self, fires: Sequence[Tuple[str, datetime]], owner: str) -> List[Claim]:
        """``claim`` for the built-in loop's batch of due jobs: a row that another process
        holds locked is LOST ("claimed elsewhere") instead of waited for."""
        rules.check_owner(owner)
        for _, at in fires:
            if at.tzinfo is None:
                raise UsageError(f"fire time {at.isoformat()} has no UTC offset")
        policy = self.policy
        items: List[Tuple[str, Rule]] = [
            (job_id, _claim_rule(job_id, at, owner, policy)) for job_id, at in fires
        ]
        if not items:
            return []
        skip = not getattr(self._local, "wait_for_locks", False)
        answers = self._apply(items, skip_locked=skip)
        out = []
        for (job_id, at), answer in zip(fires, answers):
            if answer is _BUSY:
                answer = Claim(job_id, at, LOST, owner, reason="claimed elsewhere")
            out.append(self._explain(answer))
        return out

    def _catch_up_all(self, rule: CatchUpRule) -> List[Claim]:
        def candidates(cur: psycopg.Cursor[Any]) -> List[str]:
            now = self._now(cur)
            rows = cur.execute(Q["catch_up_candidates"], {"now": now}).fetchall()
            return sorted(r[0] for r in rows)

        ids = self._run(candidates, write=False)
        out: List[Claim] = []
        for start in range(0, len(ids), BATCH):
            out += self._catch_up_batch(ids[start : start + BATCH], rule)
        return out

    def _catch_up_batch(self, ids: List[str], rule: CatchUpRule) -> List[Claim]:
        def body(cur: psycopg.Cursor[Any]) -> List[Claim]:
            # A row locked elsewhere is being changed right now: the next catch-up sees it.
            locked, _ = self._lock(cur, ids, skip=True)
            now = self._now(cur)
            out: List[Claim] = []
            changed: Dict[str, Record] = {}
            step = punctual.pacer()
            for job_id in ids:
                step()
                row = locked.get(job_id)
                if row is None:
                    continue
                rec = row.entry.record
                if rec is None:
                    # Checked: not a job. Say why in its quarantine column (its record is
                    # left exactly as it is).
                    why = row.entry.error or "invalid record"
                    if row.quarantine != why:
                        cur.execute(Q["mark_quarantined"], {"id": job_id, "why": why})
                    continue
                new, claims = rule(rec, now)
                if new is not None:
                    changed[job_id] = new
                elif row.quarantine is not None:
                    changed[job_id] = rec  # valid after all: back in service as it is
                out.extend(claims)
            if changed:
                wrote.append(True)
                self._write(cur, locked, changed, now)
            return out

        wrote: List[bool] = []
        result = self._run(body, write=True)
        if wrote:
            self._changed_here()
        return result

    def _insert(self, make: Callable[[str, datetime], Record]) -> Job:
        def body(cur: psycopg.Cursor[Any]) -> Job:
            now = self._now(cur)
            while True:
                job_id = new_id()
                rec = make(job_id, now)
                next_run, active, owner = _columns(rec)
                params = {
                    "id": job_id,
                    "record": _record_text(rec.job),
                    "next_run": next_run,
                    "active": active,
                    "owner": owner,
                }
                if cur.execute(Q["insert_job"], params).fetchone() is not None:
                    self._notify(cur, [job_id])
                    return copy_json(rec.job)  # type: ignore[no-any-return]

        result = self._run(body, write=True)
        self._changed_here()
        return result

    def _delete(self, job_id: str) -> Job:
        def body(cur: psycopg.Cursor[Any]) -> Job:
            locked, _ = self._lock(cur, [job_id], skip=False)
            row = locked.get(job_id)
            if row is None or row.entry.record is None:
                raise self._missing(job_id)
            if cur.execute(Q["delete_job"], {"id": job_id, "fence": row.fence}).fetchone() is None:
                raise StoreError(f"{self.describe()}: row {job_id!r} changed under its lock")
            self._notify(cur, [job_id])
            return copy_json(row.entry.record.job)  # type: ignore[no-any-return]

        result = self._run(body, write=True)
        self._changed_here()
        return result

    def _quarantine_error(self, job_id: str) -> Optional[str]:
        """Why the row ``job_id`` is not a job (None: there is no such row, or it is valid)."""

        def look(cur: psycopg.Cursor[Any]) -> Optional[str]:
            row = cur.execute(Q["one_job"], {"id": job_id}).fetchone()
            if row is None:
                return None
            return self._entry(job_id, row[0]).error

        if not isinstance(job_id, str):
            return None
        cur = getattr(self._local, "cur", None)
        if cur is not None:  # inside a mutation: ask on its own connection
            return look(cur)
        return self._run(look, write=False)

    def _missing(self, job_id: str) -> Exception:
        error = self._quarantine_error(job_id)
        if error is not None:
            return UsageError(
                f"job {job_id!r} is quarantined ({error}); fix its row in table "
                f"hermes_cron_jobs of {self.describe()} by hand"
            )
        return JobNotFoundError(job_id)

    def _gone_reason(self, job_id: str) -> str:
        error = self._quarantine_error(job_id)
        return f"quarantined: {error}" if error is not None else "no such job"

    # -- moving between stores ------------------------------------------------------------

    def export_records(self) -> List[Any]:
        """Every row's record in creation order, quarantined ones as they are."""
        return [_ordered(row[0]) for row in self._read("export")]

    def import_records(
        self, records: Sequence[Job], *, replace: bool
    ) -> Tuple[List[str], List[str]]:
        """Add records keeping ids and next run times (see ``rules.imported``), all in one
        transaction: an error imports nothing."""
        checked = [rules.imported(r) for r in records]
        texts = [_record_text(rec.job) for rec in checked]

        def body(cur: psycopg.Cursor[Any]) -> Tuple[List[str], List[str]]:
            done: List[str] = []
            kept: List[str] = []
            for rec, text in zip(checked, texts):
                job_id = rec.job["id"]
                next_run, active, owner = _columns(rec)
                params = {
                    "id": job_id,
                    "record": text,
                    "next_run": next_run,
                    "active": active,
                    "owner": owner,
                }
                if cur.execute(Q["insert_job"], params).fetchone() is not None:
                    done.append(job_id)
                    continue
                locked, _ = self._lock(cur, [job_id], skip=False)
                row = locked.get(job_id)
                if not replace or row is None or row.entry.record is None:
                    kept.append(job_id)
                    continue
                self._write(cur, locked, {job_id: rec}, self._now(cur))
                done.append(job_id)
            if done:
                self._notify(cur, done)
            return done, kept

        result = self._run(body, write=True)
        if result[0]:
            self._changed_here()
        return result

    # -- processes using the store ----------------------------------------------------------

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` on every change another process makes (and after the
        listening connection was re-established, when changes may have been missed)."""
        self._listeners.append(callback)
        self._start_listener()

    def _start_listener(self, wait: float = 0.0) -> Optional[_Listener]:
        with self._init_lock:
            if self._closed:
                return None
            if self._listener is None:
                self._listener = _Listener(self)
                self._listener.start()
            listener = self._listener
        if wait and not listener.live:
            listener.live_event.wait(wait)
        return listener

    def _heard(self) -> None:
        for callback in list(self._listeners):
            try:
                callback()
            except Exception:  # a listener must never stop the others, nor the thread
                log.exception("a store listener raised")

    def heartbeat(self, info: Dict[str, Any]) -> None:
        """Upsert this process's row of ``hermes_cron_schedulers`` (never raises)."""
        if self._down or self._closed:
            return  # the loop's own calls find out when the database is back

        def body(cur: psycopg.Cursor[Any]) -> None:
            params = {
                "host": str(info.get("host") or ""),
                "pid": int(info.get("pid") or 0),
                "info": json.dumps(_no_nul(info), ensure_ascii=False, default=str),
            }
            cur.execute(Q["heartbeat"], params)
            cur.execute(Q["heartbeat_prune"])

        try:
            self._run(body, write=False)
        except Exception as exc:
            log.debug("heartbeat not recorded: %s", exc)

    def schedulers(self) -> List[Dict[str, Any]]:
        """Every process that sent a heartbeat in the last ten minutes, newest first."""
        return [row[0] for row in self._read("schedulers", {"seconds": SCHEDULERS_SEEN})]

    def close(self) -> None:
        """Stop the listener and close the pool (the store cannot be used afterwards)."""
        with self._init_lock:
            self._closed = True
            listener, self._listener = self._listener, None
            pool, self._pool = self._pool, None
        if listener is not None:

            def wake() -> None:
                assert pool is not None
                with pool.connection(timeout=1.0) as conn:
                    conn.execute(Q["notify"], {"payload": ""})

            listener.stop(wake if pool is not None and not self._down else None)
        if pool is not None:
            pool.close()


class _Listener(threading.Thread):
    """``LISTEN hermes_cron`` on a connection of its own; calls the store's listeners."""

    def __init__(self, store: PostgresStore) -> None:
        super().__init__(name="hermes-cron-pg-listen", daemon=True)
        self.store = store
        self.generation = 0
        self.heard = 0
        self.live = False
        self.live_event = threading.Event()
        self._halt = threading.Event()

    def stop(self, wake: Optional[Callable[[], None]] = None) -> None:
        """Stop listening; ``wake`` (a NOTIFY) ends the current wait at once."""
        self._halt.set()
        if wake is not None and self.live:
            try:
                wake()
            except Exception:  # the thread still stops within LISTEN_POLL
                pass
        self.join(LISTEN_POLL * 4 + 1)

    def run(self) -> None:
        delay = LISTEN_BACKOFF[0]
        while not self._halt.is_set():
            try:
                # Named apart in pg_stat_activity: an operator sees which is which.
                conn = self.store._connect(autocommit=True, application_name=LISTENER_NAME)
            except psycopg.Error as exc:
                log.debug("listener cannot connect (retry in %.1f s): %s", delay, exc)
                self._halt.wait(delay)
                delay = min(delay * 2, LISTEN_BACKOFF[1])
                continue
            try:
                conn.execute(f"LISTEN {CHANNEL}")
                # Anything may have changed while we were not listening: a new
                # generation (so change tokens differ) and a full rescan by every loop.
                # The pool's sessions may have been cut too: forget whose they were.
                if self.generation:
                    self.store._own_pids.clear()
                self.generation += 1
                self.live = True
                self.live_event.set()
                if self.generation > 1:
                    log.info("listening for store changes again")
                delay = LISTEN_BACKOFF[0]
                self.store._heard()
                self._listen(conn)
            except psycopg.Error as exc:
                if not self._halt.is_set():
                    log.warning("lost the store's notification connection: %s", _one_line(exc))
            finally:
                self.live = False
                self.live_event.clear()
                try:
                    conn.close()
                except psycopg.Error:  # pragma: no cover - closing a dead connection
                    pass
            if not self._halt.is_set():
                self._halt.wait(delay)

    def _listen(self, conn: psycopg.Connection[Any]) -> None:
        quiet_since = time.monotonic()
        while not self._halt.is_set():
            for note in conn.notifies(timeout=LISTEN_POLL):
                if self._halt.is_set():
                    return
                quiet_since = time.monotonic()
                if note.pid in self.store._own_pids:
                    continue  # this process's own write: it knows already
                self.heard += 1
                self.store._heard()
            if time.monotonic() - quiet_since > LISTEN_PING:
                conn.execute("SELECT 1")  # a dead connection raises here
                quiet_since = time.monotonic()


class PgRunLog:
    """The run ledger in ``hermes_cron_runs`` (``RunLog``): every host's runs."""

    def __init__(self, store: PostgresStore) -> None:
        self.store = store

    def append(self, row: Dict[str, Any]) -> None:
        """Add a row; a run's final row replaces the ``running`` row of its claim, and
        is not added again when it is already here (a write retried after a commit
        whose answer the outage cut off)."""
        self._write(row)

    def append_interrupted(self, row: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        """Write the ``error`` row of a run that never finished over its ``running``
        row, unless that run's own final row is already here (its process wrote it,
        then died or lost the database before ``finish_run``): one row per fire.
        Returns that final row when it was here (nothing written), else None."""
        return self._write(row)

    def _write(self, row: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        """Write ``row``, or return the run's own final row that is already here."""
        clean = _no_nul(row)
        text = json.dumps(clean, ensure_ascii=False, default=str)
        params = {
            "job_id": str(clean.get("job_id")),
            "owner": clean.get("owner"),
            "status": str(clean.get("status")),
            "fire_at": str(clean.get("fire_at")),
            "row": text,
        }
        keep = self.store.ledger_rows

        def body(cur: psycopg.Cursor[Any]) -> Optional[Dict[str, Any]]:
            if params["owner"] and params["status"] != "running":
                if cur.execute(Q["runs_finish"], params).fetchone() is not None:
                    return None
                if is_run_end(clean):
                    done = cur.execute(Q["runs_of_fire"], params).fetchall()
                    for (found,) in done:
                        if is_final_row_of(found, clean):
                            return dict(found)
            inserted = cur.execute(Q["runs_insert"], params).fetchone()
            if inserted is not None and inserted[0] % LEDGER_PRUNE_EVERY == 0:
                cur.execute(Q["runs_prune"], {"last": inserted[0], "keep": keep})
            return None

        return self.store._run(body, write=True)  # type: ignore[no-any-return]

    def read(
        self, job_id: Optional[str] = None, limit: Optional[int] = None
    ) -> List[Dict[str, Any]]:
        """Rows newest first (by when they were first written), optionally for one job."""
        if limit is not None and limit <= 0:
            return []
        if job_id is None:
            rows = self.store._read("runs_read", {"limit": limit})
        else:
            rows = self.store._read("runs_read_job", {"job_id": job_id, "limit": limit})
        return [row[0] for row in rows]


class PgOutputs:
    """Run outputs in ``hermes_cron_outputs`` (``RunOutputs``); references ``pg:<id>``."""

    def __init__(self, store: PostgresStore) -> None:
        self.store = store

    def write(self, job_id: str, started: datetime, text: str) -> str:
        """Keep a run's output (the runner has cut it at ``cron.output_max_bytes``); the
        job's outputs beyond ``cron.output_retention`` are deleted in the same
        transaction."""
        body = text.replace("\x00", "\ufffd")  # PostgreSQL text cannot hold NUL
        keep = self.store.output_retention

        def write(cur: psycopg.Cursor[Any]) -> int:
            row = cur.execute(
                Q["output_insert"], {"job_id": job_id, "started": started, "body": body}
            ).fetchone()
            assert row is not None
            cur.execute(Q["output_prune"], {"job_id": job_id, "keep": keep})
            return int(row[0])

        return f"pg:{self.store._run(write, write=True)}"

    def read(self, ref: str) -> str:
        match = re.fullmatch(r"pg:(\d+)", ref or "")
        if match is None:
            raise StoreError(f"{ref}: not a run output of {self.store.describe()}")
        rows = self.store._read("output_read", {"id": int(match.group(1))})
        if not rows:
            raise StoreError(f"{ref}: that run output is no longer kept (cron.output_retention)")
        return str(rows[0][0])


__all__ = ["SCHEMA_VERSION", "PgOutputs", "PgRunLog", "PostgresStore", "redact"]
