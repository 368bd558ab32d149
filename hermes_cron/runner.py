"""The one run body every provider uses: claim, run through ``run_job``, record.

``run_one_job`` claims a fire with a fresh owner token and hands the claim to
``execute_claim``, which for a won claim:

1. calls ``ctx.hook.run_job(ctx=run_ctx, job=...)`` while the store's renewer
   thread (one per store, shared by its running jobs) renews the claim every
   ``claim_ttl / 3`` seconds (so a long run is not taken over). ``run_ctx`` is
   the context with ``cancel``, a ``threading.Event`` of this run: for a job
   with ``overlap: replace`` the store's cancel watcher sets it when a newer
   fire asked this run to stop (``fire_claim.cancel_requested``, written by
   that fire's claim in any process), and the run is recorded ``cancelled``;
2. writes ``cron/output/<job_id>/<UTC timestamp>.md``;
3. appends one row to the run ledger;
4. calls ``store.finish_run`` (owner-only).

A failing job never makes these raise: a plugin that raises, returns nothing,
or returns garbage becomes an ``error`` run. A failure to write the output or
the ledger is logged and recorded in ``last_error``; the claim is still
released. Skips and misses get their ledger row too. Every row carries the
``attempt`` (1, or 2, 3... for retries).

Every row written is handed to ``ctx.observers`` (``hermes_cron.observers``),
which calls the ``run_finished`` observers on a thread of its own: they never
delay the next fire.

Stopping a replaced run across processes: the claim of the newer fire marks
the running claim ``cancel_requested`` in the record (one compare-and-set, in
whatever process fired it). The process that owns the run watches for that
mark (``_CancelWatch``, one thread per store while such runs go on: it looks
at the store's ``change_token()`` every ``CANCEL_POLL`` seconds, at once when
the store's listener says another process wrote, and at once when the mark
was made in this process), sets the run's ``cancel`` event, and the run ends
as ``cancelled`` (the default executor kills the command's process group).
Its ``finish_run`` then makes the newer fire due, which any process claims.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import secrets
import socket
import threading
import traceback
import weakref
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple, TypeVar

import attrs

from .clock import monotonic
from .config import cfg_get
from .errors import HermesCronError, UsageError
from .punctual import Pacer
from .timeutil import parse_iso, to_iso

if TYPE_CHECKING:
    from .context import CronContext
    from .store import Claim

RUN_STATUSES = ("ok", "error", "timeout", "skipped", "missed", "cancelled")
#: What ``run_job`` may answer: ``cancelled`` for a run that stopped on ``ctx.cancel``.
OUTCOME_STATUSES = ("ok", "error", "timeout", "cancelled")
#: Seconds between two looks for a stop request on a running ``overlap: replace`` job
#: (real time: it is a wait on another process's write, not a schedule).
CANCEL_POLL = 0.25

#: ``execute_claim`` tries this many times to record a run's end when the store is busy.
FINISH_ATTEMPTS = 3
#: Seconds (real time) a run's end is retried while the store cannot be reached (a
#: database restart): long enough to outlast one, short enough not to hold a daemon's
#: stop for long. Past it, the claim goes stale and catch-up records the interruption.
FINISH_UNAVAILABLE_FOR = 30.0

_log = logging.getLogger("hermes_cron.runner")

T = TypeVar("T")


@attrs.frozen
class RunOutcome:
    """What ``run_job`` returns: how the execution went."""

    status: str  # ok | error | timeout | cancelled
    output: str = ""
    error: Optional[str] = None
    exit_code: Optional[int] = None


@attrs.frozen
class RunResult:
    """What ``run_one_job`` / ``fire_due`` return."""

    job_id: str
    fire_at: str  # ISO 8601
    claim: (
        str  # a claim outcome from hermes_cron.store (won, skipped, missed, lost, gone, inactive)
    )
    status: Optional[str] = None  # run status when it ran (ok/error/timeout), or skipped/missed
    output_path: Optional[str] = None
    error: Optional[str] = None
    attempt: int = 1  # 1, or 2, 3... for a retry

    @property
    def ran(self) -> bool:
        return self.claim == "won"


class _NoObservers:
    """What ``observers_of`` answers for a context without observers (a test double)."""

    def submit(self, *args: Any, **kwargs: Any) -> None:
        pass

    def claimed(self, claims: Any) -> None:
        pass

    def running(self, delta: int) -> None:
        pass


_NO_OBSERVERS = _NoObservers()


def observers_of(ctx: Any) -> Any:
    """``ctx.observers`` (``hermes_cron.observers.Observers``), or an object that ignores
    everything when ``ctx`` has none."""
    found = getattr(ctx, "observers", None)
    return found if found is not None else _NO_OBSERVERS


def new_owner_token() -> str:
    """A claim owner token unique to this attempt: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def run_one_job(
    ctx: CronContext, job_id: str, fire_at: Optional[str], *, manual: bool = False
) -> RunResult:
    """Claim ``job_id`` for ``fire_at`` and, if won, execute it (``execute_claim``).

    ``manual=True`` is ``hermes-cron run ID``: claim_manual, the schedule is not
    advanced and ``fire_at`` is ignored (the fire is for now).

    Raises ``UsageError`` for a ``fire_at`` that is not an ISO 8601 time with an
    offset, and the store's errors (``StoreCorruptError``, ``LockTimeoutError``)
    when the claim itself cannot be made; never for a failing job.
    """
    owner = new_owner_token()
    if manual:
        claim = ctx.store.claim_manual(job_id, owner)
    else:
        try:
            when = parse_iso(fire_at)  # type: ignore[arg-type]
        except (ValueError, TypeError) as exc:
            raise UsageError(f"bad fire time {fire_at!r}: {exc}") from None
        claim = ctx.store.claim(job_id, when, owner)
    observers_of(ctx).claimed([claim])
    notify_claimed(ctx, claim)
    return execute_claim(ctx, claim)


