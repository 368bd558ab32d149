"""Chronos: fire jobs from a remote one-shot service (NAS) so the agent can scale to zero.

Inert unless ``cron.provider: chronos``. Instead of a local loop, Chronos asks
NAS to arm exactly one HTTP one-shot per job, at the job's ``next_run_at``;
NAS calls the agent back on ``POST {callback_url}/api/cron/fire`` (see
``hermes_cron.webhook``), the shared claim + run body runs the job, and
Chronos arms the next one-shot.

Configuration (``config.yaml``)::

    cron:
      provider: chronos
      chronos:
        portal_url: https://portal.example      # NAS base URL; also the fire-token issuer
        callback_url: https://agent.example     # this agent's base URL (NAS appends /api/cron/fire)
        expected_audience: my-agent             # the fire token's aud
        nas_jwks_url: https://portal.example/.well-known/jwks.json
        timeout: 5          # optional: seconds per NAS request attempt
        retries: 2          # optional: retries after a transport error, 429 or 5xx
        backoff: 0.5        # optional: seconds before the first retry (doubles)
        reconcile_budget: 60  # optional: longest a reconcile keeps calling NAS, seconds

plus a Nous login in ``auth.json`` (``providers.nous.access_token``; see
``hermes_cron.auth``).

How the hooks work:

* ``is_available(config)``: ``portal_url``, ``callback_url`` and a stored access
  token are present. Reads config and ``auth.json`` only, never the network.
* ``start(ctx, stop_event)``: one ``reconcile``, then returns its summary (never
  None, so the built-in loop does not start). No loop, no periodic wake.
* ``reconcile(ctx)``: converges NAS toward ``jobs.json``. What NAS holds is
  remembered per service in ``ctx.state``: a cold process asks ``list`` once,
  a warm one uses what it knows. A job is armed at its ``next_run_at`` while it
  is enabled and ``scheduled``; otherwise (removed, completed, disabled,
  paused, no next run) any arm is cancelled. Jobs already armed at the right
  time cost nothing. A NAS failure is logged and recorded in the summary; a
  transport error or 5xx ends the pass at once (so ``start`` is bounded by one
  request's timeouts and retries) and the next reconcile re-lists and heals.
  A NAS that answers but slowly is bounded too: a pass stops calling it after
  ``reconcile_budget`` seconds and leaves the rest to the next reconcile.
* ``on_jobs_changed(ctx, job_ids)``: the same convergence for those jobs only:
  at most one provision or cancel per job, never a ``list``.
* ``fire_due(ctx, job_id, fire_at)``: a ``wrapper=True`` around the built-in
  default (claim + run). The next one-shot must be armed as soon as the claim
  has advanced ``next_run_at``, before the job runs, so a crash mid-run never
  loses the schedule. A wrapper only sees the default as a whole, so Chronos
  also listens for claims: ``ctx.claim_listeners`` (called by ``run_one_job``
  right after the claim, before the run). The wrapper marks the fire it is
  inside of; the listener, seeing the claim of that fire, records that NAS's
  arm was consumed by this very fire and arms the job's new ``next_run_at``.
  No re-arm for a lost claim, a removed job or a completed one. When the
  listener did not run (a runtime without ``claim_listeners``) or its NAS call
  failed, the wrapper arms after the run instead. After a run the wrapper
  converges the job once more: the run's end may have moved ``next_run_at``
  (a retry, a queued fire now due, the job completed); when it did not, that
  costs a store read and no NAS call. A retry or a queued fire is armed like any
  fire: Chronos arms ``next_run_at``, whatever made it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import TYPE_CHECKING, Any, Dict, Iterable, Iterator, List, Optional, Sequence

import httpx

from hermes_cron import hookimpl
from hermes_cron.auth import NOUS, get_provider_auth_state, resolve_nous_access_token
from hermes_cron.config import Config, cfg_get
from hermes_cron.errors import HermesCronError, JobNotFoundError, NASError
from hermes_cron.timeutil import parse_iso, to_iso

from ._nas_client import NASClient

if TYPE_CHECKING:
    from hermes_cron.context import CronContext
    from hermes_cron.runner import RunResult
    from hermes_cron.store import Claim

PROVIDER_NAME = "chronos"
_STATE_KEY = "chronos"

#: What we know NAS holds for a job: an ISO time (armed then), or one of these.
NOT_ARMED = "<not armed>"
UNKNOWN = "<unknown>"

# Claim outcomes (hermes_cron.store) after which the job's next_run_at moved on.
_ADVANCED = ("won", "skipped", "missed", "queued")

_create_lock = threading.Lock()


# -- hook implementations --------------------------------------------------------


@hookimpl
def is_available(config: Config) -> bool:
    """Available when ``portal_url``, ``callback_url`` and a stored Nous access token exist.

    Config and ``auth.json`` only: never the network. A corrupt ``auth.json``
    raises ``AuthError`` naming the file (the resolver reports it and falls back).
    """
    portal_url = cfg_get(config, "cron", "chronos", "portal_url", default="")
    callback_url = cfg_get(config, "cron", "chronos", "callback_url", default="")
    if not portal_url or not callback_url:
        return False
    state = get_provider_auth_state(NOUS, _home_of(config))
    return bool(state and state.get("access_token"))


@hookimpl
def start(ctx: CronContext, stop_event: threading.Event) -> Dict[str, Any]:
    """Reconcile once and return the summary: there is no loop to run."""
    summary = chronos_state(ctx).reconcile()
    summary["started"] = True
    return summary


@hookimpl
def reconcile(ctx: CronContext) -> Dict[str, Any]:
    """Converge NAS arms toward ``jobs.json``; returns a summary of what was done."""
    return chronos_state(ctx).reconcile()


@hookimpl
def on_jobs_changed(ctx: CronContext, job_ids: Sequence[str]) -> Dict[str, Any]:
    """Re-arm or cancel the one-shots of the jobs that changed (no ``list`` call)."""
    return chronos_state(ctx).sync_jobs(job_ids)


@hookimpl(wrapper=True)
def fire_due(ctx: CronContext, job_id: str, fire_at: str) -> Iterator[None]:
    """Around the default claim + run: arm the job's next one-shot once the claim advanced it."""
    chronos = chronos_state(ctx)
    with chronos.firing(job_id, fire_at) as fire:
        result = yield
    chronos.after_fire(fire, result)
    return result


