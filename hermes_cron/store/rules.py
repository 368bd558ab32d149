"""What a claim, a run's end, a catch-up or a missed fire does to one job record.

Every function here is a plain function of a record (``Record`` or None when the
job is absent), the time and the store's ``Policy``. It knows no file and no
connection: it returns the record to write (None: write nothing) and the answer
for the caller. Every backend reads the record under its own lock (the file lock,
a row lock), calls the rule, and writes what it returned, so the rules are the
same on every store.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .._frozen import Frozen
from ..errors import UsageError
from ..schedules import Schedule
from ..timeutil import parse_iso, to_iso
from .records import (
    EARLY_TOLERANCE,
    FINISH_STATUSES,
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

CLAIM_OUTCOMES = (WON, SKIPPED, MISSED, LOST, GONE, INACTIVE, INTERRUPTED)

#: What a rule returns: the record to write (None: nothing changes) and its answer.
Change = Tuple[Optional[Record], Any]


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
        )

    @property
    def won(self) -> bool:
        return self.outcome == WON


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
    misfire_grace: Optional[float],
    timeout: Optional[float],
) -> Optional[List[str]]:
    """Refuse a bad ``add`` before anything is written; returns the command as a list."""
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
    return command  # type: ignore[return-value]


def check_update_fields(fields: Dict[str, Any]) -> Dict[str, Any]:
    """Refuse fields ``update`` may not change; a ``Schedule`` becomes its record."""
    unknown = sorted(set(fields) - set(UPDATABLE))
    if unknown:
        raise UsageError(f"cannot update {', '.join(unknown)} (allowed: {', '.join(UPDATABLE)})")
    fields = dict(fields)
    if isinstance(fields.get("schedule"), Schedule):
        fields["schedule"] = fields["schedule"].to_record()
    return fields


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
    misfire_grace: Optional[float],
    timeout: Optional[float],
) -> Record:
    """The record of a new job: its first fire is the schedule's first time after now
    (a one-shot: its own time, even if past: the missed-run policy then applies)."""
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
        return Record.check(record)
    except Invalid as exc:
        raise UsageError(f"invalid job: {exc}") from None


def update(rec: Record, fields: Mapping[str, Any], now: datetime) -> Change:
    """Change the fields given (checked by ``check_update_fields``). A new schedule, or
    enabling a disabled job, recomputes ``next_run_at`` from now. Raises ``UsageError``
    when the result is invalid; writes nothing when nothing changed."""
    old = rec.job
    job_id = old["id"]
    job = copy_json(old)
    for key, value in fields.items():
        if key == "repeat":
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise UsageError(f"repeat must be a whole number >= 1, got {value!r}")
            if value is not None and job["repeat"]["completed"] >= value:
                raise UsageError(f"job {job_id!r} already ran {job['repeat']['completed']} times")
            job["repeat"] = {**job["repeat"], "times": value}
        elif key == "name":
            job["name"] = (value or "").strip() or derive_name(
                job.get("command"), job.get("prompt")
            )
        else:
            job[key] = copy_json(value)
    try:
        checked = Record.check(job)
    except Invalid as exc:
        raise UsageError(f"invalid update of job {job_id!r}: {exc}") from None
    job = checked.job
    if job["state"] != "completed" and (
        job["schedule"] != old["schedule"] or (job["enabled"] and not old["enabled"])
    ):
        job["next_run_at"] = opt_iso(first_fire(checked.schedule, now))
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
    missed-run policy decides). A completed job cannot be resumed (``UsageError``)."""
    job = rec.job
    if job["state"] == "completed":
        raise UsageError(f"job {job['id']!r} is completed and cannot be resumed")
    if job["state"] == "scheduled":
        return None, copy_json(job)
    job = copy_json(job)
    job["state"] = "scheduled"
    if not exhausted(job):
        job["next_run_at"] = opt_iso(first_fire(rec.schedule, now))
    job["updated_at"] = to_iso(now)
    return rec.with_job(job), copy_json(job)


