"""What a claim, a run's end, a catch-up or a missed fire does to one job record.

Every function here is a plain function of a record (``Record`` or None when the
job is absent), the time and the store's ``Policy``. It knows no file and no
connection: it returns the record to write (None: write nothing) and the answer
for the caller. Every backend reads the record under its own lock (the file lock,
a row lock), calls the rule, and writes what it returned, so the rules are the
same on every store.

The job options of SPEC §4.1 live here too, as state in the record, so that every
process and every provider sees the same thing:

* **jitter**: ``next_run_at`` is the scheduled time plus ``jitter_offset`` (a hash
  of the job id and the scheduled time); the undelayed time is kept in
  ``next_scheduled_at`` and the next scheduled time is computed from it (no drift).
* **overlap** ``queue`` / ``replace``: a fire due while a run holds a fresh claim is
  kept in ``queued_fire`` (durably); ``replace`` also marks the running claim
  ``cancel_requested`` (its owner's run watcher stops the run). When the run ends,
  ``finish`` points ``next_run_at`` at the queued fire and remembers the scheduled
  fire to come back to (``resume_at``); claiming the queued fire goes back to it.
* **retries**: ``finish`` of a run that ended ``error`` or ``timeout`` with retries
  left points ``next_run_at`` at the retry time (``pending_retry``, with the fire it
  retries and ``resume_at``), only when that comes before the next scheduled fire.
  The retry is claimed like any fire: compare-and-set on ``next_run_at``.
* **until**: no ``next_run_at`` (fire or retry) after it; the job then completes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .._frozen import Frozen
from ..errors import UsageError
from ..schedules import Schedule, parse_schedule
from ..timeutil import parse_iso, to_iso
from .records import (
    EARLY_TOLERANCE,
    FINISH_STATUSES,
    MAX_SECONDS,
    UPDATABLE,
    Invalid,
    Job,
    Record,
    copy_json,
    derive_name,
)

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
#: Overlap ``queue`` / ``replace``: the fire is kept in the record (``queued_fire``) and
#: runs once the running one has ended; next_run_at advanced. No ledger row yet: the
#: queued fire's run writes it.
QUEUED = "queued"

CLAIM_OUTCOMES = (WON, SKIPPED, MISSED, LOST, GONE, INACTIVE, INTERRUPTED, QUEUED)

#: Seconds before the first retry when a job sets ``retries`` but no ``retry_delay``.
DEFAULT_RETRY_DELAY = 30.0
#: Run statuses that are retried (``retries``).
RETRIED = ("error", "timeout")

#: What a rule returns: the record to write (None: nothing changes) and its answer.
Change = Tuple[Optional[Record], Any]

_MICRO = timedelta(microseconds=1)


# Not attrs: see hermes_cron._frozen (issue 12).
class Policy(Frozen):
    """The store-wide settings the rules read (``cron.claim_ttl``, ``cron.misfire_grace``)."""

    __slots__ = ("claim_ttl", "misfire_grace")

    claim_ttl: float
    misfire_grace: float

    def __init__(self, claim_ttl: float = 300.0, misfire_grace: float = 3600.0) -> None:
        self._set(claim_ttl=claim_ttl, misfire_grace=misfire_grace)

    def grace(self, job: Job) -> float:
        value = job.get("misfire_grace")
        return self.misfire_grace if value is None else float(value)

    def fresh(self, held: Mapping[str, Any], now: datetime) -> bool:
        """A claim is fresh when it was taken or renewed within ``claim_ttl`` and is not
        dated in the future (a future date means a clock went backwards: stale)."""
        try:
            claimed_at = parse_iso(held["claimed_at"])
        except (KeyError, ValueError, TypeError):
            return False
        age = (now - claimed_at).total_seconds()
        return 0 <= age < self.claim_ttl


class Claim(Frozen):
    """The answer of a claim attempt."""

    __slots__ = (
        "job_id",
        "fire_at",
        "outcome",
        "owner",
        "job",
        "reason",
        "missed_from",
        "manual",
        "superseded",
        "fence",
        "attempt",
        "due_at",
        "replacing",
    )

    job_id: str
    fire_at: datetime  # the due time the fire is for (after coalescing missed times)
    outcome: str
    owner: str
    job: Optional[Job]  # the record as written by the claim (None when GONE)
    reason: str  # why, for LOST/GONE/INACTIVE/MISSED/SKIPPED; for a coalesced catch-up,
    # which missed times were folded into this one
    #: For a coalesced catch-up: the first missed fire time folded into this run
    #: (the ``fire_at`` that was asked for). None when nothing was folded in.
    missed_from: Optional[datetime]
    #: True for ``claim_manual`` (``hermes-cron run ID``).
    manual: bool
    #: When this claim took over a stale one, the run that never finished, as an
    #: INTERRUPTED claim, so the runner writes its ledger row (nothing dropped silently).
    superseded: Optional[Claim]
    #: The claim's fencing counter (PostgreSQL); 0 where the store keeps none.
    fence: int
    #: Which attempt of the fire this is: 1, or 2, 3... for retries (``retries``).
    attempt: int
    #: For a retry: the due time that was claimed (``fire_at`` stays the fire it retries).
    due_at: Optional[datetime]
    #: For QUEUED under ``overlap: replace``: the owner whose run was asked to stop.
    replacing: Optional[str]

    def __init__(
        self,
        job_id: str,
        fire_at: datetime,
        outcome: str,
        owner: str,
        job: Optional[Job] = None,
        reason: str = "",
        missed_from: Optional[datetime] = None,
        manual: bool = False,
        superseded: Optional[Claim] = None,
        fence: int = 0,
        attempt: int = 1,
        due_at: Optional[datetime] = None,
        replacing: Optional[str] = None,
    ) -> None:
        self._set(
            job_id=job_id,
            fire_at=fire_at,
            outcome=outcome,
            owner=owner,
            job=job,
            reason=reason,
            missed_from=missed_from,
            manual=manual,
            superseded=superseded,
            fence=fence,
            attempt=attempt,
            due_at=due_at,
            replacing=replacing,
        )

    @property
    def won(self) -> bool:
        return self.outcome == WON

    @property
    def due(self) -> datetime:
        """The due time this claim was made for (when its run should start)."""
        return self.due_at or self.fire_at


# ---------------------------------------------------------------------------
# Checks of the caller's arguments (before any lock is taken)


def check_owner(owner: str) -> None:
    if not isinstance(owner, str) or not owner:
        raise UsageError("a claim needs an owner token")


def check_finish_status(status: str) -> None:
    if status not in FINISH_STATUSES:
        raise UsageError(f"run status must be one of {', '.join(FINISH_STATUSES)}")


def check_new_job(
    command: Optional[Sequence[str]],
    prompt: Optional[str],
    name: Optional[str],
    repeat: Optional[int],
    schedule: Schedule,
    options: Mapping[str, Any],
) -> Optional[List[str]]:
    """Refuse a bad ``add`` before anything is written; returns the command as a list.

    ``options`` holds job options (record fields of ``records.OPTION_FIELDS``); they
    are checked by the record check itself, so the words match a quarantine's.
    """
    from .records import OPTION_FIELDS, check_options

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
    unknown = sorted(set(options) - set(OPTION_FIELDS))
    if unknown:
        raise UsageError(f"unknown job option(s): {', '.join(unknown)}")
    try:
        check_options(options)
    except Invalid as exc:
        raise UsageError(f"invalid job: {exc}") from None
    if name is not None and not isinstance(name, str):
        raise UsageError("name must be text")
    return command  # type: ignore[return-value]


def check_update_fields(fields: Dict[str, Any]) -> Dict[str, Any]:
    """Refuse fields ``update`` may not change; a ``Schedule`` becomes its record."""
    unknown = sorted(set(fields) - set(UPDATABLE))
    if unknown:
        raise UsageError(f"cannot update {', '.join(unknown)} (allowed: {', '.join(UPDATABLE)})")
    fields = dict(fields)
    if isinstance(fields.get("schedule"), Schedule):
        fields["schedule"] = fields["schedule"].to_record()
    tz = fields.get("tz")
    if "tz" in fields and (not isinstance(tz, str) or not tz.strip()):
        raise UsageError(f"tz must be an IANA zone name, got {tz!r}")
    return fields


# ---------------------------------------------------------------------------
# Jitter, until, and where the next fire goes


def jitter_offset(job_id: str, scheduled: datetime, jitter: Optional[float]) -> timedelta:
    """The delay of the fire scheduled at ``scheduled``: whole milliseconds in
    ``[0, jitter)``, drawn from ``sha256("<job id>|<scheduled, ISO 8601 UTC>")`` alone, so
    every process, every provider and every store computes the same instant."""
    if not jitter:
        return timedelta(0)
    span = int(float(jitter) * 1000)
    if span <= 0:
        return timedelta(0)
    # Here, not at the top: hashlib loads OpenSSL (3-4 ms), which every command that
    # imports the store would pay for, and only jobs with a jitter use it (issue 12).
    import hashlib

    digest = hashlib.sha256(f"{job_id}|{to_iso(scheduled)}".encode()).digest()
    return timedelta(milliseconds=int.from_bytes(digest[:8], "big") % span)


def delayed(job: Job, scheduled: datetime) -> datetime:
    """When the fire scheduled at ``scheduled`` is due: plus the job's jitter offset."""
    try:
        return scheduled + jitter_offset(job["id"], scheduled, job.get("jitter"))
    except OverflowError:  # a fire near the end of time: no room for a delay
        return scheduled