# -- state kept per service --------------------------------------------------------


def chronos_state(
    ctx: CronContext, *, transport: Optional[httpx.BaseTransport] = None
) -> ChronosState:
    """The Chronos state of this service (created on first use and kept in ``ctx.state``).

    ``transport`` is used only when the state is created (tests and the bench
    inject an ``httpx.MockTransport``).
    """
    chronos = ctx.state.get(_STATE_KEY)
    if chronos is None:
        with _create_lock:
            chronos = ctx.state.get(_STATE_KEY)
            if chronos is None:
                chronos = ChronosState(ctx, transport=transport)
                ctx.state[_STATE_KEY] = chronos
    return chronos


class _Fire:
    """The fire a ``fire_due`` call on this thread is handling."""

    def __init__(self, job_id: str, fire_at: Optional[str]) -> None:
        self.job_id = job_id
        self.fire_at = fire_at
        self.claimed = False  # the listener saw this fire's claim
        self.armed_ok = False  # ... and brought NAS in line without an error


class _Abort(Exception):
    """NAS is unreachable or failing: stop this pass; the next one heals."""


class ChronosState:
    """What one service knows about NAS, and the NAS client it talks through.

    ``armed`` maps job id -> the ISO ``fire_at`` NAS holds, ``NOT_ARMED`` or
    ``UNKNOWN``; a job missing from it is ``NOT_ARMED`` after a successful
    ``list`` (``listed``), else ``UNKNOWN``.
    """

    def __init__(self, ctx: CronContext, *, transport: Optional[httpx.BaseTransport] = None):
        self.ctx = ctx
        config = ctx.config
        self.portal_url = str(cfg_get(config, "cron", "chronos", "portal_url", default="") or "")
        self.callback_url = str(
            cfg_get(config, "cron", "chronos", "callback_url", default="") or ""
        ).rstrip("/")
        home = ctx.home

        def token_provider(force_refresh: bool) -> str:
            return resolve_nous_access_token(home, config=config, force_refresh=force_refresh)

        self.client = NASClient(
            self.portal_url,
            token_provider,
            timeout=float(cfg_get(config, "cron", "chronos", "timeout", default=5.0)),
            retries=int(cfg_get(config, "cron", "chronos", "retries", default=2)),
            backoff=float(cfg_get(config, "cron", "chronos", "backoff", default=0.5)),
            transport=transport,
        )
        #: Longest time one reconcile pass keeps calling NAS (bounds ``start``).
        self.budget = float(cfg_get(config, "cron", "chronos", "reconcile_budget", default=60.0))
        self.armed: Dict[str, str] = {}
        self.listed = False
        self.last_errors: List[str] = []
        self._map_lock = threading.Lock()
        # Striped per-job locks: one job's NAS calls never interleave (a stale
        # provision landing after a newer one would re-arm a fire already done).
        self._job_locks = [threading.Lock() for _ in range(64)]
        self._reconcile_lock = threading.Lock()
        self._local = threading.local()
        listeners = getattr(ctx, "claim_listeners", None)
        self.live_arming = isinstance(listeners, list)
        if self.live_arming:
            listeners.append(self._on_claimed)  # type: ignore[union-attr]

    # -- bookkeeping ----------------------------------------------------------------

    def known(self, job_id: str) -> str:
        with self._map_lock:
            return self.armed.get(job_id, NOT_ARMED if self.listed else UNKNOWN)

    def _set(self, job_id: str, value: str) -> None:
        with self._map_lock:
            self.armed[job_id] = value

    def _job_lock(self, job_id: str) -> threading.Lock:
        return self._job_locks[hash(job_id) % len(self._job_locks)]

    # -- one job ----------------------------------------------------------------------

    def _current_job(self, job_id: str) -> Optional[Dict[str, Any]]:
        try:
            return self.ctx.store.get(job_id)
        except JobNotFoundError:
            return None

    def _sync_one(
        self,
        job_id: str,
        summary: Dict[str, Any],
        *,
        consumed: str = "",
        hint: Optional[Dict[str, Any]] = None,
        hint_token: Any = None,
    ) -> None:
        """Bring NAS in line with the stored job, under the job's lock.

        The job is re-read from the store unless ``hint`` (a record from a
        snapshot taken at store ``change_token()`` ``hint_token``) is still
        current. ``consumed``: the fire_at NAS just delivered for this job, so
        that arm is spent. Raises ``_Abort`` when NAS (or the store) cannot be
        used; records other failures and returns.
        """
        with self._job_lock(job_id):
            if consumed and self.known(job_id) in (consumed, UNKNOWN):
                self._set(job_id, NOT_ARMED)
            try:
                if (
                    hint is not None
                    and hint_token is not None
                    and (self.ctx.store.change_token() == hint_token)
                ):
                    job: Optional[Dict[str, Any]] = hint
                else:
                    job = self._current_job(job_id)
            except HermesCronError as exc:
                self._record(summary, exc)
                raise _Abort(str(exc)) from exc
            want = desired_fire_at(job)
            have = self.known(job_id)
            if want == have or (want is None and have == NOT_ARMED):
                summary["unchanged"] += 1
                return
            try:
                if want is not None:
                    self.client.provision(job_id, want, self.callback_url)
                    self._set(job_id, want)
                    summary["armed"] += 1
                else:
                    self.client.cancel(job_id)
                    self._set(job_id, NOT_ARMED)
                    summary["cancelled"] += 1
            except HermesCronError as exc:
                # We cannot tell what NAS holds for this job now: find out next time.
                self._set(job_id, UNKNOWN)
                self._record(summary, exc)
                if not isinstance(exc, NASError) or exc.retryable:
                    # NAS is down or failing (or we cannot log in): stop this pass, and
                    # trust nothing remembered; the next reconcile lists NAS again.
                    with self._map_lock:
                        self.listed = False
                    raise _Abort(str(exc)) from exc

    def _record(self, summary: Dict[str, Any], exc: BaseException) -> None:
        message = str(exc)
        summary["errors"].append(message)
        self.ctx.logger.warning("chronos: %s", message)

    def _finish(self, summary: Dict[str, Any]) -> Dict[str, Any]:
        self.last_errors = list(summary["errors"])
        with self._map_lock:
            summary["arms_known"] = sum(
                1 for value in self.armed.values() if value not in (NOT_ARMED, UNKNOWN)
            )
        return summary

    # -- whole passes --------------------------------------------------------------------

    def reconcile(self) -> Dict[str, Any]:
        """Converge every job; a cold state lists NAS once first."""
        summary = _new_summary()
        with self._reconcile_lock:
            try:
                if not self.listed:
                    self._list_into_map(summary)
                token = self.ctx.store.change_token()
                jobs = {job["id"]: job for job in self.ctx.store.snapshot().jobs}
                with self._map_lock:
                    known = dict(self.armed)
                    listed = self.listed
                default = NOT_ARMED if listed else UNKNOWN
                todo = []
                for job_id, job in jobs.items():
                    want, have = desired_fire_at(job), known.get(job_id, default)
                    if want == have or (want is None and have == NOT_ARMED):
                        summary["unchanged"] += 1
                    else:
                        todo.append(job_id)
                # Arms of jobs no longer in the store (removed): cancel them.
                orphans = [j for j, have in known.items() if j not in jobs and have != NOT_ARMED]
                deadline = time.monotonic() + self.budget
                for n, job_id in enumerate([*todo, *orphans]):
                    if time.monotonic() > deadline:
                        # NAS answers, but slowly: stop here so start() stays bounded;
                        # what is left is still different, so the next pass does it.
                        left = len(todo) + len(orphans) - n
                        self._record(
                            summary,
                            NASError(
                                f"NAS reconcile ran out of its {self.budget:g} s budget; "
                                f"{left} job(s) left for the next reconcile"
                            ),
                        )
                        summary["deferred"] = True
                        break
                    if n < len(todo):
                        self._sync_one(job_id, summary, hint=jobs[job_id], hint_token=token)
                    else:
                        self._sync_one(job_id, summary)
            except _Abort:
                summary["deferred"] = True
            except HermesCronError as exc:  # the store itself failed
                self._record(summary, exc)
                summary["deferred"] = True
        return self._finish(summary)

    def _list_into_map(self, summary: Dict[str, Any]) -> None:
        try:
            entries = self.client.list()
        except HermesCronError as exc:
            self._record(summary, exc)
            raise _Abort(str(exc)) from exc
        fresh: Dict[str, str] = {}
        for entry in entries:
            fire_at = _normalize(entry["fire_at"])
            fresh[entry["job_id"]] = fire_at if fire_at is not None else UNKNOWN
        with self._map_lock:
            self.armed = fresh
            self.listed = True
        summary["listed"] = True

    def sync_jobs(self, job_ids: Iterable[str]) -> Dict[str, Any]:
        """Converge only ``job_ids`` (``on_jobs_changed``)."""
        summary = _new_summary()
        try:
            for job_id in dict.fromkeys(job_ids):  # once each, in order
                self._sync_one(job_id, summary)
        except _Abort:
            summary["deferred"] = True
        except HermesCronError as exc:
            self._record(summary, exc)
        return self._finish(summary)

    # -- firing ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def firing(self, job_id: str, fire_at: Optional[str]) -> Iterator[_Fire]:
        """Mark, on this thread, the fire a ``fire_due`` call is handling."""
        fire = _Fire(job_id, _normalize(fire_at) if fire_at else None)
        stack = self._local.__dict__.setdefault("fires", [])
        stack.append(fire)
        try:
            yield fire
        finally:
            stack.pop()

    def _on_claimed(self, ctx: CronContext, claim: Claim) -> None:
        """Claim listener: runs right after ``run_one_job`` claimed, before the job runs."""
        if ctx is not self.ctx or claim.outcome not in _ADVANCED:
            return
        stack = getattr(self._local, "fires", None)
        fire = stack[-1] if stack else None
        if fire is None or fire.job_id != claim.job_id:
            fire = None  # a claim outside a NAS fire (e.g. ``run ID``): NAS's arm stands
        summary = _new_summary()
        consumed = ""
        if fire is not None:
            fire.claimed = True
            # NAS delivered this fire, so the arm it held for the job is spent.
            consumed = fire.fire_at or to_iso(claim.fire_at)
        try:
            self._sync_one(claim.job_id, summary, consumed=consumed)
        except _Abort:
            pass
        self._finish(summary)
        if fire is not None:
            fire.armed_ok = not summary["errors"]

    def after_fire(self, fire: _Fire, result: Optional[RunResult]) -> None:
        """After the default ran: arm here if the claim listener did not (or failed), or
        if the run's end moved ``next_run_at`` (a retry, a queued fire, completion)."""
        ran = getattr(result, "claim", None) == "won"
        if fire.claimed and fire.armed_ok and not ran:
            return
        if not fire.claimed and getattr(result, "claim", None) not in _ADVANCED:
            return  # lost, gone, inactive, or the default raised: nothing to arm
        summary = _new_summary()
        consumed = "" if fire.claimed else (fire.fire_at or "")
        try:
            self._sync_one(fire.job_id, summary, consumed=consumed)
        except _Abort:
            pass
        self._finish(summary)