def notify_claimed(ctx: CronContext, claim: Claim) -> None:
    """Call ``ctx.claim_listeners`` with the claim, before anything runs.

    The claim (and a recurring job's advanced ``next_run_at``) is already
    written, so a listener can act on it before the run starts: Chronos arms
    the next one-shot here, so a crash mid-run never loses the schedule. A
    listener that raises is logged and ignored; the run goes on.
    """
    for listener in list(getattr(ctx, "claim_listeners", None) or ()):
        try:
            listener(ctx, claim)
        except Exception as exc:
            _log_for(ctx).warning(
                "job %s: a claim listener raised %s: %s", claim.job_id, type(exc).__name__, exc
            )


def execute_claim(
    ctx: CronContext,
    claim: Claim,
    *,
    recorder: Optional[RunRecorder] = None,
    on_start: Optional[Callable[[], None]] = None,
) -> RunResult:
    """Act on a claim: WON runs ``ctx.hook.run_job`` (renewing the claim while it runs),
    writes ``cron/output/<job_id>/<timestamp>.md``, appends the ledger row and calls
    ``store.finish_run``; SKIPPED and MISSED append their ledger row (as does an
    INTERRUPTED claim from ``store.catch_up``, as an ``error``); LOST/GONE/INACTIVE
    do nothing. Never raises for a failing job: errors become the run's status.

    With ``recorder``, a won claim's output, ledger row and ``finish_run`` are left to
    it (``RunRecorder``): this returns as soon as the job has run, with no output
    path yet, so the caller's thread is free for the next due job. ``on_start`` is
    called just before ``run_job``.
    """
    from .store import INTERRUPTED, MISSED, QUEUED, SKIPPED, WON

    if claim.superseded is not None:
        execute_claim(ctx, claim.superseded)  # the ledger row of the run that never finished
    fire_iso = to_iso(claim.fire_at)
    attempt = claim.attempt
    if claim.outcome in (SKIPPED, MISSED, INTERRUPTED):
        status = "error" if claim.outcome == INTERRUPTED else claim.outcome
        now = ctx.clock.now()
        row = _row(ctx, claim, status=status, started=now, finished=now, output=None)
        row["error"] = claim.reason or None
        if claim.outcome == INTERRUPTED:
            written = _append_interrupted(ctx, row)
        else:
            written = _append_row(ctx, row)
        if written:
            observers_of(ctx).submit(claim.job, row)
        return RunResult(
            claim.job_id, fire_iso, claim.outcome, status, None, claim.reason or None, attempt
        )
    if claim.outcome == QUEUED and claim.replacing is not None:
        # The run to stop may be in this process: look now rather than at the next poll.
        _watch_for(ctx.store, _log_for(ctx)).poke()
    if claim.outcome != WON:
        return RunResult(
            claim.job_id, fire_iso, claim.outcome, None, None, claim.reason or None, attempt
        )
    assert claim.job is not None
    started = ctx.clock.now()
    outcome = _run_with_renewal(ctx, claim, on_start)
    finished = ctx.clock.now()
    if recorder is not None:
        recorder.submit(claim, outcome, started, finished)
        return RunResult(claim.job_id, fire_iso, WON, outcome.status, None, outcome.error, attempt)
    until = _recording_deadline()
    output_path, error = _write_records(ctx, claim, outcome, started, finished, until)
    _finish(ctx, claim, outcome.status, error, started, until)
    return RunResult(
        claim.job_id,
        fire_iso,
        WON,
        outcome.status,
        output_path,
        error,
        attempt,
    )