def _until(job: Job) -> Optional[datetime]:
    value = job.get("until")
    return parse_iso(value) if value else None


def plan(job: Job, scheduled: Optional[datetime]) -> None:
    """Make ``scheduled`` the job's next scheduled fire (changes ``job``): its undelayed
    time in ``next_scheduled_at``, its due time (jittered) in ``next_run_at``; none at
    all when it would come after ``until``."""
    due = None if scheduled is None else delayed(job, scheduled)
    until = _until(job)
    if due is not None and until is not None and due > until:
        scheduled = due = None
    job["next_scheduled_at"] = opt_iso(scheduled)
    job["next_run_at"] = opt_iso(due)


def scheduled_of(job: Job, due: datetime) -> datetime:
    """The undelayed time of the scheduled fire due at ``due``: ``next_scheduled_at``
    when it matches (a hand-edited ``next_run_at`` counts as undelayed)."""
    text = job.get("next_scheduled_at")
    if text:
        try:
            scheduled = parse_iso(text)
        except (ValueError, TypeError):
            return due
        if delayed(job, scheduled) == due:
            return scheduled
    return due


def latest_due(job: Job, schedule: Schedule, now: datetime) -> Optional[datetime]:
    """The latest scheduled time whose (jittered) fire time has come. O(1): the latest
    scheduled time, or the one before it while the jitter still holds it back."""
    latest = schedule.latest_at_or_before(now)
    if latest is None or not job.get("jitter") or delayed(job, latest) <= now:
        return latest
    return schedule.latest_at_or_before(latest - _MICRO)


def _effective(
    job: Job, schedule: Schedule, fire_at: datetime, now: datetime
) -> Tuple[datetime, datetime]:
    """For a scheduled fire due at ``fire_at``: the scheduled time this run stands for
    (the latest one due: a catch-up coalesces) and where the schedule goes after it."""
    scheduled = scheduled_of(job, fire_at)
    effective = scheduled
    if schedule.recurring:
        latest = latest_due(job, schedule, now)
        if latest is not None and latest > effective:
            effective = latest
    # Without jitter, "after now" (a fire claimed a moment early goes after itself);
    # with it, after the effective scheduled time: the next one is not due yet.
    base = effective if job.get("jitter") else max(now, effective)
    return effective, base


