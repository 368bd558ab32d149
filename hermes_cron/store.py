"""The job store: ``$HERMES_HOME/cron/jobs.json``. (STUB: interface only.)

File format ``{"version": 1, "jobs": [record, ...]}``; a record is described in
SPEC §4 (``id``, ``name``, ``schedule`` (``Schedule.to_record()``), ``command``
(argv list) or ``prompt``, ``enabled``, ``state`` (scheduled/paused/completed),
``repeat`` ``{"times", "completed"}``, ``next_run_at``, ``last_run_at``,
``last_status``, ``last_error``, ``fire_claim`` (null or ``{fire_at, owner,
claimed_at}``), ``misfire_grace`` (null: config default), ``timeout`` (null:
config default), ``created_at``, ``updated_at``). Times are ISO 8601 with offset.

Every write: under the cross-process lock (bounded wait, ``LockTimeoutError``),
re-read, change only the intended fields, write a temp file, fsync, rename.
A corrupt file raises ``StoreCorruptError`` naming the file and the fault, for
reads and writes alike, and is never overwritten. A record that is valid JSON
but has bad fields is quarantined: listed by ``snapshot().quarantined``, never
returned as a job, never run, and written back byte-for-byte as it was.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Dict, List, Optional, Sequence, Tuple

import attrs

from .clock import Clock
from .paths import HomePaths
from .schedules import Schedule

Job = Dict[str, Any]

# Claim outcomes.
WON = "won"  # this owner holds the claim and must run the job, then finish_run
SKIPPED = "skipped"  # overlap: a fresh claim by a still-running fire; next_run_at advanced
MISSED = "missed"  # too late (beyond misfire_grace); next_run_at advanced / one-shot completed
LOST = "lost"  # not due for this fire_at (a duplicate, or another process won)
GONE = "gone"  # no such job
INACTIVE = "inactive"  # paused, disabled or completed


@attrs.frozen
class Claim:
    """The answer of a claim attempt."""

    job_id: str
    fire_at: datetime  # the due time the fire is for (after coalescing missed times)
    outcome: str
    owner: str
    job: Optional[Job] = None  # the record as written by the claim (None when GONE)
    reason: str = ""  # why, for LOST/GONE/INACTIVE/MISSED/SKIPPED; for a coalesced catch-up,
    # which missed times were folded into this one

    @property
    def won(self) -> bool:
        return self.outcome == WON


@attrs.frozen
class Quarantined:
    """A record kept aside because its fields are invalid."""

    index: int
    job_id: Optional[str]
    error: str
    record: Any


@attrs.frozen
class Snapshot:
    jobs: List[Job]
    quarantined: List[Quarantined]


class JobStore:
    """All access to ``jobs.json``. Safe across threads and processes."""

    def __init__(
        self,
        paths: HomePaths,
        *,
        clock: Clock,
        default_tz: str = "UTC",
        claim_ttl: float = 300.0,
        misfire_grace: float = 3600.0,
        lock_timeout: float = 10.0,
    ) -> None:
        raise NotImplementedError

    # -- reads (cached on the file's stat; no lock needed: writes are atomic renames)
    def snapshot(self) -> Snapshot: ...
    def list_jobs(self, *, include_completed: bool = False) -> List[Job]: ...
    def get(self, job_id: str) -> Job:
        """The job record; ``JobNotFoundError`` if absent."""
    def change_token(self) -> Tuple[int, int, int]:
        """A cheap stat-based token that changes whenever another process writes the file."""
    def due(self, now: datetime) -> List[Tuple[str, datetime]]:
        """``(job_id, next_run_at)`` of active jobs whose ``next_run_at <= now``, earliest first."""
    def next_due_at(self) -> Optional[datetime]:
        """The earliest ``next_run_at`` among active jobs."""

    # -- mutations
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
    ) -> Job:
        """Create a job (exactly one of command/prompt); returns the stored record."""
    def update(self, job_id: str, **fields: Any) -> Job: ...
    def remove(self, job_id: str) -> Job: ...
    def pause(self, job_id: str) -> Job: ...
    def resume(self, job_id: str) -> Job:
        """Back to ``scheduled`` with ``next_run_at`` recomputed from now."""

    # -- firing
    def claim(self, job_id: str, fire_at: datetime, owner: str) -> Claim:
        """Compare-and-set one fire (SPEC §4). Applies the missed-run policy and the
        overlap rule; advances ``next_run_at`` (recurring) or clears it (one-shot,
        last repeat) and counts the repeat, all before returning WON."""
    def claim_many(self, fires: Sequence[Tuple[str, datetime]], owner: str) -> List[Claim]:
        """``claim`` for many fires in one locked write (the built-in loop's batch)."""
    def claim_manual(self, job_id: str, owner: str) -> Claim:
        """Claim for ``hermes-cron run ID``: fire_at = now; the schedule is not advanced."""
    def renew_claim(self, job_id: str, owner: str) -> bool:
        """Refresh ``claimed_at`` if ``owner`` still holds the claim."""
    def finish_run(
        self,
        job_id: str,
        owner: str,
        *,
        status: str,
        error: Optional[str],
        started_at: datetime,
    ) -> Optional[Job]:
        """Record a run's end if ``owner`` still holds the claim (else None): last_* fields,
        clear the claim, complete a one-shot or an exhausted repeat."""
    def catch_up(self, now: datetime) -> List[Claim]:
        """Apply the missed-run policy to every overdue job (at daemon start): returns
        the fires to run (WON claims are NOT taken here; callers claim) as MISSED claims
        for records that were skipped."""