def _write_records(
    ctx: CronContext,
    claim: Claim,
    outcome: RunOutcome,
    started: datetime,
    finished: datetime,
    until: float,
) -> Tuple[Optional[str], Optional[str]]:
    """Write a run's output file and ledger row (tried again while the store is down,
    until ``until``, a ``time.monotonic()`` deadline); returns the output path and the
    run's error with any recording failure added (what ``finish_run`` stores)."""
    problems: List[str] = []
    output_path: Optional[str] = None
    what = f"job {claim.job_id}: its output"
    try:
        output_path = _while_down(
            ctx, what, until, lambda: write_output(ctx, claim, outcome, started, finished)
        )
    except (OSError, HermesCronError) as exc:
        _log_for(ctx).error("job %s: cannot write its output: %s", claim.job_id, exc)
        problems.append(f"cannot write output: {exc}")
    row = _row(
        ctx,
        claim,
        status=outcome.status,
        started=started,
        finished=finished,
        output=output_path,
    )
    row["error"] = outcome.error
    if outcome.exit_code is not None:
        row["exit_code"] = outcome.exit_code
    try:
        _while_down(ctx, f"job {claim.job_id}: the run", until, lambda: ctx.ledger.append(row))
    except (OSError, HermesCronError) as exc:
        _log_for(ctx).error("job %s: cannot record the run: %s", claim.job_id, exc)
        problems.append(f"cannot record the run: {exc}")
    else:
        observers_of(ctx).submit(claim.job, row, _kept_output(ctx, outcome), ran=True)
    error = "; ".join([e for e in [outcome.error, *problems] if e]) or None
    return output_path, error