def _resume_at(job: Job, pending: Mapping[str, Any]) -> Optional[datetime]:
    """The scheduled fire a retry or a queued fire goes back to once claimed."""
    if "resume_at" in pending:
        value = pending.get("resume_at")
        return parse_iso(value) if value else None
    text = job.get("next_scheduled_at")
    return delayed(job, parse_iso(text)) if text else None


def _pending_retry(job: Job, fire_at: datetime) -> Optional[Dict[str, Any]]:
    retry = job.get("pending_retry")
    if retry and parse_iso(retry["due_at"]) == fire_at:
        return retry  # type: ignore[no-any-return]
    return None


def _released_queue(job: Job, fire_at: datetime) -> Optional[Dict[str, Any]]:
    queued = job.get("queued_fire")
    if queued and parse_iso(queued["fire_at"]) == fire_at:
        return queued  # type: ignore[no-any-return]
    return None


def _release_queue(job: Job) -> bool:
    """A run ended (or died): its queued fire is due now, then the scheduled one again."""
    queued = job.get("queued_fire")
    if not queued:
        return False
    job["queued_fire"] = {**queued, "resume_at": job.get("next_run_at")}
    job["next_run_at"] = queued["fire_at"]
    job["pending_retry"] = None
    return True


def _replan(job: Job, scheduled: Optional[datetime]) -> None:
    """Point the job at ``scheduled`` afresh (an edit, a resume): a waiting retry is
    dropped (it was timed against the old plan); a queued fire whose run already ended
    still runs first."""
    job["pending_retry"] = None
    plan(job, scheduled)
    if not job.get("fire_claim"):
        _release_queue(job)


def _done(job: Job) -> bool:
    """Nothing left to run: no next fire, no retry, no queued fire, no run going on."""
    return (
        job.get("next_run_at") is None
        and not job.get("pending_retry")
        and not job.get("queued_fire")
        and not job.get("fire_claim")
    )


# ---------------------------------------------------------------------------
# Creating and changing jobs


def new_job(
    job_id: str,
    schedule: Schedule,
    now: datetime,
    *,
    command: Optional[List[str]],
    prompt: Optional[str],
    name: Optional[str],
    repeat: Optional[int],
    options: Optional[Mapping[str, Any]] = None,
) -> Record:
    """The record of a new job: its first fire is the schedule's first time after now
    (a one-shot: its own time, even if past: the missed-run policy then applies),
    delayed by its jitter. ``options``: job options (``records.OPTION_FIELDS``)."""
    first = first_fire(schedule, now)
    if first is None:
        raise UsageError(f"schedule {schedule.text!r} never fires")
    stamp = to_iso(now)
    record: Job = {
        "id": job_id,
        "name": (name or "").strip() or derive_name(command, prompt),
        "schedule": schedule.to_record(),
        "command": command,
        "prompt": prompt,
        "enabled": True,
        "state": "scheduled",
        # A one-shot is a job of one run (SPEC §4).
        "repeat": {"times": repeat if schedule.recurring else 1, "completed": 0},
        "next_run_at": None,
        "last_run_at": None,
        "last_status": None,
        "last_error": None,
        "fire_claim": None,
    }
    from .records import FIELDS, OPTION_FIELDS

    for key in OPTION_FIELDS:
        record[key] = copy_json((options or {}).get(key))
    record.update(next_scheduled_at=None, pending_retry=None, queued_fire=None)
    record.update(created_at=stamp, updated_at=stamp)
    assert tuple(record) == FIELDS
    try:
        Record.check(record)  # the options first, so their errors name them
    except Invalid as exc:
        raise UsageError(f"invalid job: {exc}") from None
    plan(record, first)
    if record["next_run_at"] is None:
        raise UsageError(
            f"schedule {schedule.text!r} never fires before --until {record['until']}"
            f" (its first time is {to_iso(delayed(record, first))})"
        )
    # What is written must read back as valid, or it would be quarantined.
    try:
        return Record.check(record)
    except Invalid as exc:
        raise UsageError(f"invalid job: {exc}") from None


def rezoned(schedule: Schedule, tz: str, now: datetime) -> Schedule:
    """``schedule`` in another zone: a cron expression keeps its fields, an interval its
    anchor (no drift), a one-shot given as a wall time is that wall time in ``tz``
    (given as a delay or with an offset, it keeps its instant). ``ScheduleError`` for an
    unknown zone."""
    text = schedule.text
    if schedule.kind == "once" and text[:4].isdigit() and text[4:5] == "-":
        return parse_schedule(text, tz=tz, now=now)
    return schedule._replace(tz=tz)


def _new_schedule(rec: Record, fields: Mapping[str, Any], now: datetime) -> Optional[Schedule]:
    """The schedule an update asks for (text parsed in the new or the job's own zone)."""
    tz = fields.get("tz")
    if "schedule" not in fields:
        return rezoned(rec.schedule, tz, now) if tz else None
    value = fields["schedule"]
    if isinstance(value, str):
        if not value.strip():
            raise UsageError("the new schedule is empty")
        return parse_schedule(value.strip(), tz=tz or rec.schedule.tz, now=now)
    try:
        schedule = Schedule.from_record(value)
    except Exception as exc:
        raise UsageError(f"schedule: {exc}") from None
    return rezoned(schedule, tz, now) if tz else schedule


#: Fields whose change moves the next fire (with the schedule and the zone).
_REPLAN_FIELDS = ("jitter", "until")