def imported(value: Any) -> Record:
    """A record from ``store import``: checked like any record (``Invalid``), its
    claim dropped (a claim belongs to a process of the old store), the rest kept."""
    rec = Record.check(value)
    if rec.job.get("fire_claim") is None:
        return rec
    job = copy_json(rec.job)
    job["fire_claim"] = None
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
    repeat count, all in the record the claim writes."""
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
    if held and policy.fresh(held, now):
        return _skip_overlap(rec, fire_at, owner, now, held)
    missed = apply_misfire(rec, fire_at, owner, now, policy)
    if missed[0] is not None:
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
    if schedule.recurring:
        latest = schedule.latest_at_or_before(now)
        if latest is not None and latest > fire_at:
            effective = latest
    job = copy_json(job)
    job["fire_claim"] = {"fire_at": to_iso(effective), "owner": owner, "claimed_at": to_iso(now)}
    repeat = job["repeat"]
    if repeat["times"] is not None:
        repeat["completed"] += 1
    if not schedule.recurring or exhausted(job):
        job["next_run_at"] = None
    else:
        job["next_run_at"] = opt_iso(schedule.next_after(max(now, effective)))
    job["updated_at"] = to_iso(now)
    reason = ""
    missed_from = None
    if effective != fire_at:
        missed_from = fire_at
        reason = "catch-up: " + _folded(schedule, fire_at, effective)
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


def _skip_overlap(
    rec: Record, fire_at: datetime, owner: str, now: datetime, held: Mapping[str, Any]
) -> Change:
    """The previous fire is still running: skip this one and move on."""
    job = copy_json(rec.job)
    reason = f"overlap: still running the fire claimed by {held['owner']} at {held['claimed_at']}"
    if rec.schedule.recurring:
        # Past this fire even when it is claimed ahead of its time (now < fire_at):
        # otherwise the same fire would be skipped again and again until it is due.
        job["next_run_at"] = opt_iso(rec.schedule.next_after(max(now, fire_at)))
    else:
        # A one-shot's time came while a manual run of it is in progress: that run is its
        # run. Waiting would re-fire forever; completing is the honest end.
        job["next_run_at"] = None
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
    while a fresh claim is held. A manual run does not count toward ``repeat`` and does
    not complete a one-shot; the claim carries ``manual: true`` so ``finish`` knows.
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


def finish(
    rec: Optional[Record],
    owner: str,
    status: str,
    error: Optional[str],
    started_at: datetime,
    now: datetime,
) -> Change:
    """Record a run's end if ``owner`` still holds the claim (else the answer is None):
    the last_* fields, the claim cleared, a one-shot or a spent repeat completed."""
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
    if not held.get("manual") and (not rec.schedule.recurring or exhausted(job)):
        job["state"] = "completed"
        job["next_run_at"] = None
    job["updated_at"] = to_iso(now)
    return rec.with_job(job), copy_json(job)


def catch_up(rec: Record, now: datetime, policy: Policy) -> Tuple[Optional[Record], List[Claim]]:
    """Bring one job up to date (at daemon start, on each reconcile, on reconnect).

    A stale claim whose run never finished becomes INTERRUPTED (cleared, ``last_status``
    error, a one-shot or spent repeat completes); a fire too late for its grace becomes
    MISSED (a recurring job resumes at its next time after now, a one-shot completes);
    an active job with no ``next_run_at`` (a hand-written record) gets one. A fire still
    within grace is left alone: it is due and callers claim it. O(1).
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
        if not held.get("manual") and (not schedule.recurring or exhausted(job)):
            job["state"] = "completed"
            job["next_run_at"] = None
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
            job["next_run_at"] = opt_iso(schedule.next_after(now))
            job["updated_at"] = to_iso(now)
            current = base.with_job(job)
        return current, out
    if base.next_run > now:
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
    """The missed-run policy for a due fire: nothing when it may still run (within
    grace), else the MISSED claim and the skip-ahead. O(1): one ``latest_at_or_before``
    and one ``next_after``, never an enumeration of the missed times."""
    job, schedule = rec.job, rec.schedule
    grace = policy.grace(job)
    latest = fire_at
    if schedule.recurring:
        found = schedule.latest_at_or_before(now)
        if found is not None and found > fire_at:
            latest = found
    late = (now - latest).total_seconds()
    if late <= grace:
        return None, None
    job = copy_json(job)
    if schedule.recurring:
        resume_at = schedule.next_after(now)
        job["next_run_at"] = opt_iso(resume_at)
        reason = (
            f"missed: due at {to_iso(fire_at)}"
            + (f", latest missed {to_iso(latest)}" if latest != fire_at else "")
            + f", {seconds_text(late)} late (grace {seconds_text(grace)}); resumes at "
            + (to_iso(resume_at) if resume_at else "never")
        )
    else:
        job["next_run_at"] = None
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
    "SKIPPED",
    "WON",
    "Claim",
    "Policy",
]
