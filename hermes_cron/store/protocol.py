"""The ``Store`` protocol: everything the runner, the providers, the webhook and the
CLI may ask of a store, whatever engine is behind it (``file.JobStore``,
``postgres.PostgresStore``)."""

from __future__ import annotations

from datetime import datetime
from typing import (
    Any,
    Callable,
    Dict,
    Hashable,
    List,
    Mapping,
    Optional,
    Protocol,
    Sequence,
    Tuple,
)

from ..clock import Clock
from ..schedules import Schedule
from .records import Census, Job, Snapshot
from .rules import Claim


class RunLog(Protocol):
    """The run ledger: one row per run, skip, miss or interruption."""

    def append(self, row: Dict[str, Any]) -> None:
        """Append one row (``StoreError`` when it cannot be written)."""

    def append_interrupted(self, row: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        """Append the ``error`` row of a run whose claim went stale, unless the run's
        own final row (``hermes_cron.ledger.is_final_row_of``) is already there; returns
        that row when it was (nothing written), None when the error row was written.
        One row per fire, however the run's process ended."""

    def read(
        self, job_id: Optional[str] = None, limit: Optional[int] = None
    ) -> List[Dict[str, Any]]:
        """Rows newest first, optionally for one job."""


class RunOutputs(Protocol):
    """Where run outputs are kept."""

    def write(self, job_id: str, started: datetime, text: str) -> str:
        """Keep a run's output; returns the reference the ledger row's ``output`` holds."""

    def read(self, ref: str) -> str:
        """The text kept under ``ref``."""


class Store(Protocol):
    """Jobs, claims, the run ledger and run outputs (SPEC §4, §10).

    Mutations follow the rules of ``hermes_cron.store.rules`` on every backend.
    Errors: ``JobNotFoundError``, ``UsageError`` (bad input, nothing written),
    ``StoreCorruptError``, ``StoreError`` / ``StoreUnavailableError`` (cannot reach or
    write the store), ``LockTimeoutError``.
    """

    clock: Clock
    default_tz: str

    @property
    def runs(self) -> RunLog:
        """The run ledger."""

    @property
    def outputs(self) -> RunOutputs:
        """The run outputs."""

    @property
    def claim_ttl(self) -> float: ...

    @property
    def misfire_grace(self) -> float: ...

    def describe(self) -> str:
        """What ``status`` prints as ``store``: ``json:<path>`` or the URL without password."""

    # reads
    def snapshot(self) -> Snapshot:
        """Every valid job and every quarantined record (shared objects: read-only)."""

    def census(self) -> Census:
        """How many valid jobs are in each state, and the quarantined records (cheaper
        than ``snapshot`` where the backend can count without reading every job)."""

    def list_jobs(self, *, include_completed: bool = False) -> List[Job]: ...

    def get(self, job_id: str) -> Job: ...

    def get_schedule(self, job_id: str) -> Schedule: ...

    def schedules(self) -> List[Tuple[str, Schedule]]: ...

    def change_token(self) -> Hashable:
        """Changes whenever any process changed the store (cheap to call)."""

    def due(self, now: datetime) -> List[Tuple[str, datetime]]: ...

    def next_due_at(self) -> Optional[datetime]: ...

    def upcoming(self, limit: int) -> List[Tuple[str, datetime]]: ...

    # mutations
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
    ) -> Job: ...

    def update(self, job_id: str, **fields: Any) -> Job: ...

    def remove(self, job_id: str) -> Job: ...

    def pause(self, job_id: str) -> Job: ...

    def resume(self, job_id: str) -> Job: ...

    def claim(self, job_id: str, fire_at: datetime, owner: str) -> Claim: ...

    def claim_many(self, fires: Sequence[Tuple[str, datetime]], owner: str) -> List[Claim]: ...

    def claim_manual(self, job_id: str, owner: str) -> Claim: ...

    def renew_claim(self, job_id: str, owner: str) -> bool: ...

    def finish_run(
        self,
        job_id: str,
        owner: str,
        *,
        status: str,
        error: Optional[str],
        started_at: datetime,
    ) -> Optional[Job]: ...

    def finish_runs(
        self, runs: Sequence[Tuple[str, str, str, Optional[str], datetime]]
    ) -> List[Optional[Job]]: ...

    def settle_run(self, job_id: str, row: Mapping[str, Any]) -> Optional[Job]: ...

    def catch_up(self, now: Optional[datetime] = None) -> List[Claim]: ...

    # moving between stores
    def export_records(self) -> List[Any]:
        """Every record as stored (valid jobs and quarantined records alike)."""

    def import_records(
        self, records: Sequence[Job], *, replace: bool
    ) -> Tuple[List[str], List[str]]:
        """Add valid job records keeping their ids and next run times (claims dropped);
        returns ``(imported ids, ids left alone because they exist)``."""

    # processes using the store
    def add_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (from any thread, quickly) when another process may have
        changed the store, so a sleeping loop wakes at once. A store that cannot tell
        (the file store) never calls it: its readers notice changes by polling."""

    def heartbeat(self, info: Dict[str, Any]) -> None:
        """Record that this scheduler process is alive: ``{host, pid, provider,
        started_at, heartbeat_at, stopped_at}``. Never raises for a store fault."""

    def schedulers(self) -> List[Dict[str, Any]]:
        """Every daemon or ``serve`` process that used the store recently, as the
        ``heartbeat`` infos they recorded (``status`` adds ``live``)."""

    def close(self) -> None:
        """Release connections and threads (a no-op for the file store)."""