def update(rec: Record, fields: Mapping[str, Any], now: datetime) -> Change:
    """Change the fields given (checked by ``check_update_fields``): ``hermes-cron edit``.

    ``schedule`` may be text (parsed in ``tz`` or the job's zone), a ``Schedule`` record;
    ``tz`` alone re-zones the current schedule (``rezoned``); ``env_add`` merges variables
    into ``env`` (after ``env`` itself, so clearing then adding replaces them). A new
    schedule or zone, or enabling a disabled job, recomputes ``next_run_at`` from now; a
    new ``jitter`` or ``until`` re-times the pending scheduled fire. A recomputed job with
    no fire left (``until`` passed) completes. A run in progress keeps its claim (it
    records its end against the edited job). Raises ``UsageError`` when the result is
    invalid; writes nothing when nothing changed."""
    old = rec.job
    job_id = old["id"]
    job = copy_json(old)
    schedule = _new_schedule(rec, fields, now)
    if schedule is not None:
        job["schedule"] = schedule.to_record()
        was_recurring = rec.schedule.recurring
        if schedule.recurring != was_recurring and "repeat" not in fields:
            # A one-shot is one run; a recurring job made of a one-shot has no limit.
            job["repeat"] = {**job["repeat"], "times": None if schedule.recurring else 1}
    derived = old.get("name") == derive_name(old.get("command"), old.get("prompt"))
    for key, value in fields.items():
        if key in ("schedule", "tz", "env_add"):
            continue
        if key == "repeat":
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise UsageError(f"repeat must be a whole number >= 1, got {value!r}")
            if value is not None and not (schedule or rec.schedule).recurring:
                raise UsageError("repeat applies to recurring schedules, not to a one-shot")
            if value is not None and job["repeat"]["completed"] >= value:
                raise UsageError(f"job {job_id!r} already ran {job['repeat']['completed']} times")
            if value is None and not (schedule or rec.schedule).recurring:
                value = 1  # a one-shot is always one run
            job["repeat"] = {**job["repeat"], "times": value}
        elif key == "name":
            job["name"] = (value or "").strip() or derive_name(
                job.get("command"), job.get("prompt")
            )
        else:
            job[key] = copy_json(value)
    if fields.get("env_add"):
        added = fields["env_add"]
        if not isinstance(added, Mapping):
            raise UsageError(f"env_add: expected a mapping of NAME: value, got {added!r}")
        job["env"] = {**(job.get("env") or {}), **copy_json(dict(added))}
    if "name" not in fields and derived:
        # A name derived from the old command or prompt follows the new one.
        job["name"] = derive_name(job.get("command"), job.get("prompt"))
    try:
        checked = Record.check(job)
    except Invalid as exc:
        raise UsageError(f"invalid update of job {job_id!r}: {exc}") from None
    job = checked.job
    replanned = False
    if job["state"] != "completed":
        replanned = True
        if job["schedule"] != old["schedule"] or (job["enabled"] and not old["enabled"]):
            _replan(job, first_fire(checked.schedule, now))
        elif any(job.get(k) != old.get(k) for k in _REPLAN_FIELDS):
            # Same schedule: the pending scheduled fire keeps its undelayed time.
            pending = job.get("next_scheduled_at")
            if pending is None and not (job.get("pending_retry") or job.get("queued_fire")):
                pending = old.get("next_run_at")  # a record from before jitter existed
            _replan(job, parse_iso(pending) if pending else None)
        else:
            replanned = False
        if replanned and job["state"] == "scheduled" and _done(job):
            job["state"] = "completed"
    if job == old:
        return None, copy_json(old)
    job["updated_at"] = to_iso(now)
    return checked.with_job(job), copy_json(job)


def pause(rec: Record, now: datetime) -> Change:
    """``scheduled`` → ``paused`` (``next_run_at`` kept for display). Pausing a paused job
    changes nothing; a completed job cannot be paused (``UsageError``)."""
    job = rec.job
    if job["state"] == "completed":
        raise UsageError(f"job {job['id']!r} is completed: it has no runs left to pause")
    if job["state"] == "paused":
        return None, copy_json(job)
    job = copy_json(job)
    job["state"] = "paused"
    job["updated_at"] = to_iso(now)
    return rec.with_job(job), copy_json(job)


def resume(rec: Record, now: datetime) -> Change:
    """Back to ``scheduled`` with ``next_run_at`` recomputed from now: an interval keeps
    its anchor (fixed rate); a one-shot gets its own time back (if that has passed, the
    missed-run policy decides). A completed job cannot be resumed (``UsageError``); a
    job whose ``until`` has passed completes."""
    job = rec.job
    if job["state"] == "completed":
        raise UsageError(f"job {job['id']!r} is completed and cannot be resumed")
    if job["state"] == "scheduled":
        return None, copy_json(job)
    job = copy_json(job)
    job["state"] = "scheduled"
    if not exhausted(job):
        _replan(job, first_fire(rec.schedule, now))
        if _done(job):
            job["state"] = "completed"
    job["updated_at"] = to_iso(now)
    return rec.with_job(job), copy_json(job)


def imported(value: Any) -> Record:
    """A record from ``store import``: checked like any record (``Invalid``), its
    claim dropped (a claim belongs to a process of the old store; a fire it kept
    queued is due at once), the rest kept."""
    rec = Record.check(value)
    if rec.job.get("fire_claim") is None:
        return rec
    job = copy_json(rec.job)
    job["fire_claim"] = None
    _release_queue(job)
    return rec.with_job(job)


# ---------------------------------------------------------------------------
# Firing