class RunRecorder:
    """Records finished runs (output file, ledger row, ``finish_run``) on a thread of its
    own, the ends of many runs in one store write.

    A worker that hands its run here is free for the next due job at once: in a burst
    of jobs due together, one run's durable write no longer delays the start of the
    runs queued behind it. Nothing about at-most-once changes (the claim was written
    before the run); until its run is recorded a job keeps its claim, so a fire of it
    due meanwhile is an overlap skip, never a second run.

    Each run's output and ledger row are written as soon as it is handed over. With
    ``hold``, its end (``finish_runs``) waits for the next store write, which comes at
    most every ``hold`` seconds: under load that turns one whole-file ``jobs.json``
    write per few runs into one per ``hold``. It never waits past a second before the
    job's next fire (so that fire's claim finds the run ended), nor once ``flush``,
    ``wait_idle`` or ``close`` asks for it.
    """

    def __init__(
        self,
        ctx: CronContext,
        *,
        busy: Optional[Callable[[], bool]] = None,
        imminent: Optional[Callable[[], bool]] = None,
        max_delay: float = 0.05,
        max_pause: float = 0.25,
        hold: float = 0.0,
        on_recorded: Optional[Callable[[List[Optional[Dict[str, Any]]]], None]] = None,
    ) -> None:
        self.ctx = ctx
        # Told the records ``finish_run`` wrote (None where the claim was lost), so the
        # loop can start at once what a run's end made due (a queued fire).
        self._on_recorded = on_recorded
        # While ``busy()`` (runs still starting), recording waits, up to ``max_delay``
        # seconds: its Python work would otherwise hold the GIL while due jobs start,
        # and waiting a moment lets more runs share the one write.
        self._busy_fn = busy
        # While ``imminent()`` (a run is about to start), recording pauses between its
        # steps, for at most ``max_pause`` in all per batch: a thread that wakes to start
        # a run while this one runs Python waits for the GIL. The budget is per batch,
        # not per step, so a steady stream of fires cannot starve recording: the batch
        # grows with the backlog and the pause per run shrinks. It is short next to a
        # job's interval, so a run is recorded before its job's next fire is claimed.
        self._imminent_fn = imminent
        self.max_delay = float(max_delay)
        self.max_pause = float(max_pause)
        self.hold = float(hold)
        self._cond = threading.Condition()
        self._items: List[Tuple[Claim, RunOutcome, datetime, datetime]] = []
        #: Ends of recorded runs waiting for the store write, and when it must happen
        #: (``time.monotonic()``) at the latest.
        self._held: List[Tuple[Claim, str, Optional[str], datetime]] = []
        self._write_by = float("inf")
        self._last_write = float("-inf")
        self._flushing = 0
        self._busy = 0
        self._closed = False
        self._thread: Optional[threading.Thread] = None

    def submit(
        self, claim: Claim, outcome: RunOutcome, started: datetime, finished: datetime
    ) -> None:
        """Queue a run for recording (records it on this thread once the recorder is closed)."""
        with self._cond:
            if not self._closed:
                self._items.append((claim, outcome, started, finished))
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="hermes-cron-recorder", daemon=True
                    )
                    self._thread.start()
                self._cond.notify_all()
                return
        self._record([(claim, outcome, started, finished)])

    @property
    def pending(self) -> int:
        """Runs queued, being recorded, or waiting for the store write of their end."""
        with self._cond:
            return len(self._items) + self._busy + len(self._held)

    def flush(self) -> None:
        """Write the ends of the runs recorded so far now (a queued fire waits for one)."""
        with self._cond:
            self._write_by = float("-inf")
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every run handed over is recorded, its end written; False on timeout."""
        deadline = _deadline(timeout)
        with self._cond:
            self._flushing += 1
            self._cond.notify_all()
            try:
                while self._items or self._busy or self._held:
                    left = deadline()
                    if left <= 0:
                        return False
                    self._cond.wait(left)
            finally:
                self._flushing -= 1
        return True

    def close(self, timeout: float) -> bool:
        """Record what is queued (up to ``timeout`` seconds), then stop the thread."""
        idle = self.wait_idle(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        return idle

    def _write_due(self) -> float:
        """Seconds until the held ends must be written (0: now). Under the condition."""
        if not self._held:
            return float("inf")
        if self._closed or self._flushing:
            return 0.0
        at = min(self._write_by, self._last_write + self.hold)
        return max(0.0, at - monotonic())

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._items and not self._closed and self._write_due() > 0:
                    self._cond.wait(min(self._write_due(), 3600.0))
                if not self._items and not self._held:
                    self._thread = None
                    return
                if self._items and self._busy_fn is not None and not self._closed:
                    left = _deadline(self.max_delay)
                    while self._busy_fn() and left() > 0 and not self._closed:
                        self._cond.wait(min(0.002, max(left(), 0.0)))
                batch, self._items = self._items, []
                self._busy = len(batch)
            try:
                pause = self._pauser()
                ends = self._write_runs(batch, pause)
                with self._cond:
                    self._held.extend(ends)
                    self._busy = 0
                    for claim, *_ in ends:
                        self._write_by = min(self._write_by, self._latest_write(claim))
                    if self._write_due() > 0:
                        continue
                    held, self._held = self._held, []
                    self._busy = len(held)
                    self._write_by = float("inf")
                    self._last_write = monotonic()
                pause()
                self._write_ends(held)
            except Exception:  # a bug must not stop the recording of later runs
                _log_for(self.ctx).exception("recording %d run(s) failed", len(batch))
            finally:
                with self._cond:
                    self._busy = 0
                    self._cond.notify_all()

    def _latest_write(self, claim: Claim) -> float:
        """When (``time.monotonic()``) the end of ``claim``'s run must be written at the
        latest: ``hold`` from now, or a second before the job's next fire."""
        upcoming = (claim.job or {}).get("next_run_at")
        soon = self.hold
        if upcoming:
            ahead = (parse_iso(upcoming) - self.ctx.clock.now()).total_seconds()
            soon = min(soon, max(0.0, ahead - NEXT_FIRE_MARGIN))
        return monotonic() + soon

    def _pauser(self) -> Callable[[], None]:
        """What recording calls between steps: waits while a run is imminent, within
        one ``max_pause`` budget for the batch (never once the recorder is closing)."""
        if self._imminent_fn is None:
            return lambda: None
        return Pacer(self.max_pause, imminent=self._imminent_fn, stop=lambda: self._closed)

    def _write_runs(
        self,
        batch: List[Tuple[Claim, RunOutcome, datetime, datetime]],
        pause: Callable[[], None],
    ) -> List[Tuple[Claim, str, Optional[str], datetime]]:
        """Each run's output file and ledger row; returns the runs' ends to write."""
        ends = []
        until = _recording_deadline()
        for claim, outcome, started, finished in batch:
            pause()
            _, error = _write_records(self.ctx, claim, outcome, started, finished, until)
            ends.append((claim, outcome.status, error, started))
        return ends

    def _write_ends(self, ends: List[Tuple[Claim, str, Optional[str], datetime]]) -> None:
        """``finish_runs`` for ``ends`` in one store write; tells ``on_recorded``."""
        if not ends:
            return
        written = _finish_many(self.ctx, ends, _recording_deadline())
        jobs: List[Optional[Dict[str, Any]]] = (
            written if written is not None else [None] * len(ends)
        )
        if self._on_recorded is not None:
            self._on_recorded(jobs)

    def _record(
        self,
        batch: List[Tuple[Claim, RunOutcome, datetime, datetime]],
        pause: Callable[[], None] = lambda: None,
    ) -> None:
        ends = self._write_runs(batch, pause)
        pause()
        self._write_ends(ends)


