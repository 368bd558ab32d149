"""The hook specification: every hook a provider or an embedding agent may implement.

Two kinds of hooks:

* **Provider hooks** (``is_available``, ``start``, ``reconcile``,
  ``on_jobs_changed``, ``fire_due``) decide *when* jobs fire. They are
  ``firstresult`` and are dispatched to the **selected provider plus the
  built-in provider only** (pluggy's subset calling), so the built-in's
  ``trylast`` implementation answers any hook a provider leaves out. A
  provider that handled a call must return a non-None value; returning None
  lets the built-in default run as well. A provider may wrap a default with
  ``wrapper=True``. Provider implementations must not use ``trylast`` or
  ``specname``.
* The **execution hook** ``run_job`` decides *what running a job means*. It is
  dispatched to **all plugins**; providers never implement it.
* The **observer hook** ``run_finished`` hears about every ledger row once it is
  written. It is not ``firstresult``: every registered plugin that implements it
  is called, each separately, on the observer thread (``hermes_cron.observers``),
  so one that raises or hangs never delays a fire nor keeps the others from being
  called.

A discovered plugin that implements no provider hook (only ``run_job`` and/or
``run_finished``) is an **extension**: it is registered whatever provider is
selected, unless ``cron.disabled_plugins`` names it.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Optional, Sequence

import pluggy

if TYPE_CHECKING:
    from .config import Config
    from .context import CronContext
    from .observers import RunReport
    from .runner import RunOutcome, RunResult

PROJECT_NAME = "hermes_cron"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

#: Hooks that belong to providers and are called through subset calling.
PROVIDER_HOOKS = ("is_available", "start", "reconcile", "on_jobs_changed", "fire_due")
#: Hooks dispatched to every plugin.
EXECUTION_HOOKS = ("run_job",)
#: Hooks every plugin that implements them hears, each called separately, off the
#: scheduling path.
OBSERVER_HOOKS = ("run_finished",)


@hookspec(firstresult=True)
def is_available(config: Config) -> Optional[bool]:
    """Tell whether this provider can run with the given configuration.

    Called once by ``resolve_cron_scheduler()`` when the provider is selected,
    and by ``hermes-cron providers`` for every provider. It must decide from
    ``config`` and local files only: it never touches the network (tests call
    it with sockets blocked). When it returns False or raises, the resolver
    falls back to the built-in provider and records why.

    Stops at the first non-None result. Dispatched to the selected provider plus
    the built-in, on the caller's thread.

    :param config: the loaded configuration (defaults deep-merged with ``config.yaml``).
    :returns: True when usable, False when not. The built-in always returns True.
    """


@hookspec(firstresult=True)
def start(ctx: CronContext, stop_event: threading.Event) -> Optional[Any]:
    """Start triggering jobs.

    The built-in provider runs its scheduling loop here and returns only once
    ``stop_event`` is set. An external provider (Chronos) reconciles its remote
    arms and returns at once: the process may then stop between fires. A
    provider that blocks must return promptly after ``stop_event`` is set.

    Stops at the first non-None result: a provider's ``start`` that returns a
    non-None value keeps the built-in loop from starting. Dispatched to the
    selected provider plus the built-in, on the thread that runs the provider
    (the ``daemon``/``serve`` main thread or an embedding agent's thread).

    :param ctx: the service context (config, store, clock, logger, home, ``run_one_job``).
    :param stop_event: set when the process is asked to stop.
    :returns: a non-None summary of what was started (the daemon prints it for
        external providers).
    """


@hookspec(firstresult=True)
def reconcile(ctx: CronContext) -> Optional[Any]:
    """Converge the provider's trigger state toward ``jobs.json``.

    For Chronos: arm missing or changed jobs at NAS, cancel orphans. For the
    built-in: apply the missed-run policy and recompute due times. Must be
    idempotent: calling it twice changes nothing the second time.

    Stops at the first non-None result. Dispatched to the selected provider plus
    the built-in, from ``start`` and from ``hermes-cron`` commands, on the caller's thread.

    :param ctx: the service context.
    :returns: a non-None summary (a mapping of what was done is conventional).
    """


@hookspec(firstresult=True)
def on_jobs_changed(ctx: CronContext, job_ids: Sequence[str]) -> Optional[Any]:
    """React to jobs created, changed, paused, resumed or removed.

    Called after every store mutation made through the service (CLI commands
    included), with the ids concerned; an id may name a job that no longer
    exists (it was removed) or one that never existed: tolerate both. The
    built-in wakes its loop; Chronos re-arms or cancels the affected arms.

    Stops at the first non-None result. Dispatched to the selected provider plus
    the built-in, on the thread that mutated the store.

    :param ctx: the service context.
    :param job_ids: ids of the jobs that changed.
    :returns: a non-None value when handled.
    """


@hookspec(firstresult=True)
def fire_due(ctx: CronContext, job_id: str, fire_at: str) -> Optional[RunResult]:
    """Fire one job for one due time: claim it, run it, record it.

    The built-in default calls ``ctx.run_one_job(job_id, fire_at)``, the one
    shared body that claims (compare-and-set: a duplicate or late fire is
    dropped), runs through ``run_job``, writes output and the ledger, and
    advances the job. A provider does not reimplement this: it wraps it
    (``wrapper=True``) to act before or after, as Chronos re-arms its next
    one-shot after the default ran.

    Stops at the first non-None result. Dispatched to the selected provider plus
    the built-in, on a worker thread (built-in pool or webhook background task).

    :param ctx: the service context.
    :param job_id: the job to fire.
    :param fire_at: the due time this fire is for, ISO 8601 with offset.
    :returns: the ``RunResult`` (claim outcome, and the run's status when it ran).
    """


@hookspec(firstresult=True)
def run_job(ctx: CronContext, job: dict[str, Any]) -> Optional[RunOutcome]:
    """Execute one claimed job and return what happened.

    The default (registered ``trylast``) runs a ``command`` job as a
    subprocess (argv, no shell) with the job timeout, and fails a ``prompt``
    job with a clear error because running prompts needs the embedding agent:
    an agent registers its own ``run_job`` that handles ``prompt`` jobs and
    returns None for the rest. Providers never implement this hook.

    Stops at the first non-None result. Dispatched to all plugins, on the worker
    thread that runs the job.

    :param ctx: the service context; ``ctx.fire_at`` is not set, read
        ``job["fire_claim"]["fire_at"]`` for the due time.
    :param job: the job record as stored, with its current claim.
    :returns: a ``RunOutcome`` (status ``ok``/``error``/``timeout``, output text, error).
    """


@hookspec
def run_finished(ctx: CronContext, job: dict[str, Any], result: RunReport) -> None:
    """Hear about a run, skip, miss, cancel, interruption or retry attempt once it is recorded.

    Called once per ledger row, after the row was written: a run that ended
    (``ok``, ``error``, ``timeout``), a fire ``skipped`` because the previous run
    was still going, a ``missed`` fire, a run found interrupted by a crash (an
    ``error`` row), a cancelled run and every retry attempt. This is where an
    agent delivers a run's output to a chat or raises an alert.

    Not ``firstresult``: dispatched to **every registered plugin** that implements
    it (extensions, an embedding agent's plugins, the selected provider), each
    implementation called on its own, so one that raises is logged with its
    plugin's name and the others are still called for the same event. Called
    on the observer thread (``hermes_cron.observers``), never on the thread that
    schedules or runs jobs: a slow observer never delays a fire (its reports
    queue up; beyond the queue's bound they are dropped, counted and logged),
    and one that does not return within ``hang_after`` seconds (30) is logged and
    skipped until it does while the others carry on. Nothing it does or raises
    changes what was recorded. Reports still queued at shutdown get a bounded
    wait (``CronService.close``).

    :param ctx: the service context (``ctx.store`` to read the job's current state:
        it may have been updated a moment after the row was written).
    :param job: the job record as it was when this fire was claimed (a copy: changing
        it changes nothing). Its ``id``, ``name``, ``command`` or ``prompt`` say which
        job it was.
    :param result: a ``RunReport``: ``result.row`` is the ledger row as written
        (``job_id``, ``fire_at``, ``provider``, ``started_at``, ``finished_at``,
        ``status``, ``output``, ``error``...), ``result.output`` the run's output text
        (empty for a skip or a miss), ``result.ran`` whether the job actually ran.
    :returns: nothing; the return value is ignored.
    """