def claim(
    rec: Optional[Record],
    job_id: str,
    fire_at: datetime,
    owner: str,
    now: datetime,
    policy: Policy,
    gone_reason: str = "no such job",
) -> Change:
    """Compare-and-set one fire (SPEC §4): the missed-run policy, the overlap rule, the
    advance of ``next_run_at`` (recurring) or its end (one-shot, last repeat) and the
    repeat count, all in the record the claim writes.

    ``fire_at`` must be the job's ``next_run_at``: a scheduled fire (jittered), a retry
    (``pending_retry``) or a queued fire whose wait is over (``queued_fire``); each is
    claimed at most once, the same way."""
    if fire_at.tzinfo is None:
        raise UsageError(f"fire time {fire_at.isoformat()} has no UTC offset")
    if rec is None:
        return None, Claim(job_id, fire_at, GONE, owner, reason=gone_reason)
    job, schedule = rec.job, rec.schedule
    if job["state"] != "scheduled" or not job["enabled"]:
        why = job["state"] if job["state"] != "scheduled" else "disabled"
        return None, Claim(job_id, fire_at, INACTIVE, owner, job=copy_json(job), reason=why)
    if rec.next_run is None:
        reason = "no run is pending"
        return None, Claim(job_id, fire_at, LOST, owner, job=copy_json(job), reason=reason)
    if fire_at != rec.next_run:
        reason = f"not due for {to_iso(fire_at)}: next run is {job['next_run_at']}"
        return None, Claim(job_id, fire_at, LOST, owner, job=copy_json(job), reason=reason)
    if (fire_at - now).total_seconds() > EARLY_TOLERANCE:
        reason = f"not due yet (due at {job['next_run_at']})"
        return None, Claim(job_id, fire_at, LOST, owner, job=copy_json(job), reason=reason)
    held = job.get("fire_claim")
    retry = _pending_retry(job, fire_at)
    queued = None if retry else _released_queue(job, fire_at)
    if held and policy.fresh(held, now):
        return _overlap(rec, fire_at, owner, now, held, retry, queued)
    if retry is not None:
        return _claim_retry(rec, fire_at, owner, now, policy, retry)
    if queued is not None:
        return _claim_queued(rec, fire_at, owner, now, queued)
    missed = apply_misfire(rec, fire_at, owner, now, policy)
    if missed[0] is not None:
        return missed
    superseded = _superseded(job_id, held)
    scheduled = scheduled_of(job, fire_at)
    effective_s, base = _effective(job, schedule, fire_at, now)
    effective = fire_at if effective_s == scheduled else delayed(job, effective_s)
    job = copy_json(job)
    job["fire_claim"] = {"fire_at": to_iso(effective), "owner": owner, "claimed_at": to_iso(now)}
    # Every run counts, whatever its kind and outcome (SPEC §4); retries do not.
    job["repeat"]["completed"] += 1
    if not schedule.recurring or exhausted(job):
        plan(job, None)
    else:
        plan(job, schedule.next_after(base))
    job["updated_at"] = to_iso(now)
    reason = ""
    missed_from = None
    if effective != fire_at:
        missed_from = fire_at
        reason = "catch-up: " + _folded(schedule, scheduled, effective_s)
    folded = job.get("queued_fire")
    if folded:
        # The run that kept it waiting died (its claim went stale): this fire stands
        # for the queued one too.
        job["queued_fire"] = None
        reason = (reason + "; " if reason else "") + (
            f"runs for the fire queued at {folded['fire_at']} too (its run before never ended)"
        )
    answer = Claim(
        job_id,
        effective,
        WON,
        owner,
        job=copy_json(job),
        reason=reason,
        missed_from=missed_from,
        superseded=superseded,
    )
    return rec.with_job(job), answer


def _superseded(job_id: str, held: Optional[Mapping[str, Any]]) -> Optional[Claim]:
    """The INTERRUPTED claim of a stale claim being taken over (its ledger row)."""
    if not held:
        return None
    return Claim(
        job_id,
        parse_iso(held["fire_at"]),
        INTERRUPTED,
        held["owner"],
        reason=(
            f"interrupted: the run claimed by {held['owner']} at {held['claimed_at']} "
            "never finished (its claim went stale and a later fire took over)"
        ),
        manual=bool(held.get("manual")),
        attempt=int(held.get("attempt") or 1),
    )


def _claim_retry(
    rec: Record,
    fire_at: datetime,
    owner: str,
    now: datetime,
    policy: Policy,
    retry: Mapping[str, Any],
) -> Change:
    """Claim the retry due at ``fire_at``: it runs for the fire it retries (``fire_at`` of
    the claim and of its ledger row) as attempt N, unless the next scheduled fire has come
    (it supersedes the retry) or the retry is later than the grace (missed)."""
    job = rec.job
    resume = _resume_at(job, retry)
    late = (now - fire_at).total_seconds()
    grace = policy.grace(job)
    if resume is not None and resume <= now:
        reason = f"retry superseded: the next fire, due at {to_iso(resume)}, has come"
        return _retry_dropped(rec, retry, fire_at, owner, now, MISSED, reason)
    if late > grace:
        reason = f"missed: retry due at {to_iso(fire_at)}, {seconds_text(late)} late"
        reason += f" (grace {seconds_text(grace)})"
        return _retry_dropped(rec, retry, fire_at, owner, now, MISSED, reason)
    superseded = _superseded(job["id"], job.get("fire_claim"))
    attempt = int(retry["attempt"])
    job = copy_json(job)
    job["fire_claim"] = {
        "fire_at": retry["fire_at"],
        "owner": owner,
        "claimed_at": to_iso(now),
        "attempt": attempt,
        "due_at": to_iso(fire_at),
    }
    job["pending_retry"] = None
    job["next_run_at"] = opt_iso(resume)
    job["updated_at"] = to_iso(now)
    answer = Claim(
        job["id"],
        parse_iso(retry["fire_at"]),
        WON,
        owner,
        job=copy_json(job),
        reason=f"retry: attempt {attempt} of the fire due at {retry['fire_at']}",
        superseded=superseded,
        attempt=attempt,
        due_at=fire_at,
    )
    return rec.with_job(job), answer


