"""The ``run_finished`` observer hook and its dispatcher (``hermes_cron.observers``).

Every ledger row reaches every observer, off the scheduling thread; an observer
that raises is logged with its plugin's name and stops nothing; one that is slow
or hangs never delays a fire; overflow is counted; shutdown waits a bounded time.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
from helpers.observekit import Blocker, Raiser, Recorder, StatusRunner
from helpers.servicekit import advance_idle, wait_for, wait_idle, write_config

from hermes_cron import RunReport, hookimpl
from hermes_cron.clock import FakeClock
from hermes_cron.observers import Observers
from hermes_cron.runner import execute_claim
from hermes_cron.service import CronService, ServiceThread
from hermes_cron.status_file import read_status
from hermes_cron.timeutil import parse_iso


def ledger(service: CronService) -> List[Dict[str, Any]]:
    return list(reversed(service.ledger.read()))


def started(service: CronService) -> ServiceThread:
    handle = service.start_in_thread()
    wait_for(lambda: read_status(service.paths).get("heartbeat_at"))
    if isinstance(service.clock, FakeClock):
        wait_idle(service.clock)  # before the test moves the clock (see wait_idle)
    return handle


def test_every_kind_of_row_reaches_the_observer_as_written(home: Path, clock: FakeClock) -> None:
    write_config(home, {"cron": {"misfire_grace": 60, "claim_ttl": 300}})
    recorder = Recorder()
    service = CronService.from_home(home, clock=clock, plugins=[StatusRunner(), recorder])
    jobs = {s: service.add_job("every 1h", prompt=s) for s in ("ok", "error", "timeout", "raise")}
    for job in jobs.values():
        service.run_now(job["id"])
    # A fire due while the previous run still holds its claim is skipped.
    busy = service.add_job("every 1m", prompt="ok")
    clock.advance(60)
    held = service.store.claim(busy["id"], parse_iso(busy["next_run_at"]), "elsewhere:1:a")
    assert held.outcome == "won"
    clock.advance(60)
    due = parse_iso(service.store.get(busy["id"])["next_run_at"])
    skip = service.store.claim(busy["id"], due, "here:1:b")
    assert skip.outcome == "skipped"
    execute_claim(service.ctx, skip)
    # Hours later: the hourly jobs missed their fires (beyond the 60 s grace), and the
    # claim held "elsewhere" went stale: an interrupted run.
    clock.advance(3 * 3600 + 90)
    service.tick()
    service.close()

    written = ledger(service)
    seen = recorder.wait(len(written))
    assert [dict(r.row) for _job, r in seen] == written
    statuses = {row["status"] for row in written}
    assert {"ok", "error", "timeout", "skipped", "missed"} <= statuses
    assert any(str(row["error"]).startswith("interrupted") for row in written)
    for job, report in seen:
        assert isinstance(report, RunReport)
        assert job["id"] == report.row["job_id"] == report.job_id
        assert report.status == report.row["status"]
        if report.ran and job["prompt"] in ("ok", "error", "timeout"):
            assert report.output == f"output of {job['prompt']}"
        if not report.ran:
            assert report.output == ""
    by_prompt = {job["prompt"]: r for job, r in seen if r.ran}
    assert by_prompt["raise"].status == "error" and "RuntimeError" in by_prompt["raise"].output
    # Delivered on the observer thread, never on the thread that ran or recorded.
    assert set(recorder.threads) == {"hermes-cron-observers"}


def test_a_raising_observer_is_logged_by_name_and_stops_nothing(
    home: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    # Registered last, the raiser is called first: the recorder after it must still hear.
    service = CronService.from_home(
        home, clock=clock, plugins=[StatusRunner(), recorder, (Raiser(), "raiser")]
    )
    job = service.add_job("every 1h", prompt="ok")
    with caplog.at_level(logging.ERROR, logger="hermes_cron.observers"):
        result = service.run_now(job["id"])
        recorder.wait(1)
        assert service.close()
    assert result.status == "ok"
    assert [r["status"] for r in ledger(service)] == ["ok"]
    assert service.store.get(job["id"])["last_status"] == "ok"
    assert recorder.rows() == ledger(service)
    messages = [r.getMessage() for r in caplog.records]
    assert any("observer 'raiser'" in m and "raised RuntimeError" in m for m in messages), messages
    assert service.ctx.observers.counts()["failures"] == {"raiser": 1}


def test_what_an_observer_changes_changes_nothing_recorded_or_seen(
    home: Path, clock: FakeClock
) -> None:
    class Vandal:
        @hookimpl
        def run_finished(self, job: Dict[str, Any], result: Any) -> None:
            job["name"] = "vandalised"
            result.row["status"] = "vandalised"

    recorder = Recorder()
    service = CronService.from_home(
        home, clock=clock, plugins=[StatusRunner(), recorder, (Vandal(), "vandal")]
    )
    job = service.add_job("every 1h", prompt="ok", name="kept")
    service.run_now(job["id"])
    [(seen_job, report)] = recorder.wait(1)
    service.close()
    assert seen_job["name"] == "kept" and report.status == "ok"
    assert ledger(service)[0]["status"] == "ok"
    assert service.store.get(job["id"])["name"] == "kept"


def test_a_slow_observer_never_delays_the_next_fire(home: Path, clock: FakeClock) -> None:
    blocker = Blocker()
    service = CronService.from_home(home, clock=clock, plugins=[StatusRunner(), blocker])
    job = service.add_job("every 2s", prompt="ok")
    handle = started(service)
    try:
        for k in (1, 2, 3):
            advance_idle(clock, 2)
            # The run's row is written before its claim is released: wait for both, or
            # the next fire finds the run still holding it (an overlap skip).
            wait_for(
                lambda k=k: (
                    len(ledger(service)) == k and service.store.get(job["id"])["fire_claim"] is None
                ),
                what=f"{k} rows and the claim released",
            )
        # The observer is still stuck in the first report while three fires ran on time.
        assert blocker.first.wait(30)
        assert blocker.entered == 1
        assert service.ctx.observers.pending == 3
        rows = ledger(service)
        assert [r["status"] for r in rows] == ["ok"] * 3
        assert all(r["started_at"] == r["fire_at"] for r in rows)  # zero lateness
    finally:
        blocker.release.set()
        handle.stop()
    assert service.close()
    assert blocker.entered == 3
    assert service.store.get(job["id"])["last_status"] == "ok"


def _row(n: int) -> Dict[str, Any]:
    return {"job_id": f"job{n}", "fire_at": None, "status": "ok", "output": None, "error": None}


def test_overflow_is_counted_and_logged(
    home: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = Blocker()
    service = CronService.from_home(home, clock=clock, plugins=[blocker])
    observers = Observers(service.ctx, queue_limit=2)
    observers.submit({"id": "job0"}, _row(0))
    assert blocker.first.wait(30)  # the thread holds report 0; the queue is empty
    with caplog.at_level(logging.WARNING, logger="hermes_cron.observers"):
        for n in range(1, 6):
            observers.submit({"id": f"job{n}"}, _row(n))
    assert observers.dropped == 3
    warnings = [r.getMessage() for r in caplog.records if "not delivered" in r.getMessage()]
    assert len(warnings) == 1 and "job3" in warnings[0]  # logged once, not once per drop
    blocker.release.set()
    assert observers.close(30)
    assert blocker.entered == 3  # report 0 and the two that fitted in the queue
    assert observers.counts()["delivered"] == 3


def test_a_hung_observer_is_abandoned_and_the_others_carry_on(
    home: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    now = [0.0]
    blocker, recorder = Blocker(), Recorder()
    service = CronService.from_home(home, clock=clock, plugins=[recorder, (blocker, "stuck")])
    observers = Observers(service.ctx, hang_after=10, monotonic=lambda: now[0])
    observers.submit({"id": "job1"}, _row(1))
    assert blocker.first.wait(30)
    assert recorder.seen == []  # called after "stuck", which has not returned
    now[0] = 9.0
    observers.check()
    assert observers.hung == []
    with caplog.at_level(logging.ERROR, logger="hermes_cron.observers"):
        now[0] = 10.5
        observers.check()
    assert observers.hung == ["stuck"]
    assert any("observer 'stuck'" in r.getMessage() for r in caplog.records)
    recorder.wait(1)  # the rest of report 1, on a fresh thread
    observers.submit({"id": "job2"}, _row(2))
    recorder.wait(2)
    assert blocker.entered == 1  # skipped while its call is stuck
    blocker.release.set()
    wait_for(lambda: observers.hung == [], what="the stuck call to return")
    observers.submit({"id": "job3"}, _row(3))
    recorder.wait(3)
    assert observers.close(30)
    assert blocker.entered == 2  # called again once it came back
    assert [r.job_id for _j, r in recorder.seen] == ["job1", "job2", "job3"]
    assert observers.counts()["hangs"] == {"stuck": 1}


def test_close_waits_a_bounded_time_and_counts_what_is_left(
    home: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = Blocker()
    service = CronService.from_home(home, clock=clock, plugins=[blocker])
    observers = Observers(service.ctx)
    for n in range(3):
        observers.submit({"id": f"job{n}"}, _row(n))
    assert blocker.first.wait(30)
    begun = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="hermes_cron.observers"):
        assert observers.close(0.2) is False
    assert time.monotonic() - begun < 10
    assert observers.dropped == 2
    assert any("not delivered" in r.getMessage() for r in caplog.records)
    blocker.release.set()


def test_without_observers_nothing_is_queued_and_no_thread_starts(
    home: Path, clock: FakeClock
) -> None:
    service = CronService.from_home(home, clock=clock, plugins=[StatusRunner()])
    job = service.add_job("every 1h", prompt="ok")
    service.run_now(job["id"])
    observers = service.ctx.observers
    assert observers.pending == 0 and observers._thread is None
    assert observers.close(0)


def test_row_listeners_see_every_row_even_when_the_queue_is_full(
    home: Path, clock: FakeClock
) -> None:
    blocker = Blocker()
    service = CronService.from_home(home, clock=clock, plugins=[StatusRunner(), blocker])
    service.ctx.observers.queue_limit = 1
    heard: List[str] = []
    service.ctx.observers.add_row_listener(lambda job, report: heard.append(report.status))
    job = service.add_job("every 1h", prompt="ok")
    for _ in range(4):
        service.run_now(job["id"])
    assert heard == ["ok"] * 4 == [r["status"] for r in ledger(service)]
    assert service.ctx.observers.dropped >= 2
    blocker.release.set()
    service.close()


def test_claims_and_runs_in_progress_are_counted(home: Path, clock: FakeClock) -> None:
    release = threading.Event()

    class Slow:
        @hookimpl
        def run_job(self, job: Dict[str, Any]) -> Any:
            release.wait(60)
            return None  # the default executor runs the command

    service = CronService.from_home(home, clock=clock, plugins=[Slow()])
    job = service.add_job("every 1h", command=["true"])
    due = service.store.get(job["id"])["next_run_at"]
    clock.set(parse_iso(due))
    runner = threading.Thread(target=service.fire_due, args=(job["id"], due))
    runner.start()
    wait_for(lambda: service.ctx.observers.counts()["in_progress"] == 1)
    release.set()
    runner.join(60)
    assert service.fire_due(job["id"], due).claim == "lost"  # a duplicate fire
    counts = service.ctx.observers.counts()
    assert counts["in_progress"] == 0
    assert counts["claims"] == {"won": 1, "lost": 1}