# -- helpers -----------------------------------------------------------------------------


def desired_fire_at(job: Optional[Dict[str, Any]]) -> Optional[str]:
    """When NAS should fire ``job``: its ``next_run_at`` while enabled and scheduled, else None."""
    if not job or not job.get("enabled", True) or job.get("state") != "scheduled":
        return None
    return _normalize(job.get("next_run_at"))


def _normalize(value: Any) -> Optional[str]:
    """ISO 8601 in UTC with ``+00:00``, so equal times compare equal as strings."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return to_iso(parse_iso(value))
    except ValueError:
        return None


def _new_summary() -> Dict[str, Any]:
    return {
        "provider": PROVIDER_NAME,
        "armed": 0,
        "cancelled": 0,
        "unchanged": 0,
        "listed": False,
        "deferred": False,
        "errors": [],
        "arms_known": 0,
    }


def _home_of(config: Config) -> Optional[str]:
    """The home folder a config was loaded from, when the loader recorded it; else the env's."""
    home = config.get("_home") if isinstance(config, dict) else None
    return str(home) if home else None


__all__ = [
    "NOT_ARMED",
    "PROVIDER_NAME",
    "UNKNOWN",
    "ChronosState",
    "chronos_state",
    "desired_fire_at",
    "fire_due",
    "is_available",
    "on_jobs_changed",
    "reconcile",
    "start",
]