#: A run's end is written at least this long (seconds) before its job's next fire, so
#: the claim of that fire (made up to half a second ahead) finds the run ended.
NEXT_FIRE_MARGIN = 1.0


def _deadline(timeout: float) -> Callable[[], float]:
    """A function returning the seconds left until ``timeout`` from now."""
    import time

    end = time.monotonic() + timeout
    return lambda: end - time.monotonic()


def _log_for(ctx: CronContext) -> logging.Logger:
    return getattr(ctx, "logger", None) or _log


def _row(
    ctx: CronContext,
    claim: Claim,
    *,
    status: str,
    started: datetime,
    finished: datetime,
    output: Optional[str],
) -> Dict[str, Any]:
    row: Dict[str, Any] = {
        "job_id": claim.job_id,
        "fire_at": to_iso(claim.fire_at),
        "provider": ctx.provider_name,
        "started_at": to_iso(started),
        "finished_at": to_iso(finished),
        "status": status,
        "output": output,
        "error": None,
        "owner": claim.owner or None,
        "attempt": claim.attempt,
    }
    if claim.due_at is not None:
        row["due_at"] = to_iso(claim.due_at)  # a retry: when this attempt was due
    if claim.manual:
        row["manual"] = True
    if claim.missed_from is not None:
        row["coalesced_from"] = to_iso(claim.missed_from)
        row["note"] = claim.reason
    return row


def _append_row(ctx: CronContext, row: Dict[str, Any]) -> bool:
    """Write the row of a skip or a miss; whether it was written."""
    try:
        ctx.ledger.append(row)
    except (OSError, HermesCronError) as exc:
        _log_for(ctx).error("job %s: cannot record %s: %s", row["job_id"], row["status"], exc)
        return False
    return True


def _append_interrupted(ctx: CronContext, row: Dict[str, Any]) -> bool:
    """Write the row of a run found interrupted; whether it was written. Not when the
    run had recorded its end: its process wrote the ledger row, then died before the
    end reached the record (a moment later, see ``RunRecorder``). The record then
    takes that row's end, so ``status`` and ``list`` say what the ledger says."""
    try:
        own = ctx.ledger.append_interrupted(row)
    except (OSError, HermesCronError) as exc:
        _log_for(ctx).error("job %s: cannot record %s: %s", row["job_id"], row["status"], exc)
        return False
    if own is None:
        return True
    try:
        ctx.store.settle_run(row["job_id"], own)
    except (OSError, HermesCronError) as exc:
        _log_for(ctx).error("job %s: cannot settle its interrupted run: %s", row["job_id"], exc)
    return False


def _run_with_renewal(
    ctx: CronContext, claim: Claim, on_start: Optional[Callable[[], None]] = None
) -> RunOutcome:
    """Call ``run_job`` while the store's renewer keeps the claim fresh (and, for an
    ``overlap: replace`` job, the cancel watcher looks for a stop request); never raises
    for the job."""
    renewer = _renewer_for(ctx.store, _log_for(ctx))
    token = renewer.add(claim.job_id, claim.owner)
    stop = _Stop()
    watch: Optional[_CancelWatch] = None
    watched = 0
    if (claim.job or {}).get("overlap") == "replace":
        watch = _watch_for(ctx.store, _log_for(ctx))
        watched = watch.add(claim.job_id, claim.owner, stop)
    observers_of(ctx).running(1)
    if on_start is not None:
        on_start()
    try:
        result = ctx.hook.run_job(ctx=_run_context(ctx, stop.event), job=claim.job)
    except Exception as exc:
        _log_for(ctx).error("job %s: run_job raised %s: %s", claim.job_id, type(exc).__name__, exc)
        result = RunOutcome(
            status="error",
            output=traceback.format_exc(),
            error=f"run_job raised {type(exc).__name__}: {exc}",
        )
    except BaseException:
        # Ctrl-C or exit mid-run: release the claim before going.
        _finish(ctx, claim, "error", "interrupted while running", ctx.clock.now(), 0.0)
        raise
    finally:
        renewer.remove(token)
        if watch is not None:
            watch.remove(watched)
        observers_of(ctx).running(-1)
    if result is None:
        return RunOutcome(status="error", error="no run_job implementation handled this job")
    if not isinstance(result, RunOutcome):
        return RunOutcome(
            status="error",
            error=f"run_job returned {type(result).__name__}, expected a RunOutcome",
        )
    if result.status not in OUTCOME_STATUSES:
        return RunOutcome(
            status="error",
            output=result.output,
            error=f"run_job returned the unknown status {result.status!r}",
            exit_code=result.exit_code,
        )
    if stop.event.is_set() and result.status in ("error", "timeout", "cancelled"):
        # It failed because it was stopped: that is a cancel, not a failure to retry.
        why = f"cancelled: {stop.reason or 'asked to stop'}"
        error = f"{why} ({result.error})" if result.error else why
        return attrs.evolve(result, status="cancelled", error=error)
    return result


