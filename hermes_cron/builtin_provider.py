"""The built-in provider: an in-process scheduler that sleeps until the next due time.

It is registered in code (never discovered) with ``trylast`` implementations of
every provider hook, so it answers any hook the selected provider leaves out
and is the fallback when no provider is usable.

The loop (``start``):

1. catch-up: ``store.catch_up()`` records missed fires and interrupted runs;
2. repeat until ``stop_event`` is set:

   * ``now = clock.now()``; once the earliest fire is the claim lead away
     (``PRECLAIM_LEAD``, 50 ms, or three times the slowest recent claim write when
     that is longer, up to 0.25 s), claim every fire due within ``PRECLAIM``
     (0.25 s) past that lead in one locked write
     (``store.claim_many`` with a fresh owner token), in the loop thread (while
     other schedulers share the store, no more fires than it has free workers:
     ``BuiltinLoop._within_capacity``). A
     claim for a fire still in the future goes to the dispatcher thread, which
     hands it to the worker pool at its due time (on the real clock 1.5 ms
     before it, and the worker waits out the rest, so the run starts from a
     thread already awake); anything else that needs recording or running (won,
     skipped, missed) goes to the pool at once. The
     pool is bounded (``cron.max_workers``) and calls ``runner.execute_claim``,
     so one slow job never delays the loop, and a claim write (which may wait
     for the store lock) never delays a run that is due. A worker hands each
     finished run to a ``runner.RunRecorder`` (output, ledger row,
     ``finish_run``, many runs per write) and is free for the next due job at
     once. The recorder pauses between its steps while a run is about to start
     (up to 0.25 s per batch), so the GIL is free when that run's thread needs it;
   * sleep with ``clock.wait`` until the claim lead before the earliest
     unclaimed ``next_run_at``, but at most ``POLL_CAP`` (1 s): a change to
     ``jobs.json`` by another process is noticed within a second (the store
     re-reads only when the file's stat token changed), and a suspend or a
     wall-clock jump is noticed within a second of the process running again.
     There is no fixed tick and no one-minute floor. ``on_jobs_changed`` in
     this process wakes the loop at once.

   Claiming ahead means the overlap rule is applied then, and a job paused or
   removed in the last 0.25 s before its fire (up to 0.5 s when claim writes are
   slow) still runs that fire.

   Wall time is read again after every wake, so a clock jump or a suspend goes
   through the store's missed-run policy (one coalesced catch-up within
   ``misfire_grace``, else ``missed``), and a clock that went backwards fires
   nothing twice (``next_run_at`` was already advanced). The overlap rule (a
   recurring job still running is skipped) lives in the store's claim.

3. on stop: fires already claimed ahead are started at their due time (at most
   0.25 s away); then wait up to ``min(cron.job_timeout, 30 s)`` for running
   jobs; claims still queued after that are released with an ``error`` record.

Failures never stop the loop: an exception in a job or in an iteration is
logged and recorded in ``cron/status.json`` (``last_error``); repeated
iteration failures back off (0.5 s doubling up to 30 s). The heartbeat in
``cron/status.json`` is refreshed every ``HEARTBEAT_INTERVAL`` seconds.

Workers are daemon threads (not ``concurrent.futures``, whose workers the
interpreter joins at exit): a daemon asked to stop exits after the bounded
wait even while a job still runs; that job's claim then goes stale and the
next catch-up records it as interrupted.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
import queue
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Set, Tuple

import attrs

from . import punctual
from .clock import handoff_lead
from .config import cfg_get
from .hookspec import hookimpl
from .runner import RunRecorder, RunResult, execute_claim, new_owner_token, observers_of
from .status_file import (
    HEARTBEAT_INTERVAL,
    record_error,
    record_stopped,
    scheduler_info,
    write_heartbeat,
)
from .store import INTERRUPTED, LOST, MISSED, QUEUED, SKIPPED, WON, Claim
from .timeutil import to_iso

log = logging.getLogger("hermes_cron.builtin")

#: Longest sleep between two looks at the store, in seconds.
POLL_CAP = 1.0
#: Jobs due within this many seconds are claimed together, ahead of time, in one write;
#: each run still starts at its due time. Keeps the claim's durable write off the path
#: between the due time and the run's start.
PRECLAIM = 0.25
#: The loop claims once the earliest unclaimed fire is this close (then up to PRECLAIM ahead).
PRECLAIM_LEAD = 0.05
#: How often the loop re-runs the catch-up (stale claims of crashed processes), in seconds.
RECONCILE_INTERVAL = 60.0
#: Sleep when due jobs could not be claimed (held elsewhere), so the loop never spins.
STUCK_BACKOFF = 0.5
#: Longest wait for running jobs when the loop stops.
STOP_WAIT_CAP = 30.0
#: The recorder pauses while the dispatcher hands a claim to the workers within this
#: many seconds (so the dispatcher wakes to an idle GIL), or a handed claim waits to run.
IMMINENT = 0.002
#: The recorder writes the ends of runs at most this often, in seconds (``RunRecorder``):
#: at 167 fires/s with 10,000 jobs in ``jobs.json`` that is 4 whole-file writes a second
#: instead of 55, and the daemon's disk and GIL time fall with it.
FINISH_HOLD = 0.25
#: Claim outcomes the workers act on (run, or record a skip / miss / interruption; a
#: queued fire that replaces a run may have to stop a run of this process).
ACTIONABLE = (WON, SKIPPED, MISSED, INTERRUPTED, QUEUED)


def _max_workers(ctx: Any) -> int:
    value = cfg_get(ctx.config, "cron", "max_workers", default=4)
    try:
        return max(1, int(value))
    except (TypeError, ValueError):
        return 4


def _stop_wait(ctx: Any) -> float:
    value = cfg_get(ctx.config, "cron", "job_timeout", default=600)
    try:
        return max(0.0, min(float(value), STOP_WAIT_CAP))
    except (TypeError, ValueError):
        return STOP_WAIT_CAP


def catch_up(ctx: Any) -> Dict[str, Any]:
    """Apply the missed-run policy and clear interrupted runs; record every one of them.

    :returns: ``{"provider": "builtin", "missed": [ids], "interrupted": [ids],
        "next_due_at": ISO or None}``.
    """
    claims = ctx.store.catch_up()
    observers_of(ctx).claimed(claims)
    missed: List[str] = []
    interrupted: List[str] = []
    for claim in claims:
        execute_claim(ctx, claim)  # writes the ledger row of a miss / interruption
        (interrupted if claim.outcome == INTERRUPTED else missed).append(claim.job_id)
    nxt = ctx.store.next_due_at()
    return {
        "provider": "builtin",
        "missed": missed,
        "interrupted": interrupted,
        "next_due_at": to_iso(nxt) if nxt else None,
    }


def run_due_once(ctx: Any, *, max_workers: Optional[int] = None) -> Dict[str, Any]:
    """``hermes-cron tick``: catch up, claim what is due now, run it, wait for it.

    :returns: the catch-up summary plus ``results``: one ``RunResult`` as a dict per
        claim that was acted on.
    """
    summary = catch_up(ctx)
    due = ctx.store.due(ctx.clock.now())
    claims = ctx.store.claim_many(due, new_owner_token()) if due else []
    observers_of(ctx).claimed(claims)
    todo = [c for c in claims if c.outcome in ACTIONABLE]
    results: List[RunResult] = []
    if todo:
        with ThreadPoolExecutor(max_workers or _max_workers(ctx), "hermes-cron-tick") as pool:
            results = list(pool.map(lambda c: execute_claim(ctx, c), todo))
    summary["results"] = [attrs.asdict(r) for r in results]
    return summary


class _Workers:
    """A bounded pool of daemon threads fed from a queue (see the module docstring)."""

    def __init__(
        self,
        size: int,
        work: Callable[[Claim], None],
        on_free: Callable[[], None] = lambda: None,
    ) -> None:
        self.size = size
        self._work = work
        self._on_free = on_free
        self._queue: queue.Queue[Optional[Claim]] = queue.Queue()
        self._threads: List[threading.Thread] = []
        self._cond = threading.Condition()
        self._busy = 0
        self._pending = 0

    def submit(self, claim: Claim) -> None:
        with self._cond:
            self._pending += 1
            idle = len(self._threads) - self._busy
            if self._pending > idle and len(self._threads) < self.size:
                thread = threading.Thread(
                    target=self._run,
                    name=f"hermes-cron-worker-{len(self._threads) + 1}",
                    daemon=True,
                )
                self._threads.append(thread)
                thread.start()
        self._queue.put(claim)

    def _run(self) -> None:
        while True:
            claim = self._queue.get()
            if claim is None:
                return
            with self._cond:
                self._busy += 1
            try:
                self._work(claim)
            finally:
                with self._cond:
                    self._busy -= 1
                    self._pending -= 1
                    self._cond.notify_all()
                self._on_free()

    @property
    def running(self) -> int:
        with self._cond:
            return self._busy

    @property
    def pending(self) -> int:
        """Claims queued or running."""
        with self._cond:
            return self._pending

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def close(self) -> List[Claim]:
        """Stop the threads after their current job; return the claims never started."""
        left: List[Claim] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                left.append(item)
                with self._cond:
                    self._pending -= 1
        for _ in self._threads:
            self._queue.put(None)
        return left


class _Dispatcher:
    """Starts claims made ahead of time at their due time, on a thread of its own.

    Separate from the loop thread so a claim write in progress (which may wait for the
    store lock) never delays a run that is due now.
    """

    def __init__(self, clock: Any, submit: Callable[[Claim], None]) -> None:
        self._clock = clock
        self._submit = submit
        # Claims go to the workers this long before their due time, and the worker waits
        # out the rest (``BuiltinLoop._execute``): the run then starts at its due time
        # from a thread already awake, not a thread's wake-up late.
        self._lead = timedelta(seconds=handoff_lead(clock))
        self._heap: List[Tuple[datetime, int, Claim]] = []
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="hermes-cron-dispatch", daemon=True)
        self._thread.start()

    def add(self, claim: Claim) -> None:
        with self._lock:
            heapq.heappush(self._heap, (claim.due, next(self._seq), claim))
        self._event.set()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._heap)

    def hands_over_within(self, seconds: float) -> bool:
        """Whether the next claim goes to the workers within ``seconds``."""
        with self._lock:
            if not self._heap:
                return False
            head = self._heap[0][0]
        return head - self._lead - self._clock.now() <= timedelta(seconds=seconds)

    def _run(self) -> None:
        while not self._closed:
            self._event.clear()
            now = self._clock.now()
            ready = []
            with self._lock:
                while self._heap and self._heap[0][0] <= now + self._lead:
                    ready.append(heapq.heappop(self._heap)[2])
                head = self._heap[0][0] if self._heap else None
            for claim in ready:
                self._submit(claim)
            if self._closed:
                return
            # Nothing armed: sleep until something is added (no periodic wake when idle).
            timeout = 3600.0 if head is None else (head - self._lead - now).total_seconds()
            self._clock.wait(self._event, max(0.0, timeout))

    def close(self) -> List[Claim]:
        """Stop the thread; returns the claims not dispatched yet, earliest first."""
        self._closed = True
        self._event.set()
        self._thread.join(5)
        with self._lock:
            left = [heapq.heappop(self._heap)[2] for _ in range(len(self._heap))]
        return left


class BuiltinLoop:
    """One run of the built-in scheduling loop (``BuiltinProvider.start`` builds one)."""

    def __init__(self, ctx: Any, stop_event: threading.Event, wake: threading.Event) -> None:
        self.ctx = ctx
        self.stop_event = stop_event
        self.wake = wake
        self.runs = 0
        self.errors = 0
        self._last_heartbeat = float("-inf")
        self._last_reconcile = float("-inf")
        self._started_at: Optional[datetime] = None
        #: Durations (s) of the last claim writes, for the claim lead (``_lead``).
        self._claim_times: Deque[float] = collections.deque(maxlen=8)
        #: Other live schedulers on this store (from their heartbeats), at the last look,
        #: and the lead drawn for this loop's next claim while there are any (``_lead``).
        self._peers = 0
        self._shared_lead = PRECLAIM_LEAD
        #: Fires were left to the other schedulers for want of a free worker: a worker
        #: that frees up wakes the loop to claim again (``_within_capacity``).
        self._capped = False
        self._handoff = handoff_lead(ctx.clock) > 0
        #: Won claims handed to a worker whose run has not started yet.
        self._starting = 0
        self._starting_lock = threading.Lock()
        self.workers = _Workers(_max_workers(ctx), self._execute, self._worker_free)
        #: Writes what each run leaves (output, ledger row, finish_run) off the workers,
        #: so a worker is free for the next due job as soon as its job has run; it
        #: pauses between its steps while a run is about to start.
        self.recorder = RunRecorder(
            ctx,
            busy=lambda: self.workers.pending > 0,
            imminent=self._imminent,
            hold=FINISH_HOLD,
            on_recorded=self._recorded,
        )
        #: Starts claims made ahead of their due time (created when the loop runs).
        self.dispatcher: Optional[_Dispatcher] = None

    # -- pieces ----------------------------------------------------------------

    def _record(self, message: str, source: str = "loop") -> None:
        self.errors += 1
        record_error(self.ctx.paths, message, now=self.ctx.clock.now(), source=source)

    def _execute(self, claim: Claim) -> None:
        starting = [claim.outcome == WON]
        if starting[0]:
            with self._starting_lock:
                self._starting += 1

        def started() -> None:
            if starting[0]:
                starting[0] = False
                with self._starting_lock:
                    self._starting -= 1

        try:
            if starting[0] and self._handoff:
                # Handed over up to the clock's hand-off lead early (``_Dispatcher``).
                self.ctx.clock.wait_until(claim.due)
            self._execute_now(claim, started)
        finally:
            started()

    def _imminent(self) -> bool:
        """A run is about to start: a worker holds a claim whose run has not begun, or
        the dispatcher hands one over within ``IMMINENT``."""
        if self._starting:
            return True
        dispatcher = self.dispatcher
        return dispatcher is not None and dispatcher.hands_over_within(IMMINENT)

    def _execute_now(self, claim: Claim, started: Callable[[], None]) -> None:
        try:
            result = execute_claim(self.ctx, claim, recorder=self.recorder, on_start=started)
        except Exception as exc:  # execute_claim should not raise; a bug must not kill a worker
            log.exception("job %s: firing failed", claim.job_id)
            self._record(f"job {claim.job_id}: firing failed: {type(exc).__name__}: {exc}", "job")
            return
        if result.ran:
            self.runs += 1
            log.info(
                "job %s (fire %s): %s%s",
                result.job_id,
                result.fire_at,
                result.status,
                f": {result.error}" if result.error else "",
            )
        else:
            log.info("job %s (fire %s): %s", result.job_id, result.fire_at, result.claim)

    def _recorded(self, jobs: Sequence[Optional[Dict[str, Any]]]) -> None:
        """Runs were recorded: wake the loop when one's end made a fire due (a queued
        fire runs as soon as the run before it ended, not at the next poll)."""
        from .timeutil import parse_iso

        horizon = self.ctx.clock.now() + timedelta(seconds=PRECLAIM)
        for job in jobs:
            due = (job or {}).get("next_run_at")
            if due is not None and parse_iso(due) <= horizon:
                self.wake.set()
                return

    def heartbeat(self, *, force: bool = False) -> None:
        mono = time.monotonic()
        if not force and mono - self._last_heartbeat < HEARTBEAT_INTERVAL:
            return
        self._last_heartbeat = mono
        try:
            nxt = self.ctx.store.next_due_at()
        except Exception:  # the store's fault is recorded by the iteration
            nxt = None
        now = self.ctx.clock.now()
        mine = scheduler_info("builtin", now, self._started_at)
        self.ctx.store.heartbeat(mine)
        peers, self._peers = self._peers, self._count_peers(mine, now)
        if peers != self._peers:
            log.info("%d other scheduler(s) share this store", self._peers)
        write_heartbeat(
            self.ctx.paths,
            now=now,
            provider="builtin",
            started_at=self._started_at,
            running=self.workers.running,
            runs=self.runs,
            next_due_at=to_iso(nxt) if nxt else None,
        )

    def _count_peers(self, mine: Dict[str, Any], now: datetime) -> int:
        from .status_file import is_live

        try:
            seen = self.ctx.store.schedulers()
        except Exception:  # the store's fault is recorded by the iteration
            return self._peers
        me = (mine["host"], mine["pid"])
        return sum(1 for s in seen if (s.get("host"), s.get("pid")) != me and is_live(s, now))

    def catch_up(self) -> None:
        self._last_reconcile = time.monotonic()
        claims = self.ctx.store.catch_up()
        observers_of(self.ctx).claimed(claims)
        for claim in claims:
            self.workers.submit(claim)

    def iteration(self) -> float:
        """Claim what is due (or due within ``PRECLAIM``), dispatch what is due now;
        return how long to sleep."""
        if time.monotonic() - self._last_reconcile >= RECONCILE_INTERVAL:
            self.catch_up()
        store, clock = self.ctx.store, self.ctx.clock
        now = clock.now()
        # Claim when the earliest unclaimed fire is within the lead, and then every fire
        # due within PRECLAIM past it, so claims are written in batches, not one per wake.
        lead = self._lead()
        self._capped = False
        due = store.due(now + timedelta(seconds=lead))
        if due:
            due = store.due(now + timedelta(seconds=lead - PRECLAIM_LEAD + PRECLAIM))
            if self._peers:
                due = self._within_capacity(due)
        progressed = False
        if due:
            began = time.monotonic()
            claims = store.claim_many(due, new_owner_token())
            self._claim_times.append(time.monotonic() - began)
            observers_of(self.ctx).claimed(claims)
            for claim in claims:
                if claim.outcome == WON and claim.due > now and self.dispatcher is not None:
                    # Claimed ahead of time: the dispatcher starts it at its due time.
                    self.dispatcher.add(claim)
                    progressed = True
                elif claim.outcome in ACTIONABLE:
                    if claim.outcome == QUEUED:
                        # The queued fire runs once the run before it is recorded ended.
                        self.recorder.flush()
                    self.workers.submit(claim)
                    progressed = True
                else:
                    log.debug(
                        "job %s: not claimed: %s (%s)", claim.job_id, claim.outcome, claim.reason
                    )
                    # A replica took it: the fires it left may be this loop's, look again.
                    progressed = progressed or (self._capped and claim.outcome == LOST)
        nxt = store.next_due_at()
        if self._peers:
            self._shared_lead = random.uniform(self._measured_lead(), PRECLAIM)
        if nxt is None or (self._capped and self._free_workers() <= 0):
            # Every worker is taken: the fires left are the other schedulers' to claim,
            # or this loop's once a worker frees up (which wakes it).
            return POLL_CAP
        now = clock.now()
        if nxt <= now and due and not progressed:
            return STUCK_BACKOFF
        delay = (nxt - now).total_seconds() - self._lead()
        # A hair past the wake time, so a wake-up never lands just before it.
        return min(POLL_CAP, max(0.0, delay + 0.0002))

    def _free_workers(self) -> int:
        """Workers not promised to a claim (queued, running, or held for its due time)."""
        held = self.dispatcher.pending if self.dispatcher is not None else 0
        return self.workers.size - self.workers.pending - held

    def _within_capacity(self, due: List[Tuple[str, datetime]]) -> List[Tuple[str, datetime]]:
        """The fires to claim while other schedulers share the store: no more than this
        loop has free workers for, the earliest first and a burst's fires in random order.

        A loop that claimed a whole burst would queue what its workers cannot start,
        while the other replicas sat idle: those fires would start late by the runs
        before them. Left unclaimed they go to a replica with a free worker, or to this
        one when a worker frees up. Alone on the store, a loop claims all (nobody else
        would run them sooner).
        """
        # Set before the count: a worker freed after it wakes the loop (``_worker_free``).
        self._capped = True
        free = self._free_workers()
        if len(due) <= free:
            self._capped = False
            return due
        # Random among fires due together, so replicas reach for different ones.
        return sorted(due, key=lambda fire: (fire[1], random.random()))[: max(0, free)]

    def _worker_free(self) -> None:
        if self._capped:
            self.wake.set()

    def _lead(self) -> float:
        """How far ahead of the earliest unclaimed fire to claim: PRECLAIM_LEAD, or
        three times the slowest of the last claim writes when that is longer (a big
        jobs.json, or a lock shared with run recording), up to PRECLAIM; while other
        schedulers share the store, a random lead between that and PRECLAIM. A claim
        must be written before its fire is due, or every run in the batch starts late.
        """
        if self._peers:
            # Replicas on one store: a lead drawn afresh for each claim, so the first
            # to claim is a matter of chance. The measured lead alone lets the replica
            # with the slowest writes claim first every time (the others' claims then
            # find the rows taken, quickly, and their leads shrink): one replica ran
            # nearly every fire.
            return self._shared_lead
        return self._measured_lead()

    def _measured_lead(self) -> float:
        slowest = max(self._claim_times, default=0.0)
        return min(PRECLAIM, max(PRECLAIM_LEAD, 3.0 * slowest))

    # -- the loop ----------------------------------------------------------------

    def run(self) -> Dict[str, Any]:
        ctx, stop = self.ctx, self.stop_event
        self._started_at = ctx.clock.now()
        log.info("built-in scheduler started (max_workers=%d)", self.workers.size)

        def wake_on_stop() -> None:
            stop.wait()
            self.wake.set()

        watcher = threading.Thread(
            target=wake_on_stop,
            name="hermes-cron-stop-watch",
            daemon=True,
        )
        watcher.start()
        self.dispatcher = _Dispatcher(ctx.clock, self.workers.submit)
        # A store that hears other processes' changes (PostgreSQL) wakes the loop at once.
        ctx.store.add_listener(self.wake.set)
        self.heartbeat(force=True)
        if self._handoff:
            # Store writes and other background Python in this process step aside while a
            # run is about to start (``punctual``). Not on a clock without a hand-off
            # (a test's fake clock): its "imminent" could last as long as time stands still.
            punctual.register(self._imminent)
        try:
            return self._loop()
        finally:
            punctual.unregister(self._imminent)

    def _loop(self) -> Dict[str, Any]:
        ctx, stop = self.ctx, self.stop_event
        failures = 0
        try:
            self.catch_up()
        except Exception as exc:
            failures = 1
            log.error("catch-up failed: %s", exc)
            self._record(f"catch-up failed: {exc}")
        while not stop.is_set():
            self.wake.clear()
            if stop.is_set():
                break
            try:
                timeout = self.iteration()
                failures = 0
            except Exception as exc:
                failures += 1
                timeout = min(30.0, 0.5 * 2 ** (failures - 1))
                # Once the store answers again, catch up first (missed-run policy).
                self._last_reconcile = float("-inf")
                log.error("scheduler iteration failed (retry in %.1f s): %s", timeout, exc)
                if failures == 1 or failures % 10 == 0:
                    self._record(f"scheduler iteration failed: {type(exc).__name__}: {exc}")
            try:
                self.heartbeat()
            except Exception:  # pragma: no cover - write_heartbeat logs and never raises
                log.exception("heartbeat failed")
            if stop.is_set():
                break
            ctx.clock.wait(self.wake, timeout)
        return self._stop()

    def _stop(self) -> Dict[str, Any]:
        # Claims already made for fires due within PRECLAIM: run them at their time (a short
        # real-time wait, bounded by PRECLAIM even on a fake clock) rather than drop them.
        for claim in self.dispatcher.close() if self.dispatcher is not None else []:
            delay = (claim.due - self.ctx.clock.now()).total_seconds()
            if delay > 0:
                time.sleep(min(delay, PRECLAIM))
            self.workers.submit(claim)
        wait = _stop_wait(self.ctx)
        if not self.workers.wait_idle(wait):
            log.warning(
                "stopping with %d job(s) still running after %.0f s; their claims will be "
                "recorded as interrupted by the next catch-up",
                self.workers.running,
                wait,
            )
        # Runs that ended are recorded before the loop says it stopped.
        self.recorder.close(max(wait, 5.0))
        abandoned = self.workers.close()
        for claim in abandoned:
            self._release(claim)
        now = self.ctx.clock.now()
        record_stopped(self.ctx.paths, now=now)
        self.ctx.store.heartbeat(scheduler_info("builtin", now, self._started_at, stopped=True))
        log.info("built-in scheduler stopped (%d runs)", self.runs)
        return {
            "provider": "builtin",
            "stopped": True,
            "runs": self.runs,
            "errors": self.errors,
            "still_running": self.workers.running,
            "abandoned": [c.job_id for c in abandoned],
        }

    def _release(self, claim: Claim) -> None:
        """A claim queued but never started when the loop stopped: record it so nothing is
        silently dropped (a skip or miss gets its row; a won claim ends as ``error``)."""
        try:
            if claim.outcome != WON:
                execute_claim(self.ctx, claim)
                return
            now = self.ctx.clock.now()
            reason = "not started: the scheduler stopped first"
            self.ctx.store.finish_run(
                claim.job_id, claim.owner, status="error", error=reason, started_at=now
            )
            row = {
                "job_id": claim.job_id,
                "fire_at": to_iso(claim.fire_at),
                "provider": "builtin",
                "started_at": to_iso(now),
                "finished_at": to_iso(now),
                "status": "error",
                "output": None,
                "error": reason,
                "owner": claim.owner,
                "attempt": claim.attempt,
            }
            self.ctx.ledger.append(row)
            observers_of(self.ctx).submit(claim.job, row)
        except Exception as exc:
            log.error("job %s: cannot release its claim: %s", claim.job_id, exc)


class BuiltinProvider:
    """The built-in provider (register one instance per plugin manager, last)."""

    name = "builtin"

    def __init__(self) -> None:
        self._wakes: Set[threading.Event] = set()
        self._lock = threading.Lock()

    def wake(self) -> None:
        """Wake every loop this instance runs (a job changed in this process)."""
        with self._lock:
            for event in self._wakes:
                event.set()

    @hookimpl(trylast=True)
    def is_available(self, config: Any) -> bool:
        """Always available: the built-in needs nothing."""
        return True

    @hookimpl(trylast=True)
    def start(self, ctx: Any, stop_event: threading.Event) -> Dict[str, Any]:
        """Run the scheduling loop until ``stop_event`` is set; returns a summary."""
        wake = threading.Event()
        with self._lock:
            self._wakes.add(wake)
        try:
            return BuiltinLoop(ctx, stop_event, wake).run()
        finally:
            with self._lock:
                self._wakes.discard(wake)

    @hookimpl(trylast=True)
    def reconcile(self, ctx: Any) -> Dict[str, Any]:
        """Apply the missed-run policy now (see ``catch_up``) and wake the loop."""
        summary = catch_up(ctx)
        self.wake()
        return summary

    @hookimpl(trylast=True)
    def on_jobs_changed(self, ctx: Any, job_ids: Sequence[str]) -> bool:
        """Wake the loop so it recomputes its next due time."""
        self.wake()
        return True

    @hookimpl(trylast=True)
    def fire_due(self, ctx: Any, job_id: str, fire_at: str) -> RunResult:
        """The default fire: claim, run, record (``ctx.run_one_job``)."""
        return ctx.run_one_job(job_id, fire_at)


__all__ = ["POLL_CAP", "BuiltinLoop", "BuiltinProvider", "catch_up", "run_due_once"]
