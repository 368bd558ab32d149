"""Runs due together start together: the built-in loop's workers hand each finished run
to a recorder (output file, ledger row, ``finish_run``, many runs per write) instead of
writing ``jobs.json`` before they can start the next due job.

Before, in a burst of 100 jobs due at once with 4 workers, the last runs started some
40 ms late: each worker waited for its previous run's durable write. Nothing about
at-most-once changes (claims are written before the runs), and nothing is lost: every
run is recorded, also when the loop stops right after.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
from helpers.servicekit import advance_idle, wait_for, write_config

from hermes_cron import hookimpl
from hermes_cron.clock import FakeClock
from hermes_cron.runner import RunOutcome
from hermes_cron.service import CronService
from hermes_cron.status_file import read_status
from hermes_cron.store import JobStore

JOBS = 8


class Starts:
    """Records when (real time) each run started."""

    def __init__(self) -> None:
        self.at: Dict[str, float] = {}
        self._lock = threading.Lock()

    @hookimpl
    def run_job(self, ctx: Any, job: Dict[str, Any]) -> RunOutcome:
        with self._lock:
            self.at[job["id"]] = time.monotonic()
        return RunOutcome(status="ok", output="done")


def test_a_slow_jobs_file_write_does_not_delay_the_next_runs(
    home: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(home, {"cron": {"max_workers": 2}})
    starts = Starts()
    service = CronService.from_home(home, clock=clock, plugins=[starts])
    ids = [service.add_job("every 10s", prompt="ok")["id"] for _ in range(JOBS)]
    # A disk whose jobs.json writes do not return until the test says so: no timing.
    held = {"on": False}
    writes = threading.Event()
    for name in ("finish_run", "finish_runs"):
        real = getattr(JobStore, name)

        def slowed(self: Any, *args: Any, _real: Any = real, **kwargs: Any) -> Any:
            if held["on"]:
                writes.wait(120)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(JobStore, name, slowed)
    handle = service.start_in_thread()
    try:
        wait_for(lambda: read_status(service.paths).get("heartbeat_at"))
        held["on"] = True
        advance_idle(clock, 10)
        # Two workers, eight runs, and no run's write has returned: recording in line,
        # each worker would wait for its first run's write before starting another.
        wait_for(lambda: len(starts.at) == JOBS, timeout=60)
        assert not writes.is_set()
    finally:
        writes.set()
        summary = handle.stop(60)
    # Everything was recorded before the loop said it stopped.
    assert summary["runs"] == JOBS
    rows = service.ledger.read()
    assert sorted(r["job_id"] for r in rows) == sorted(ids)
    assert all(r["status"] == "ok" and r["output"] for r in rows)
    for job_id in ids:
        record = service.store.get(job_id)
        assert record["fire_claim"] is None and record["last_status"] == "ok"


def test_runs_recorded_in_one_batch_each_get_their_own_record(home: Path, clock: FakeClock) -> None:
    from hermes_cron.runner import RunRecorder, execute_claim, new_owner_token

    starts = Starts()
    service = CronService.from_home(home, clock=clock, plugins=[starts])
    ids = [service.add_job("every 10s", prompt="ok")["id"] for _ in range(5)]
    clock.advance(10)
    claims = service.store.claim_many(service.store.due(clock.now()), new_owner_token())
    gate = threading.Event()
    recorder = RunRecorder(service.ctx, busy=lambda: not gate.is_set(), max_delay=30)
    results: List[Any] = [execute_claim(service.ctx, c, recorder=recorder) for c in claims]
    assert all(r.ran and r.status == "ok" and r.output_path is None for r in results)
    assert service.ledger.read() == []  # held back while "busy"
    assert all(service.store.get(j)["fire_claim"] for j in ids)
    gate.set()
    assert recorder.close(30)
    rows = {r["job_id"]: r for r in service.ledger.read()}
    assert sorted(rows) == sorted(ids)
    for job_id in ids:
        record = service.store.get(job_id)
        assert record["fire_claim"] is None and record["last_status"] == "ok"
        assert Path(rows[job_id]["output"]).read_text().startswith("# ok")