class _Stop:
    """A run's stop request: the event ``run_job`` sees as ``ctx.cancel``, and why."""

    __slots__ = ("event", "reason")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason = ""


def _run_context(ctx: CronContext, cancel: threading.Event) -> CronContext:
    """The context ``run_job`` gets: the service's, with this run's ``cancel`` event."""
    if attrs.has(type(ctx)):
        return attrs.evolve(ctx, cancel=cancel)
    return ctx


#: A store's renewer thread exits after this many (real) seconds with no run to renew,
#: so a burst of runs reuses one thread instead of starting one per run.
RENEWER_LINGER = 5.0

_RENEWERS: weakref.WeakKeyDictionary[Any, _Renewer] = weakref.WeakKeyDictionary()
_RENEWERS_GUARD = threading.Lock()


def _renewer_for(store: Any, log: logging.Logger) -> _Renewer:
    with _RENEWERS_GUARD:
        renewer = _RENEWERS.get(store)
        if renewer is None:
            renewer = _RENEWERS[store] = _Renewer(store, log)
        return renewer


class _Renewer:
    """Keeps the claims of a store's running jobs fresh, from one thread.

    Each run registers its claim when it starts and drops it when it ends; the thread
    renews every registered claim ``claim_ttl / 3`` seconds (of the store's clock) after
    it was taken or last renewed, and stops renewing one that was taken over. There is
    no thread per run (starting and joining one cost each run time before it started).
    """

    def __init__(self, store: Any, log: logging.Logger) -> None:
        self.store = store
        self.log = log
        self._lock = threading.Lock()
        self._claims: Dict[int, List[Any]] = {}  # token -> [job_id, owner, next renewal]
        self._tokens = itertools.count()
        self._wake = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._idle = True  # the thread waits in real time for work, not on the clock

    def _interval(self) -> timedelta:
        return timedelta(seconds=max(float(self.store.claim_ttl) / 3.0, 0.01))

    def add(self, job_id: str, owner: str) -> int:
        """Start renewing ``owner``'s claim on ``job_id``; returns the token for ``remove``."""
        with self._lock:
            token = next(self._tokens)
            self._claims[token] = [job_id, owner, self.store.clock.now() + self._interval()]
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="hermes-cron-renewer", daemon=True
                )
                self._thread.start()
            elif self._idle:
                self._wake.set()
        return token

    def remove(self, token: int) -> None:
        """Stop renewing (the run ended)."""
        with self._lock:
            self._claims.pop(token, None)
            if not self._claims:
                self._wake.set()  # stop waiting on the clock: nothing to renew

    def _run(self) -> None:
        clock = self.store.clock
        while True:
            self._wake.clear()
            with self._lock:
                if not self._claims:
                    self._idle = True
                else:
                    self._idle = False
                    now = clock.now()
                    due = [(t, c[0], c[1]) for t, c in self._claims.items() if c[2] <= now]
                    target = min(c[2] for c in self._claims.values())
            if self._idle:
                if not self._wake.wait(RENEWER_LINGER):
                    with self._lock:
                        if not self._claims:
                            self._thread = None
                            return
                continue
            if not due:
                clock.wait(self._wake, (target - now).total_seconds())
                continue
            for token, job_id, owner in due:
                try:
                    held = self.store.renew_claim(job_id, owner)
                except Exception as exc:  # keep renewing: the next attempt may succeed
                    self.log.warning("job %s: cannot renew the claim: %s", job_id, exc)
                    held = True
                with self._lock:
                    entry = self._claims.get(token)
                    if entry is None:
                        continue
                    if held:
                        entry[2] = clock.now() + self._interval()
                    else:
                        self.log.warning("job %s: the claim was taken over while running", job_id)
                        del self._claims[token]