def _retry_dropped(
    rec: Record,
    retry: Mapping[str, Any],
    fire_at: datetime,
    owner: str,
    now: datetime,
    outcome: str,
    reason: str,
) -> Change:
    """A retry that will not run (missed, superseded, or overlapping a run): recorded,
    and the job goes back to its next scheduled fire (or completes: none is left)."""
    job = copy_json(rec.job)
    job["pending_retry"] = None
    resume = _resume_at(rec.job, retry)
    job["next_run_at"] = opt_iso(resume)
    if job["state"] == "scheduled" and _done(job):
        job["state"] = "completed"
    job["last_status"] = outcome
    job["last_error"] = reason
    job["updated_at"] = to_iso(now)
    answer = Claim(
        job["id"],
        parse_iso(retry["fire_at"]),
        outcome,
        owner,
        job=copy_json(job),
        reason=reason,
        attempt=int(retry["attempt"]),
        due_at=fire_at,
    )
    return rec.with_job(job), answer


def _claim_queued(
    rec: Record, fire_at: datetime, owner: str, now: datetime, queued: Mapping[str, Any]
) -> Change:
    """Claim a queued fire whose wait is over: it runs now (however long it waited: the
    run before it is what made it late), counts as a run, and the job goes back to its
    next scheduled fire."""
    job = rec.job
    superseded = _superseded(job["id"], job.get("fire_claim"))
    resume = _resume_at(job, queued)
    job = copy_json(job)
    job["fire_claim"] = {"fire_at": queued["fire_at"], "owner": owner, "claimed_at": to_iso(now)}
    job["queued_fire"] = None
    job["repeat"]["completed"] += 1
    if exhausted(job) and rec.schedule.recurring or resume is None:
        plan(job, None)
    else:
        job["next_run_at"] = to_iso(resume)
    job["updated_at"] = to_iso(now)
    answer = Claim(
        job["id"],
        fire_at,
        WON,
        owner,
        job=copy_json(job),
        reason=f"queued at {queued.get('queued_at')}: runs now that the run before it ended",
        superseded=superseded,
    )
    return rec.with_job(job), answer


def _overlap(
    rec: Record,
    fire_at: datetime,
    owner: str,
    now: datetime,
    held: Mapping[str, Any],
    retry: Optional[Mapping[str, Any]],
    queued: Optional[Mapping[str, Any]],
) -> Change:
    """A fire due while a run holds a fresh claim: the job's ``overlap`` policy."""
    running = f"still running the fire claimed by {held['owner']} at {held['claimed_at']}"
    if retry is not None:
        # A run started meanwhile (a manual one): it stands for the retry.
        return _retry_dropped(rec, retry, fire_at, owner, now, SKIPPED, f"overlap: {running}")
    if queued is not None:
        # A queued fire whose wait was over, and a run (a manual one) started first:
        # it waits for that one too.
        job = copy_json(rec.job)
        job["next_run_at"] = opt_iso(_resume_at(job, queued))
        job["queued_fire"] = {k: v for k, v in queued.items() if k != "resume_at"}
        job["updated_at"] = to_iso(now)
        reason = f"queued: {running}"
        answer = Claim(job["id"], fire_at, QUEUED, owner, job=copy_json(job), reason=reason)
        return rec.with_job(job), answer
    policy = rec.job.get("overlap") or "skip"
    if policy == "skip" or rec.job.get("queued_fire"):
        full = "" if policy == "skip" else "; a fire already waits for it"
        return _skip_overlap(rec, fire_at, owner, now, held, full)
    job = copy_json(rec.job)
    job["queued_fire"] = {"fire_at": to_iso(fire_at), "queued_at": to_iso(now)}
    reason = f"queued: {running}; runs as soon as that one ends"
    replacing = None
    if policy == "replace":
        job["fire_claim"]["cancel_requested"] = {"at": to_iso(now), "fire_at": to_iso(fire_at)}
        replacing = held["owner"]
        reason = f"replacing: the run claimed by {held['owner']} was asked to stop"
    _advance_past(job, rec.schedule, fire_at, now)
    job["updated_at"] = to_iso(now)
    answer = Claim(
        job["id"], fire_at, QUEUED, owner, job=copy_json(job), reason=reason, replacing=replacing
    )
    return rec.with_job(job), answer


def _advance_past(job: Job, schedule: Schedule, fire_at: datetime, now: datetime) -> None:
    """Move a fire that does not run now out of the way: to the next scheduled one."""
    if schedule.recurring and not exhausted(job):
        _, base = _effective(job, schedule, fire_at, now)
        plan(job, schedule.next_after(base))
    else:
        plan(job, None)


def _skip_overlap(
    rec: Record,
    fire_at: datetime,
    owner: str,
    now: datetime,
    held: Mapping[str, Any],
    note: str = "",
) -> Change:
    """The previous fire is still running: skip this one and move on."""
    job = copy_json(rec.job)
    reason = (
        f"overlap: still running the fire claimed by {held['owner']} at {held['claimed_at']}" + note
    )
    if rec.schedule.recurring:
        _advance_past(job, rec.schedule, fire_at, now)
    elif job.get("queued_fire"):
        plan(job, None)  # the queued fire is this one-shot's run
    else:
        # A one-shot's time came while a manual run of it is in progress: that run is its
        # run. Waiting would re-fire forever; completing is the honest end.
        plan(job, None)
        job["state"] = "completed"
        reason += "; the one-shot is complete"
    job["last_status"] = "skipped"
    job["last_error"] = reason
    job["updated_at"] = to_iso(now)
    answer = Claim(job["id"], fire_at, SKIPPED, owner, job=copy_json(job), reason=reason)
    return rec.with_job(job), answer


