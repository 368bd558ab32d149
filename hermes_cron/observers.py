"""Delivering ``run_finished`` to observers, off the scheduling path.

``Observers`` is one per context (``ctx.observers``). The runner calls
``submit(job, row, output)`` once per ledger row it wrote; that call never
waits for a plugin:

* *row listeners* (internal and cheap: the Prometheus metrics) are called at
  once, on the submitting thread, so a counter of rows always equals the rows
  written, whatever the plugins do;
* the report is put on a bounded queue, and one daemon thread calls every
  ``run_finished`` implementation for it, each separately (one that raises is
  logged with its plugin's name and the next is called). When the queue is
  full, the report is dropped for the plugins: counted in ``dropped`` and logged
  (the first drop, then at most once every ``DROP_LOG_INTERVAL`` seconds).
* An implementation that has not returned after ``hang_after`` seconds is
  abandoned: it is logged, the other implementations carry on on a fresh thread,
  and that plugin is skipped until its stuck call returns (so a plugin that hangs
  every time costs one thread, not one per report). The hang is noticed when
  something is submitted, flushed or ``check()``-ed: nothing polls.

``flush(timeout)`` waits (bounded) until every queued report was delivered;
``close(timeout)`` flushes and stops the thread (a later ``submit`` starts a new
one). The service calls ``close`` when it stops.

The module also counts, for the metrics, the claim outcomes (``claimed``) and
the runs in progress (``running``). The runner reaches it through
``runner.observers_of(ctx)``; ``ctx.observers`` is made on first use.
"""

from __future__ import annotations

import collections
import copy
import logging
import threading
import time
from typing import Any, Callable, Deque, Dict, Iterable, List, Mapping, Optional, Set, Tuple

import attrs

log = logging.getLogger("hermes_cron.observers")
#: Where ``HERMES_CRON_TRACE_PLUGINS=1`` logs hook calls: observers are called one by one,
#: not through pluggy's hook call, so they say so themselves.
trace_log = logging.getLogger("hermes_cron.plugins")

#: Reports waiting for the observer thread, at most; beyond that they are dropped.
QUEUE_LIMIT = 1000
#: Seconds after which an observer call that has not returned counts as hung.
HANG_AFTER = 30.0
#: Least seconds between two "dropped" warnings (the count is in every one).
DROP_LOG_INTERVAL = 10.0
#: Default bounded wait for queued reports at shutdown, in seconds.
FLUSH_TIMEOUT = 5.0

RowListener = Callable[[Dict[str, Any], "RunReport"], None]


@attrs.frozen
class RunReport:
    """What ``run_finished`` gets as ``result``: one ledger row and the run's output.

    :ivar row: the ledger row as written (a copy).
    :ivar output: the run's output text (stdout and stderr of a command, a prompt's
        answer); empty for a skip, a miss or an interruption.
    :ivar ran: True when the job was executed for this row (``started_at`` to
        ``finished_at`` is its run); False for a skip, a miss, an interrupted run
        found later, or a claim released unstarted.
    """

    row: Mapping[str, Any]
    output: str = ""
    ran: bool = False

    @property
    def job_id(self) -> str:
        return str(self.row.get("job_id"))

    @property
    def status(self) -> str:
        """The row's status: ``ok``, ``error``, ``timeout``, ``skipped``, ``missed``..."""
        return str(self.row.get("status"))

    @property
    def fire_at(self) -> Optional[str]:
        return self.row.get("fire_at")

    @property
    def error(self) -> Optional[str]:
        return self.row.get("error")


@attrs.define
class _Call:
    """The implementation the observer thread is inside of, and what is left after it."""

    plugin: str
    started: float
    job: Dict[str, Any]
    report: RunReport
    rest: List[Any]