_WATCHES: weakref.WeakKeyDictionary[Any, _CancelWatch] = weakref.WeakKeyDictionary()


def _watch_for(store: Any, log: logging.Logger) -> _CancelWatch:
    with _RENEWERS_GUARD:
        watch = _WATCHES.get(store)
        if watch is None:
            watch = _WATCHES[store] = _CancelWatch(store, log)
        return watch


class _CancelWatch:
    """Stops the runs of this store's ``overlap: replace`` jobs that a newer fire asked
    to stop, whichever process's claim asked (``fire_claim.cancel_requested``).

    One thread per store, only while such runs go on. It reads the records of the
    runs it watches whenever the store's ``change_token()`` moved (looked at every
    ``CANCEL_POLL`` seconds of real time, at once when the store's listener reports a
    write by another host, or when ``poke`` says this process asked), and sets the
    run's ``cancel`` event when its claim carries the request.
    """

    def __init__(self, store: Any, log: logging.Logger) -> None:
        self.store = store
        self.log = log
        self._lock = threading.Lock()
        self._runs: Dict[int, Tuple[str, str, _Stop]] = {}
        self._tokens = itertools.count()
        self._wake = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._listening = False

    def add(self, job_id: str, owner: str, stop: _Stop) -> int:
        """Watch ``owner``'s run of ``job_id``; returns the token for ``remove``."""
        with self._lock:
            token = next(self._tokens)
            self._runs[token] = (job_id, owner, stop)
            if not self._listening:
                self._listening = True
                try:
                    self.store.add_listener(self._wake.set)
                except Exception as exc:  # polling still sees every write
                    self.log.debug("cancel watch: no store listener: %s", exc)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="hermes-cron-cancel-watch", daemon=True
                )
                self._thread.start()
        self._wake.set()  # the request may already be there
        return token

    def remove(self, token: int) -> None:
        with self._lock:
            self._runs.pop(token, None)

    def poke(self) -> None:
        """Look now: this process just asked a run to stop."""
        self._wake.set()

    def _run(self) -> None:
        from .store.rules import cancel_requested

        seen: Any = None
        while True:
            self._wake.clear()
            with self._lock:
                if not self._runs:
                    self._thread = None
                    return
                runs = list(self._runs.values())
            try:
                token = self.store.change_token()
            except Exception:  # look anyway: an unreadable token must not hide a request
                token = object()
            if token != seen:
                seen = token
                for job_id, owner, stop in runs:
                    if stop.event.is_set():
                        continue
                    try:
                        request = cancel_requested(self.store.get(job_id), owner)
                    except Exception as exc:  # removed, or the store failed: let it run
                        self.log.debug("job %s: cannot look for a stop request: %s", job_id, exc)
                        continue
                    if request:
                        why = f"replaced by the fire due at {request.get('fire_at')}"
                        self.log.info("job %s: stopping its run: %s", job_id, why)
                        stop.reason = why
                        stop.event.set()
            self._wake.wait(CANCEL_POLL)


def _recording_deadline() -> float:
    import time

    return time.monotonic() + FINISH_UNAVAILABLE_FOR


def _while_down(ctx: CronContext, what: str, until: float, call: Callable[[], T]) -> T:
    """``call()``, tried again while the store cannot be reached (a database restart),
    until ``until`` (``time.monotonic()``): an outage does not cost a run its record.
    The last ``StoreUnavailableError`` is raised past it."""
    import time

    from .errors import StoreUnavailableError

    pause = 0.1
    while True:
        try:
            return call()
        except StoreUnavailableError as exc:
            if time.monotonic() + pause > until:
                raise
            if pause == 0.1:
                _log_for(ctx).warning("cannot record %s yet (retrying): %s", what, exc)
            time.sleep(pause)
            pause = min(pause * 2, 2.0)


def _finish(
    ctx: CronContext,
    claim: Claim,
    status: str,
    error: Optional[str],
    started: datetime,
    until: float,
) -> None:
    """``finish_run``, retried while the store is busy, or down until ``until``; logged,
    never raised."""
    _finish_many(ctx, [(claim, status, error, started)], until)