def claim_manual(
    rec: Optional[Record], job_id: str, owner: str, now: datetime, policy: Policy, gone_reason: str
) -> Change:
    """Claim for ``hermes-cron run ID``: fire_at = now; the schedule is not advanced.

    Allowed in any state (the user asked by hand). Refused (LOST, "already running")
    while a fresh claim is held. A manual run does not count toward ``repeat``, is not
    retried and does not complete a one-shot; the claim carries ``manual: true`` so
    ``finish`` knows.
    """
    if rec is None:
        return None, Claim(job_id, now, GONE, owner, reason=gone_reason)
    job = rec.job
    held = job.get("fire_claim")
    if held and policy.fresh(held, now):
        reason = f"already running (claimed by {held['owner']} at {held['claimed_at']})"
        answer = Claim(job_id, now, LOST, owner, job=copy_json(job), reason=reason, manual=True)
        return None, answer
    job = copy_json(job)
    stamp = to_iso(now)
    job["fire_claim"] = {"fire_at": stamp, "owner": owner, "claimed_at": stamp, "manual": True}
    job["updated_at"] = stamp
    return rec.with_job(job), Claim(job_id, now, WON, owner, job=copy_json(job), manual=True)


def renew(rec: Optional[Record], owner: str, now: datetime) -> Change:
    """Refresh ``claimed_at`` if ``owner`` still holds the claim; answers whether it does."""
    if rec is None:
        return None, False
    held = rec.job.get("fire_claim")
    if not held or held.get("owner") != owner:
        return None, False
    job = copy_json(rec.job)
    job["fire_claim"]["claimed_at"] = to_iso(now)
    return rec.with_job(job), True


def cancel_requested(job: Optional[Mapping[str, Any]], owner: str) -> Optional[Dict[str, Any]]:
    """The stop request on ``owner``'s run of ``job`` (``overlap: replace``), if any."""
    held = (job or {}).get("fire_claim")
    if not held or held.get("owner") != owner:
        return None
    request = held.get("cancel_requested")
    return dict(request) if isinstance(request, dict) else None


def finish(
    rec: Optional[Record],
    owner: str,
    status: str,
    error: Optional[str],
    started_at: datetime,
    now: datetime,
) -> Change:
    """Record a run's end if ``owner`` still holds the claim (else the answer is None):
    the last_* fields and the claim cleared; then, in this order, a queued fire is due
    now, or a failed run with retries left gets its retry (before the next scheduled
    fire only), or a job with nothing left to run (a one-shot, a spent repeat, past
    ``until``) completes."""
    if rec is None:
        return None, None
    held = rec.job.get("fire_claim")
    if not held or held.get("owner") != owner:
        return None, None
    job = copy_json(rec.job)
    job["last_run_at"] = to_iso(started_at)
    job["last_status"] = status
    job["last_error"] = error
    job["fire_claim"] = None
    manual = bool(held.get("manual"))
    if not _release_queue(job) and not manual and status in RETRIED:
        retry, note = _retry_after(job, held, now)
        if retry is not None:
            job["pending_retry"] = retry
            job["next_run_at"] = retry["due_at"]
        if note:
            job["last_error"] = f"{error}; {note}" if error else note
    if not manual and _done(job):
        job["state"] = "completed"
    job["updated_at"] = to_iso(now)
    return rec.with_job(job), copy_json(job)


def settle(rec: Optional[Record], row: Mapping[str, Any], now: datetime) -> Change:
    """A run whose claim was found stale (taken over, or cleared by a catch-up as
    interrupted) had in fact recorded its end in the ledger (``row``): its process
    wrote the row, then died before the run's end reached the record. The record's
    ``last_*`` fields then take the row's, unless a run that started later has already
    set them. Nothing else changes: the fire is over, and what came after it (the next
    fire, a completion) stands."""
    if rec is None:
        return None, None
    started = parse_iso(row["started_at"])
    last = rec.job.get("last_run_at")
    if last is not None and parse_iso(last) >= started:
        return None, None
    job = copy_json(rec.job)
    job["last_run_at"] = to_iso(started)
    job["last_status"] = row["status"]
    job["last_error"] = row.get("error")
    job["updated_at"] = to_iso(now)
    return rec.with_job(job), copy_json(job)


def _retry_after(
    job: Job, held: Mapping[str, Any], now: datetime
) -> Tuple[Optional[Dict[str, Any]], str]:
    """The retry of a failed run, or None; and a note saying what happens."""
    retries = int(job.get("retries") or 0)
    if not retries:
        return None, ""
    attempt = int(held.get("attempt") or 1)
    if attempt > retries:
        return None, f"no retry left ({retries} used)"
    if job["state"] != "scheduled" or not job["enabled"]:
        return None, "not retried: the job is not scheduled"
    base = float(job.get("retry_delay") or DEFAULT_RETRY_DELAY)
    delay = min(base * 2 ** (attempt - 1), float(MAX_SECONDS))
    try:
        due = now + timedelta(seconds=delay)
    except OverflowError:
        return None, "not retried: the retry would come after the end of time"
    following = job.get("next_run_at")
    if following and due >= parse_iso(following):
        return None, f"not retried: the next fire, at {following}, comes first"
    until = _until(job)
    if until is not None and due > until:
        return None, f"not retried: the retry would come after until ({job['until']})"
    retry = {
        "attempt": attempt + 1,
        "fire_at": held["fire_at"],
        "due_at": to_iso(due),
        "resume_at": following,
    }
    return retry, f"retry {attempt} of {retries} at {to_iso(due)}"


