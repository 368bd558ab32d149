"""The built-in loop, driven by a FakeClock: on time, jumps, failures, stop, heartbeat."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any, Dict, List

import pytest
from helpers.servicekit import (
    PromptRunner,
    advance_idle,
    wait_for,
    wait_idle,
    write_config,
)

from hermes_cron.builtin_provider import BuiltinProvider, run_due_once
from hermes_cron.clock import FakeClock
from hermes_cron.service import CronService, ServiceThread
from hermes_cron.status_file import read_status
from hermes_cron.timeutil import parse_iso, to_iso


def make(home: Path, clock: FakeClock, runner: PromptRunner, **cron: Any) -> CronService:
    if cron:
        write_config(home, {"cron": cron})
    service = CronService.from_home(home, clock=clock, plugins=[runner])
    assert service.config_error is None
    return service


def rows(service: CronService, job_id: str) -> List[Dict[str, Any]]:
    return list(reversed(service.ledger.read(job_id)))


def settled(service: CronService, job_id: str, count: int) -> bool:
    """``count`` ledger rows for the job and no run in progress."""
    return len(rows(service, job_id)) == count and not service.store.get(job_id)["fire_claim"]


def started(service: CronService) -> ServiceThread:
    handle = service.start_in_thread()
    wait_for(lambda: read_status(service.paths).get("heartbeat_at"))
    if isinstance(service.clock, FakeClock):
        wait_idle(service.clock)  # before the test moves the clock (see wait_idle)
    return handle


def test_sub_minute_jobs_fire_exactly_on_time(home: Path, clock: FakeClock) -> None:
    runner = PromptRunner()
    service = make(home, clock, runner)
    job = service.add_job("every 2s", prompt="ok")
    t0 = clock.now()
    with started(service):
        for k in (1, 2, 3):
            advance_idle(clock, 2)
            wait_for(lambda k=k: settled(service, job["id"], k))
    expected = [to_iso(t0 + timedelta(seconds=2 * k)) for k in (1, 2, 3)]
    assert runner.fires(job["id"]) == expected
    # Each run started at its due time on the (frozen) fake clock: zero lateness.
    assert [to_iso(c["at"]) for c in runner.calls] == expected
    assert [r["status"] for r in rows(service, job["id"])] == ["ok"] * 3
    assert {r["provider"] for r in rows(service, job["id"])} == {"builtin"}


def test_clock_jump_forward_is_one_catch_up_not_a_storm(home: Path, clock: FakeClock) -> None:
    runner = PromptRunner()
    service = make(home, clock, runner)
    job = service.add_job("every 10s", prompt="ok")
    t0 = clock.now()
    at = lambda s: to_iso(t0 + timedelta(seconds=s))  # noqa: E731
    with started(service):
        advance_idle(clock, 10)
        wait_for(lambda: settled(service, job["id"], 1))
        advance_idle(clock, 3000)  # 300 missed fire times, within the 1 h grace
        wait_for(lambda: settled(service, job["id"], 2))
        wait_idle(clock)
        clock.set(t0 + timedelta(seconds=3020))
        wait_for(lambda: settled(service, job["id"], 3))
    got = rows(service, job["id"])
    assert [r["status"] for r in got] == ["ok", "ok", "ok"]
    assert got[1]["fire_at"] == at(3010) and got[1]["coalesced_from"] == at(20)
    assert got[2]["fire_at"] == at(3020)
    assert runner.fires(job["id"]) == [at(10), at(3010), at(3020)]


def test_a_jump_beyond_the_grace_is_recorded_as_missed(home: Path, clock: FakeClock) -> None:
    runner = PromptRunner()
    service = make(home, clock, runner, misfire_grace=60)
    job = service.add_job("every 1h", prompt="ok")
    t0 = clock.now()
    with started(service):
        advance_idle(clock, 3600)
        wait_for(lambda: settled(service, job["id"], 1))
        advance_idle(clock, 9000)  # latest missed fire (t0+3h) is 30 min old: beyond 60 s
        wait_for(lambda: settled(service, job["id"], 2))
        wait_idle(clock)
        clock.set(t0 + timedelta(hours=4))
        wait_for(lambda: settled(service, job["id"], 3))
    got = rows(service, job["id"])
    assert [r["status"] for r in got] == ["ok", "missed", "ok"]
    assert "missed" in got[1]["error"]
    assert runner.fires(job["id"]) == [
        to_iso(t0 + timedelta(hours=1)),
        to_iso(t0 + timedelta(hours=4)),
    ]


def test_clock_going_backwards_fires_nothing_twice(home: Path, clock: FakeClock) -> None:
    runner = PromptRunner()
    service = make(home, clock, runner)
    job = service.add_job("every 5s", prompt="ok")
    t0 = clock.now()
    with started(service):
        advance_idle(clock, 5)
        wait_for(lambda: settled(service, job["id"], 1))
        wait_idle(clock)
        clock.set(t0 - timedelta(seconds=60))
        wait_idle(clock)
        clock.set(t0 + timedelta(seconds=5))  # the time of the run already made
        advance_idle(clock, 5)
        wait_for(lambda: settled(service, job["id"], 2))
    fires = [r["fire_at"] for r in rows(service, job["id"])]
    assert fires == [to_iso(t0 + timedelta(seconds=5)), to_iso(t0 + timedelta(seconds=10))]


def test_a_job_that_raises_or_hangs_does_not_stop_the_others(home: Path, clock: FakeClock) -> None:
    runner = PromptRunner()
    service = make(home, clock, runner, job_timeout=1)
    hang = service.add_job("every 2s", prompt="hang")
    boom = service.add_job("every 2s", prompt="boom")
    ok = service.add_job("every 2s", prompt="ok")
    handle = started(service)
    try:
        advance_idle(clock, 2)
        wait_for(lambda: runner.count(hang["id"]) == 1)
        wait_for(lambda: settled(service, ok["id"], 1) and settled(service, boom["id"], 1))
        advance_idle(clock, 2)
        wait_for(lambda: settled(service, ok["id"], 2) and settled(service, boom["id"], 2))
        wait_for(lambda: len(rows(service, hang["id"])) == 1)
    finally:
        summary = handle.stop(30)
        runner.release.set()
    assert [r["status"] for r in rows(service, boom["id"])] == ["error", "error"]
    assert "RuntimeError: boom" in rows(service, boom["id"])[0]["error"]
    assert [r["status"] for r in rows(service, ok["id"])] == ["ok", "ok"]
    skipped = rows(service, hang["id"])
    assert skipped[0]["status"] == "skipped" and "overlap" in skipped[0]["error"]
    assert runner.count(hang["id"]) == 1  # never run twice at once
    # The stop waited (job_timeout = 1 s), then left the hung job behind.
    assert summary["stopped"] is True and summary["still_running"] == 1


def test_a_broken_store_is_recorded_and_the_loop_recovers(home: Path, clock: FakeClock) -> None:
    runner = PromptRunner()
    service = make(home, clock, runner)
    job = service.add_job("every 2s", prompt="ok")
    good = service.store.path.read_bytes()
    with started(service):
        service.store.path.write_bytes(b"{not json")
        advance_idle(clock, 2)
        status = wait_for(
            lambda: read_status(service.paths).get("last_error") and read_status(service.paths)
        )
        assert "jobs.json" in status["last_error"] and "not valid JSON" in status["last_error"]
        assert status["last_error_source"] == "loop"
        service.store.path.write_bytes(good)
        advance_idle(clock, 2)
        wait_for(lambda: settled(service, job["id"], 1))
    # One coalesced run for the two fire times that passed while the file was broken.
    assert rows(service, job["id"])[0]["fire_at"] == to_iso(
        parse_iso(service.store.get(job["id"])["next_run_at"]) - timedelta(seconds=2)
    )


def test_on_jobs_changed_wakes_the_loop_at_once(home: Path, clock: FakeClock) -> None:
    runner = PromptRunner()
    service = make(home, clock, runner)
    with started(service):
        # The clock never moves: only the wake-up can make the loop see this job.
        job = service.add_job(to_iso(clock.now()), prompt="ok")
        wait_for(lambda: settled(service, job["id"], 1))
    assert service.store.get(job["id"])["state"] == "completed"


def test_changes_by_another_process_are_seen_without_a_wake(home: Path, clock: FakeClock) -> None:
    runner = PromptRunner()
    service = make(home, clock, runner)
    other = CronService.from_home(home, clock=clock)  # another "process": its own store
    with started(service):
        job = other.add_job("every 3s", prompt="ok")
        advance_idle(clock, 1)  # within the 1 s poll cap the loop re-reads jobs.json
        advance_idle(clock, 2)
        wait_for(lambda: settled(service, job["id"], 1))
    assert runner.fires(job["id"]) == [job["next_run_at"]]


def test_heartbeat_and_clean_stop(home: Path, clock: FakeClock) -> None:
    service = make(home, clock, PromptRunner())
    handle = started(service)
    status = read_status(service.paths)
    assert status["provider"] == "builtin" and status["stopped_at"] is None
    assert status["heartbeat_at"] == to_iso(clock.now())
    alive = service.status()["running_process"]
    assert alive["alive"] is True and alive["heartbeat_age_s"] == 0
    summary = handle.stop(20)
    assert not handle.running
    assert summary == {
        "provider": "builtin",
        "stopped": True,
        "runs": 0,
        "errors": 0,
        "still_running": 0,
        "abandoned": [],
    }
    assert read_status(service.paths)["stopped_at"] == to_iso(clock.now())
    assert service.status()["running_process"]["alive"] is False
    assert service.status()["heartbeat_at"] == status["heartbeat_at"]


def test_stop_event_ends_the_loop_promptly(home: Path, clock: FakeClock) -> None:
    service = make(home, clock, PromptRunner())
    stop = threading.Event()
    done = threading.Event()
    thread = threading.Thread(target=lambda: (service.start(stop), done.set()), daemon=True)
    thread.start()
    wait_for(lambda: read_status(service.paths).get("heartbeat_at"))
    stop.set()  # the fake clock never moves: only the stop watcher can end the wait
    assert done.wait(20)


def test_start_catches_up_and_records_misses(home: Path, clock: FakeClock) -> None:
    runner = PromptRunner()
    write_config(home, {"cron": {"misfire_grace": 600}})
    service = make(home, clock, runner)
    job = service.add_job("every 1h", prompt="ok")
    clock.advance(5 * 3600 + 1800)  # down for 5.5 hours: the latest fire is 30 min old
    with started(service):
        wait_for(lambda: settled(service, job["id"], 1))
    assert rows(service, job["id"])[0]["status"] == "missed"
    assert runner.calls == []


def test_builtin_hooks_answer_as_defaults(home: Path, clock: FakeClock) -> None:
    provider = BuiltinProvider()
    assert provider.is_available({}) is True
    service = make(home, clock, PromptRunner())
    assert provider.on_jobs_changed(service.ctx, ["x"]) is True
    summary = provider.reconcile(service.ctx)
    assert summary == {"provider": "builtin", "missed": [], "interrupted": [], "next_due_at": None}


def test_run_due_once_runs_what_is_due_and_waits(home: Path, clock: FakeClock) -> None:
    runner = PromptRunner()
    service = make(home, clock, runner)
    a = service.add_job("every 2s", prompt="ok")
    b = service.add_job("every 2s", prompt="boom")
    c = service.add_job("every 1h", prompt="ok")
    clock.advance(2)
    summary = run_due_once(service.ctx)
    by_id = {r["job_id"]: r for r in summary["results"]}
    assert set(by_id) == {a["id"], b["id"]}
    assert by_id[a["id"]]["status"] == "ok" and by_id[b["id"]]["status"] == "error"
    assert not rows(service, c["id"])
    assert run_due_once(service.ctx)["results"] == []  # nothing due twice


@pytest.mark.parametrize("workers", [1])
def test_max_workers_bounds_concurrency(home: Path, clock: FakeClock, workers: int) -> None:
    runner = PromptRunner()
    service = make(home, clock, runner, max_workers=workers, job_timeout=1)
    hang = service.add_job("every 2s", prompt="hang")
    ok = service.add_job("every 2s", prompt="ok")
    handle = started(service)
    try:
        advance_idle(clock, 2)
        first = wait_for(lambda: runner.calls and runner.calls[0]["job_id"])
        if first == hang["id"]:
            # The single worker is busy: the other claim waits in the queue, not run.
            assert runner.count(ok["id"]) == 0
            runner.release.set()
        wait_for(lambda: runner.count(ok["id"]) == 1)
    finally:
        runner.release.set()
        handle.stop(30)


def test_replicas_draw_their_claim_lead_at_random_never_below_the_measured_one(
    home: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One loop that always measured the slowest claim writes must not claim first
    # every time: with other live schedulers on the store, each claim's lead is drawn
    # between the loop's measured lead and PRECLAIM.
    from hermes_cron.builtin_provider import PRECLAIM, BuiltinLoop
    from hermes_cron.status_file import scheduler_info

    service = make(home, clock, PromptRunner())
    loop = BuiltinLoop(service.ctx, threading.Event(), threading.Event())
    mine = scheduler_info("builtin", clock.now(), None)
    others = [
        dict(mine),  # this loop itself
        dict(mine, host="other", pid=1),  # live
        dict(mine, host="gone", pid=2, heartbeat_at=to_iso(clock.now() - timedelta(hours=1))),
        dict(mine, host="stopped", pid=3, stopped_at=to_iso(clock.now())),
    ]
    monkeypatch.setattr(service.store, "schedulers", lambda: others)
    loop._claim_times.append(0.04)  # measured lead: 3 x 40 ms
    try:
        assert loop._lead() == pytest.approx(0.12)  # alone: the measured lead
        loop.heartbeat(force=True)
        assert loop._peers == 1
        leads = []
        for _ in range(20):
            loop.iteration()  # draws the lead of the next claim
            leads.append(loop._lead())
        assert all(0.12 <= lead <= PRECLAIM for lead in leads)
        assert len(set(leads)) > 1
    finally:
        service.close()