def _finish_many(
    ctx: CronContext, finishes: List[Tuple[Claim, str, Optional[str], datetime]], until: float
) -> Optional[List[Optional[Dict[str, Any]]]]:
    """``finish_run`` for many runs in one write (``store.finish_runs``; one run through
    ``store.finish_run``), retried a few times when the store is busy and until ``until``
    (``time.monotonic()``) while it cannot be reached; logged, never raised. Returns the
    records written (None where the claim was lost), or None when the store failed."""
    from .errors import LockTimeoutError

    runs = [(c.job_id, c.owner, status, error, started) for c, status, error, started in finishes]
    what = f"job {runs[0][0]}: the run's end" if len(runs) == 1 else f"the end of {len(runs)} runs"

    def finish() -> List[Optional[Dict[str, Any]]]:
        if len(runs) == 1:
            job_id, owner, status, error, started = runs[0]
            return [
                ctx.store.finish_run(job_id, owner, status=status, error=error, started_at=started)
            ]
        return list(ctx.store.finish_runs(runs))

    for attempt in range(1, FINISH_ATTEMPTS + 1):
        try:
            jobs = _while_down(ctx, what, until, finish)
        except LockTimeoutError as exc:
            if attempt < FINISH_ATTEMPTS:
                continue
            _log_for(ctx).error("cannot record %s: %s", what, exc)
            return None
        except HermesCronError as exc:
            _log_for(ctx).error("cannot record %s: %s", what, exc)
            return None
        for job_id, job in zip((r[0] for r in runs), jobs):
            if job is None:
                _log_for(ctx).warning(
                    "job %s: the run ended but the job is gone or its claim was taken over",
                    job_id,
                )
        return jobs
    return None


def write_output(
    ctx: CronContext,
    claim: Claim,
    outcome: RunOutcome,
    started: datetime,
    finished: datetime,
) -> str:
    """Keep a run's output in the store (the file store: ``cron/output/<job_id>/<UTC
    start>.md``) and return where it is, as the ledger row's ``output`` names it."""
    limit = int(cfg_get(ctx.config, "cron", "output_max_bytes", default=DEFAULT_OUTPUT_MAX))
    kept = attrs.evolve(outcome, output=cut_output(outcome.output or "", limit))
    return ctx.store.outputs.write(
        claim.job_id, started, render_output(claim, kept, started, finished)
    )


#: ``cron.output_max_bytes`` when the config has none.
DEFAULT_OUTPUT_MAX = 1024 * 1024


def _kept_output(ctx: CronContext, outcome: RunOutcome) -> str:
    """The output as kept in the store (cut at ``cron.output_max_bytes``): what observers get."""
    limit = int(cfg_get(ctx.config, "cron", "output_max_bytes", default=DEFAULT_OUTPUT_MAX))
    return cut_output(outcome.output or "", limit)


def cut_output(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` bytes of UTF-8 (on a character boundary),
    with a marker line saying so; shorter text is returned as it is."""
    data = text.encode("utf-8", "surrogateescape")
    if len(data) <= max_bytes:
        return text
    head = data[:max_bytes].decode("utf-8", "ignore")
    return (
        head
        + ("" if head.endswith("\n") else "\n")
        + f"[hermes-cron: output cut at {max_bytes} bytes of {len(data)} "
        + "(cron.output_max_bytes)]\n"
    )


def render_output(claim: Claim, outcome: RunOutcome, started: datetime, finished: datetime) -> str:
    """The markdown of one run's output file: a small header, then the output."""
    job = claim.job or {}
    lines = [
        f"# {job.get('name') or claim.job_id}",
        "",
        f"- job: `{claim.job_id}`",
        f"- fire time: {to_iso(claim.fire_at)}" + (" (manual run)" if claim.manual else ""),
    ]
    if claim.missed_from is not None:
        lines.append(f"- catch-up: {claim.reason}")
    lines += [
        f"- started: {to_iso(started)}",
        f"- finished: {to_iso(finished)}",
        f"- status: {outcome.status}",
    ]
    if outcome.exit_code is not None:
        lines.append(f"- exit code: {outcome.exit_code}")
    if outcome.error:
        lines.append(f"- error: {outcome.error}")
    body = outcome.output or ""
    # A fence longer than any backtick run inside the output keeps the block intact.
    longest = max((len(m) for m in re.findall(r"`+", body)), default=0)
    fence = "`" * max(3, longest + 1)
    lines += ["", "## Output", "", fence + "text", body.rstrip("\n"), fence, ""]
    return "\n".join(lines)


__all__ = [
    "CANCEL_POLL",
    "OUTCOME_STATUSES",
    "RUN_STATUSES",
    "RunRecorder",
    "RunOutcome",
    "RunResult",
    "execute_claim",
    "new_owner_token",
    "observers_of",
    "render_output",
    "run_one_job",
    "write_output",
]
