"""The one run body every provider uses: claim, run through ``run_job``, record. (STUB)"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import attrs

if TYPE_CHECKING:
    from .context import CronContext
    from .store import Claim

RUN_STATUSES = ("ok", "error", "timeout", "skipped", "missed")


@attrs.frozen
class RunOutcome:
    """What ``run_job`` returns: how the execution went."""

    status: str  # ok | error | timeout
    output: str = ""
    error: Optional[str] = None
    exit_code: Optional[int] = None


@attrs.frozen
class RunResult:
    """What ``run_one_job`` / ``fire_due`` return."""

    job_id: str
    fire_at: str  # ISO 8601
    claim: str  # a claim outcome from hermes_cron.store (won, skipped, missed, lost, gone, inactive)
    status: Optional[str] = None  # run status when it ran (ok/error/timeout), or skipped/missed
    output_path: Optional[str] = None
    error: Optional[str] = None

    @property
    def ran(self) -> bool:
        return self.claim == "won"


def run_one_job(
    ctx: "CronContext", job_id: str, fire_at: str, *, manual: bool = False
) -> RunResult:
    """Claim ``job_id`` for ``fire_at`` and, if won, execute it (``execute_claim``).

    ``manual=True`` is ``hermes-cron run ID``: claim_manual, the schedule is not advanced.
    """
    raise NotImplementedError


def execute_claim(ctx: "CronContext", claim: "Claim") -> RunResult:
    """Act on a claim: WON runs ``ctx.hook.run_job`` (renewing the claim while it runs),
    writes ``cron/output/<job_id>/<timestamp>.md``, appends the ledger row and calls
    ``store.finish_run``; SKIPPED and MISSED append their ledger row; LOST/GONE/INACTIVE
    do nothing. Never raises for a failing job: errors become the run's status."""
    raise NotImplementedError