class Observers:
    """The ``run_finished`` dispatcher of one context (see the module docstring).

    :param ctx: the context handed to observers (its ``hook`` finds them).
    :param queue_limit: reports waiting at most; more are dropped and counted.
    :param hang_after: seconds before a call that has not returned is abandoned.
    :param monotonic: the time source for hang detection (tests inject one).
    """

    def __init__(
        self,
        ctx: Any,
        *,
        queue_limit: int = QUEUE_LIMIT,
        hang_after: float = HANG_AFTER,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ctx = ctx
        self.queue_limit = max(1, int(queue_limit))
        self.hang_after = float(hang_after)
        self._monotonic = monotonic
        self._cond = threading.Condition()
        self._queue: Deque[Tuple[Dict[str, Any], RunReport]] = collections.deque()
        self._thread: Optional[threading.Thread] = None
        self._generation = 0
        self._current: Optional[_Call] = None
        self._carry: Optional[_Call] = None  # what an abandoned thread had left to do
        self._busy = False
        self._stopping = False
        self._hung: Set[str] = set()
        self._listeners: List[RowListener] = []
        self._last_drop_log = float("-inf")
        #: Reports dropped because the queue was full (or left undelivered at close).
        self.dropped = 0
        #: Reports every observer was called for.
        self.delivered = 0
        #: Observer calls that raised, by plugin name.
        self.failures: Dict[str, int] = {}
        #: Observer calls abandoned as hung, by plugin name.
        self.hangs: Dict[str, int] = {}
        #: Claim outcomes (``won``, ``skipped``, ``missed``, ``lost``...), counted.
        self.claims: Dict[str, int] = {}
        #: Runs executing now in this process (through this context).
        self.in_progress = 0

    # -- what the runner calls ---------------------------------------------------

    def add_row_listener(self, listener: RowListener) -> None:
        """Call ``listener(job, report)`` for every row, at once, on the submitting
        thread. For cheap internal bookkeeping only (it must not block)."""
        with self._cond:
            self._listeners.append(listener)

    def submit(
        self,
        job: Optional[Mapping[str, Any]],
        row: Mapping[str, Any],
        output: str = "",
        *,
        ran: bool = False,
    ) -> None:
        """Hand one written ledger row to the observers; never blocks, never raises."""
        try:
            # Copies: an observer that changes what it is given changes nothing recorded.
            job_copy: Dict[str, Any] = (
                copy.deepcopy(dict(job)) if job else {"id": row.get("job_id")}
            )
            report = RunReport(row=dict(row), output=output or "", ran=ran)
        except Exception as exc:  # a row we cannot copy is a bug; never the run's problem
            log.error("cannot hand the row of job %s to observers: %s", row.get("job_id"), exc)
            return
        with self._cond:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(job_copy, report)
            except Exception:
                log.exception("a run listener failed for job %s", report.job_id)
        if not self._implementations():
            return  # nobody listens: no queue, no thread
        with self._cond:
            self._check_hung()
            if len(self._queue) >= self.queue_limit:
                self._drop(report, "the observer queue is full")
                return
            self._queue.append((job_copy, report))
            self._ensure_thread()
            self._cond.notify_all()

    def claimed(self, claims: Iterable[Any]) -> None:
        """Count the outcomes of claims just made (for ``hermes_cron_claims_total``)."""
        with self._cond:
            for claim in claims:
                outcome = str(getattr(claim, "outcome", claim))
                self.claims[outcome] = self.claims.get(outcome, 0) + 1

    def running(self, delta: int) -> None:
        """A run started (+1) or ended (-1)."""
        with self._cond:
            self.in_progress += delta

    def counts(self) -> Dict[str, Any]:
        """A consistent copy of the counters: ``claims``, ``in_progress``, ``dropped``,
        ``delivered``, ``failures``, ``hangs``, ``pending``."""
        with self._cond:
            return {
                "claims": dict(self.claims),
                "in_progress": self.in_progress,
                "dropped": self.dropped,
                "delivered": self.delivered,
                "failures": dict(self.failures),
                "hangs": dict(self.hangs),
                "pending": len(self._queue) + (1 if self._busy else 0),
            }

    # -- shutdown ----------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Reports queued or being delivered."""
        with self._cond:
            return len(self._queue) + (1 if self._busy else 0)

    @property
    def hung(self) -> List[str]:
        """Plugins whose ``run_finished`` call was abandoned and has not returned yet."""
        with self._cond:
            return sorted(self._hung)

    def check(self) -> None:
        """Notice an observer call that has been running longer than ``hang_after``."""
        with self._cond:
            self._check_hung()

    def flush(self, timeout: float = FLUSH_TIMEOUT) -> bool:
        """Wait up to ``timeout`` seconds until every queued report was delivered;
        False when some are still waiting."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while self._queue or self._busy:
                self._check_hung()
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                # Wake now and then so a hang is noticed while we wait.
                self._cond.wait(min(left, max(self.hang_after / 4, 0.01)))
            return True

    def close(self, timeout: float = FLUSH_TIMEOUT) -> bool:
        """Flush (bounded by ``timeout``), then stop the observer thread. Reports still
        queued then are dropped, counted and logged. Returns whether all were delivered."""
        done = self.flush(timeout)
        with self._cond:
            left = len(self._queue)
            if left:
                self._queue.clear()
                self.dropped += left
                log.warning(
                    "%d run report(s) were not delivered to observers within %.1f s of "
                    "shutdown (%d dropped in all)",
                    left,
                    timeout,
                    self.dropped,
                )
            self._stopping = True
            self._cond.notify_all()
        return done

    # -- the observer thread -------------------------------------------------------

    def _implementations(self) -> List[Any]:
        caller = getattr(getattr(self.ctx, "hook", None), "run_finished", None)
        if caller is None:
            return []
        # pluggy calls the last registered first: so do we.
        return list(reversed(caller.get_hookimpls()))

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stopping = False
            self._start_thread()

    def _start_thread(self) -> None:
        generation = self._generation
        self._thread = threading.Thread(
            target=self._run, args=(generation,), name="hermes-cron-observers", daemon=True
        )
        self._thread.start()

    def _drop(self, report: RunReport, why: str) -> None:
        self.dropped += 1
        now = self._monotonic()
        if self.dropped == 1 or now - self._last_drop_log >= DROP_LOG_INTERVAL:
            self._last_drop_log = now
            log.warning(
                "%s (%d waiting): the %s row of job %s was not delivered to observers "
                "(%d dropped so far)",
                why,
                len(self._queue),
                report.status,
                report.job_id,
                self.dropped,
            )

    def _check_hung(self) -> None:
        """With the lock held: abandon the current call when it is overdue."""
        current = self._current
        if current is None or self._monotonic() - current.started < self.hang_after:
            return
        log.error(
            "observer %r: run_finished for job %s (%s) has not returned after %.0f s; it "
            "is skipped until it returns, the other observers carry on",
            current.plugin,
            current.report.job_id,
            current.report.status,
            self._monotonic() - current.started,
        )
        self._hung.add(current.plugin)
        self.hangs[current.plugin] = self.hangs.get(current.plugin, 0) + 1
        self._generation += 1
        self._current = None
        self._carry = current
        self._start_thread()

    def _run(self, generation: int) -> None:
        while True:
            with self._cond:
                if generation != self._generation:
                    return
                carry, self._carry = self._carry, None
                if carry is not None:
                    job, report, impls = carry.job, carry.report, carry.rest
                else:
                    while not self._queue and not self._stopping:
                        self._cond.wait()
                    if generation != self._generation:
                        return
                    if not self._queue:
                        self._thread = None
                        return
                    job, report = self._queue.popleft()
                    impls = self._implementations()
                self._busy = True
            if not self._deliver(generation, job, report, impls):
                return  # abandoned while inside a hung call: another thread took over
            with self._cond:
                self._busy = False
                self.delivered += 1
                self._cond.notify_all()

    def _deliver(
        self, generation: int, job: Dict[str, Any], report: RunReport, impls: List[Any]
    ) -> bool:
        for index, impl in enumerate(impls):
            name = str(getattr(impl, "plugin_name", "?"))
            with self._cond:
                if generation != self._generation:
                    return False
                if name in self._hung:
                    log.debug("observer %r skipped for job %s: still hung", name, report.job_id)
                    continue
                self._current = _Call(name, self._monotonic(), job, report, impls[index + 1 :])
            # Each observer gets copies: what one changes, the next never sees.
            kwargs = {
                "ctx": self.ctx,
                "job": copy.deepcopy(job),
                "result": attrs.evolve(report, row=dict(report.row)),
            }
            if trace_log.isEnabledFor(logging.DEBUG):
                trace_log.debug(
                    "hook run_finished(job=%s, status=%s) -> [%s]",
                    report.job_id,
                    report.status,
                    name,
                )
            try:
                impl.function(**{arg: kwargs[arg] for arg in impl.argnames if arg in kwargs})
            except BaseException as exc:  # even SystemExit: an observer never ends the thread
                with self._cond:
                    self.failures[name] = self.failures.get(name, 0) + 1
                log.error(
                    "observer %r: run_finished raised %s for job %s (%s): %s",
                    name,
                    type(exc).__name__,
                    report.job_id,
                    report.status,
                    exc,
                    exc_info=log.isEnabledFor(logging.DEBUG),
                )
            with self._cond:
                if generation != self._generation:
                    # This call was declared hung; it has returned now, so the plugin
                    # may be called again. The replacement thread did the rest.
                    self._hung.discard(name)
                    self._cond.notify_all()
                    return False
                self._current = None
        return True


__all__ = ["FLUSH_TIMEOUT", "HANG_AFTER", "QUEUE_LIMIT", "Observers", "RunReport"]
