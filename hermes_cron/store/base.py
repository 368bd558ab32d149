"""The store's public mutations, written once on top of a backend's few primitives.

``RuleStore`` turns each public call (add, claim, finish_run, catch_up ...) into a
rule of ``rules.py`` applied to one record; a backend subclass provides only how
records are read, locked and written:

* ``_apply(items, grouped)``: for each ``(job_id, rule)`` read the job's record
  under the backend's lock (None when absent or quarantined), call
  ``rule(record, now)`` with the backend's idea of now, write the record the rule
  returned (if any), and return the rules' answers in order;
* ``_catch_up_all(rule)``: the same over every job that may need catching up;
* ``_insert(make)``: store the record ``make(job_id, now)`` under a fresh id;
* ``_delete(job_id)``; ``_missing(job_id)``: the error for an absent job; and
  ``_gone_reason(job_id)``: why a claim found no job.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, List, Mapping, Optional, Sequence, Tuple

from ..config import Config, cfg_get
from ..schedules import Schedule
from . import rules
from .records import Census, Job, Record, census_of
from .rules import GONE, Change, Claim, Policy

#: A rule as a backend applies it: ``(record or None, now) -> (record to write, answer)``.
Rule = Callable[[Optional[Record], datetime], Change]
CatchUpRule = Callable[[Record, datetime], Tuple[Optional[Record], List[Claim]]]


def policy_from_config(config: Config) -> Policy:
    """``cron.claim_ttl`` and ``cron.misfire_grace`` of ``config``."""
    return Policy(
        claim_ttl=float(cfg_get(config, "cron", "claim_ttl", default=300)),
        misfire_grace=float(cfg_get(config, "cron", "misfire_grace", default=3600)),
    )


class RuleStore:
    """Base class of every backend: the mutations of the ``Store`` protocol."""

    policy: Policy

    @property
    def claim_ttl(self) -> float:
        return self.policy.claim_ttl

    def census(self) -> Census:
        """Jobs by state and the quarantined records, counted from ``snapshot``."""
        snap = self.snapshot()  # type: ignore[attr-defined]
        return census_of(snap.jobs, snap.quarantined)

    @property
    def misfire_grace(self) -> float:
        return self.policy.misfire_grace

    # -- primitives (backends) -------------------------------------------------

    def _apply(self, items: Sequence[Tuple[str, Rule]], *, grouped: bool = False) -> List[Any]:
        raise NotImplementedError

    def _catch_up_all(self, rule: CatchUpRule) -> List[Claim]:
        raise NotImplementedError

    def _insert(self, make: Callable[[str, datetime], Record]) -> Job:
        raise NotImplementedError

    def _delete(self, job_id: str) -> Job:
        raise NotImplementedError

    def _missing(self, job_id: str) -> Exception:
        raise NotImplementedError

    def _gone_reason(self, job_id: str) -> str:
        raise NotImplementedError

    # -- helpers ------------------------------------------------------------------

    def _one(self, job_id: str, rule: Rule, *, grouped: bool = False) -> Any:
        return self._apply([(job_id, rule)], grouped=grouped)[0]

    def _existing(self, job_id: str, rule: Callable[[Record, datetime], Change]) -> Any:
        """Apply ``rule`` to a job that must exist (``_missing`` raised otherwise)."""

        def apply(rec: Optional[Record], now: datetime) -> Change:
            if rec is None:
                raise self._missing(job_id)
            return rule(rec, now)

        return self._one(job_id, apply)

    def _explain(self, claim: Claim) -> Claim:
        if claim.outcome == GONE:
            return claim._replace(reason=self._gone_reason(claim.job_id))
        return claim

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
        jitter: Optional[float] = None,
        overlap: Optional[str] = None,
        retries: Optional[int] = None,
        retry_delay: Optional[float] = None,
        cwd: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
        until: Optional[str] = None,
    ) -> Job:
        """Create a job (exactly one of command/prompt); returns the stored record.

        ``next_run_at`` is the schedule's first fire time after now (a one-shot: its
        time, even if already past: the missed-run policy then applies), delayed by
        ``jitter``. ``repeat`` limits a recurring schedule to that many runs. The job
        options (SPEC §4.1: ``misfire_grace`` ... ``until``, durations in seconds,
        ``until`` ISO 8601 with an offset) are checked like the record they go in.
        """
        options = {
            "misfire_grace": misfire_grace,
            "timeout": timeout,
            "jitter": jitter,
            "overlap": overlap,
            "retries": retries,
            "retry_delay": retry_delay,
            "cwd": cwd,
            "env": dict(env) if env is not None else None,
            "until": until,
        }
        argv = rules.check_new_job(command, prompt, name, repeat, schedule, options)

        def make(job_id: str, now: datetime) -> Record:
            return rules.new_job(
                job_id,
                schedule,
                now,
                command=argv,
                prompt=prompt,
                name=name,
                repeat=repeat,
                options=options,
            )

        return self._insert(make)

    def update(self, job_id: str, **fields: Any) -> Job:
        """Change fields of a job (``records.UPDATABLE``): name, enabled, command, prompt,
        schedule (a ``Schedule``, its record, or text parsed in the job's zone), tz
        (re-zones the schedule), repeat (times, or None), and the job options
        (``records.OPTION_FIELDS``; None resets one to its default). A new schedule or
        zone, or enabling a disabled job, recomputes ``next_run_at`` from now; a new
        jitter or until re-times the pending fire. A run in progress keeps its claim.
        Nothing is written when the result is invalid or nothing changed (see
        ``rules.update``)."""
        checked = rules.check_update_fields(fields)
        return self._existing(job_id, lambda rec, now: rules.update(rec, checked, now))  # type: ignore[no-any-return]

    def remove(self, job_id: str) -> Job:
        """Delete the record; returns it as it was."""
        return self._delete(job_id)

    def pause(self, job_id: str) -> Job:
        """``scheduled`` → ``paused`` (see ``rules.pause``)."""
        return self._existing(job_id, rules.pause)  # type: ignore[no-any-return]

    def resume(self, job_id: str) -> Job:
        """Back to ``scheduled`` with ``next_run_at`` recomputed (see ``rules.resume``)."""
        return self._existing(job_id, rules.resume)  # type: ignore[no-any-return]

    def claim(self, job_id: str, fire_at: datetime, owner: str) -> Claim:
        """Compare-and-set one fire (SPEC §4): applies the missed-run policy and the
        overlap rule; advances ``next_run_at`` (recurring) or clears it (one-shot, last
        repeat) and counts the repeat, all before returning WON."""
        return self.claim_many([(job_id, fire_at)], owner)[0]

    def claim_many(self, fires: Sequence[Tuple[str, datetime]], owner: str) -> List[Claim]:
        """``claim`` for many fires at once (the built-in loop's batch)."""
        rules.check_owner(owner)
        policy = self.policy
        items: List[Tuple[str, Rule]] = [
            (job_id, _claim_rule(job_id, at, owner, policy)) for job_id, at in fires
        ]
        if not items:
            return []
        return [self._explain(c) for c in self._apply(items)]

    def claim_manual(self, job_id: str, owner: str) -> Claim:
        """Claim for ``hermes-cron run ID``: now, without advancing the schedule."""
        rules.check_owner(owner)
        policy = self.policy
        claim = self._one(
            job_id, lambda rec, now: rules.claim_manual(rec, job_id, owner, now, policy, "")
        )
        return self._explain(claim)

    def renew_claim(self, job_id: str, owner: str) -> bool:
        """Refresh ``claimed_at`` if ``owner`` still holds the claim."""
        return bool(self._one(job_id, lambda rec, now: rules.renew(rec, owner, now), grouped=True))

    def finish_run(
        self,
        job_id: str,
        owner: str,
        *,
        status: str,
        error: Optional[str],
        started_at: datetime,
    ) -> Optional[Job]:
        """Record a run's end if ``owner`` still holds the claim (else None): status
        ``ok``, ``error``, ``timeout`` or ``cancelled``. A queued fire is then due, or a
        failed run's retry, or the job completes (see ``rules.finish``)."""
        rules.check_finish_status(status)
        return self._one(  # type: ignore[no-any-return]
            job_id,
            lambda rec, now: rules.finish(rec, owner, status, error, started_at, now),
            grouped=True,
        )

    def finish_runs(
        self, runs: Sequence[Tuple[str, str, str, Optional[str], datetime]]
    ) -> List[Optional[Job]]:
        """``finish_run`` for many runs at once: ``runs`` holds ``(job_id, owner, status,
        error, started_at)``; returns each run's record, or None where the owner no
        longer held the claim."""
        runs = list(runs)
        for run in runs:
            rules.check_finish_status(run[2])
        if not runs:
            return []
        return self._apply([(run[0], _finish_rule(*run)) for run in runs])

    def settle_run(self, job_id: str, row: Mapping[str, Any]) -> Optional[Job]:
        """A stale claim's run had written its final ledger row ``row``: give the record
        that row's ``last_*`` fields (see ``rules.settle``). Returns the record, or None
        when nothing changed (the job is gone, or a later run already set them)."""
        return self._one(job_id, lambda rec, now: rules.settle(rec, row, now))  # type: ignore[no-any-return]

    def catch_up(self, now: Optional[datetime] = None) -> List[Claim]:
        """Bring every job up to date (at daemon start, and on each reconcile): see
        ``rules.catch_up``. Returns the MISSED and INTERRUPTED claims so the caller can
        record them. ``now`` overrides the store's clock (tests)."""
        policy = self.policy

        def rule(rec: Record, at: datetime) -> Tuple[Optional[Record], List[Claim]]:
            return rules.catch_up(rec, now or at, policy)

        return self._catch_up_all(rule)


def _claim_rule(job_id: str, fire_at: datetime, owner: str, policy: Policy) -> Rule:
    return lambda rec, now: rules.claim(rec, job_id, fire_at, owner, now, policy)


def _finish_rule(
    job_id: str, owner: str, status: str, error: Optional[str], started_at: datetime
) -> Rule:
    return lambda rec, now: rules.finish(rec, owner, status, error, started_at, now)