def catch_up(rec: Record, now: datetime, policy: Policy) -> Tuple[Optional[Record], List[Claim]]:
    """Bring one job up to date (at daemon start, on each reconcile, on reconnect).

    A stale claim whose run never finished becomes INTERRUPTED (cleared, ``last_status``
    error, a fire it kept queued is due at once, else a one-shot or spent repeat
    completes; an interrupted run is not retried: a crash mid-run never runs that fire
    again); a fire too late for its grace becomes MISSED (a recurring job resumes at its
    next time after now, a one-shot completes), a retry too late or overtaken by the
    next fire too; an active job with no ``next_run_at`` (a hand-written record) gets
    one. A fire still within grace is left alone: it is due and callers claim it. O(1).
    """
    out: List[Claim] = []
    current: Optional[Record] = None  # what to write, once anything changed
    job, schedule = rec.job, rec.schedule
    held = job.get("fire_claim")
    if held and not policy.fresh(held, now):
        job = copy_json(job)
        job["fire_claim"] = None
        job["last_status"] = "error"
        job["last_error"] = (
            f"interrupted: the run claimed by {held['owner']} at "
            f"{held['claimed_at']} never finished"
        )
        if not _release_queue(job) and not held.get("manual") and _done(job):
            job["state"] = "completed"
        job["updated_at"] = to_iso(now)
        current = rec.with_job(job)
        out.append(
            Claim(
                job["id"],
                parse_iso(held["fire_at"]),
                INTERRUPTED,
                held["owner"],
                job=copy_json(job),
                reason=job["last_error"],
                manual=bool(held.get("manual")),
                attempt=int(held.get("attempt") or 1),
            )
        )
        held = None
    base = current or rec
    job = base.job
    if job["state"] != "scheduled" or not job["enabled"] or held:
        return current, out
    if base.next_run is None:
        if schedule.recurring and not exhausted(job):
            job = copy_json(job)
            plan(job, schedule.next_after(now))
            if _done(job):
                job["state"] = "completed"  # past until
            job["updated_at"] = to_iso(now)
            current = base.with_job(job)
        return current, out
    if base.next_run > now or _released_queue(job, base.next_run):
        return current, out  # not due yet, or a queued fire: due, and callers claim it
    retry = _pending_retry(job, base.next_run)
    if retry is not None:
        written, answer = _claim_retry(base, base.next_run, "", now, policy, retry)
        if answer.outcome == MISSED:
            current = written
            out.append(answer)
        return current, out
    written, missed = apply_misfire(base, base.next_run, "", now, policy)
    if written is not None:
        current = written
        out.append(missed)
    return current, out


def needs_catch_up(rec: Record, now: datetime, policy: Policy) -> bool:
    """A cheap test: could ``catch_up`` change this record? (Backends use it to skip work.)"""
    job = rec.job
    if job.get("fire_claim"):
        return True
    if job["state"] != "scheduled" or not job["enabled"]:
        return False
    return rec.next_run is None or rec.next_run <= now


def apply_misfire(
    rec: Record, fire_at: datetime, owner: str, now: datetime, policy: Policy
) -> Change:
    """The missed-run policy for a due scheduled fire: nothing when it may still run
    (within grace), else the MISSED claim and the skip-ahead. O(1): one or two
    ``latest_at_or_before`` and one ``next_after``, never an enumeration of the missed
    times. Lateness counts from the latest missed fire's (jittered) due time."""
    job, schedule = rec.job, rec.schedule
    grace = policy.grace(job)
    effective_s, base = _effective(job, schedule, fire_at, now)
    latest = fire_at if effective_s == scheduled_of(job, fire_at) else delayed(job, effective_s)
    late = (now - latest).total_seconds()
    if late <= grace:
        return None, None
    job = copy_json(job)
    if schedule.recurring and not exhausted(job):
        plan(job, schedule.next_after(base))
        resume_at = job["next_run_at"]
        reason = (
            f"missed: due at {to_iso(fire_at)}"
            + (f", latest missed {to_iso(latest)}" if latest != fire_at else "")
            + f", {seconds_text(late)} late (grace {seconds_text(grace)}); resumes at "
            + (resume_at or "never")
        )
        if resume_at is None:
            job["state"] = "completed"
    else:
        plan(job, None)
        job["state"] = "completed"
        reason = (
            f"missed: due at {to_iso(fire_at)}, {seconds_text(late)} late "
            f"(grace {seconds_text(grace)}); the one-shot will not run"
        )
    job["last_status"] = "missed"
    job["last_error"] = reason
    job["updated_at"] = to_iso(now)
    answer = Claim(job["id"], fire_at, MISSED, owner, job=copy_json(job), reason=reason)
    return rec.with_job(job), answer


# ---------------------------------------------------------------------------
# Small helpers


def exhausted(job: Job) -> bool:
    repeat = job["repeat"]
    return repeat["times"] is not None and repeat["completed"] >= repeat["times"]


def first_fire(schedule: Schedule, now: datetime) -> Optional[datetime]:
    """Where a (re)started schedule goes next: a recurring one's next time after now,
    a one-shot's own time."""
    return schedule.next_after(now) if schedule.recurring else schedule.at


def _folded(schedule: Schedule, first: datetime, effective: datetime) -> str:
    """Describe the missed times a catch-up run stands for, without enumerating them."""
    if schedule.kind == "interval" and schedule.seconds:
        count = int((effective - first).total_seconds() // schedule.seconds) + 1
        return f"runs once for the {count} fire times from {to_iso(first)} to {to_iso(effective)}"
    return f"runs once for the fire times from {to_iso(first)} to {to_iso(effective)}"


def opt_iso(value: Optional[datetime]) -> Optional[str]:
    return None if value is None else to_iso(value)


def seconds_text(value: float) -> str:
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
    "QUEUED",
    "SKIPPED",
    "WON",
    "Claim",
    "Policy",
    "delayed",
    "jitter_offset",
]
