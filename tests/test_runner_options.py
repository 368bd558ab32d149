"""The run body with the job options: cwd, env and the attempt in a command's
environment, retries as ledger rows of their own, and ``overlap: replace`` stopping a
run (a real command's process group, or a runner that honours ``ctx.cancel``), in this
process and from another store instance (another process)."""

from __future__ import annotations

import sys
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any, Dict, List

import pytest
from helpers.storekit import fire_time, make_ctx, pid_gone, sched, wait_until

from hermes_cron import hookimpl
from hermes_cron.clock import FakeClock
from hermes_cron.paths import HomePaths
from hermes_cron.runner import RunOutcome, run_one_job
from hermes_cron.timeutil import to_iso


def test_a_command_runs_in_its_cwd_with_its_env_and_attempt(
    paths: HomePaths, clock: FakeClock, tmp_path: Path
) -> None:
    ctx = make_ctx(paths, clock)
    script = (
        "import os; print(os.getcwd(), os.environ['GREETING'], os.environ['HERMES_CRON_ATTEMPT'])"
    )
    job = ctx.store.add(
        sched("every 1h", clock),
        command=[sys.executable, "-c", script],
        cwd=str(tmp_path),
        env={"GREETING": "hello", "HERMES_CRON_JOB_ID": "cannot-hide-the-real-one"},
    )
    due = fire_time(ctx.store, job["id"])
    clock.set(due)
    result = run_one_job(ctx, job["id"], to_iso(due))
    assert result.status == "ok", result
    output = Path(result.output_path or "").read_text()
    assert f"{tmp_path} hello 1" in output


def test_a_missing_cwd_is_a_clear_error(paths: HomePaths, clock: FakeClock, tmp_path: Path) -> None:
    ctx = make_ctx(paths, clock)
    gone = tmp_path / "gone"
    job = ctx.store.add(sched("every 1h", clock), command=["true"], cwd=str(gone))
    result = run_one_job(ctx, job["id"], None, manual=True)
    assert result.status == "error" and f"working directory '{gone}' does not exist" in (
        result.error or ""
    )


def test_each_attempt_is_its_own_ledger_row_of_the_same_fire(
    paths: HomePaths, clock: FakeClock, tmp_path: Path
) -> None:
    ctx = make_ctx(paths, clock)
    log = tmp_path / "attempts"
    # Fails twice, then succeeds; says which attempt it is.
    script = (
        "import os, sys; n = os.environ['HERMES_CRON_ATTEMPT']; "
        f"open({str(log)!r}, 'a').write(n + ' ' + os.environ['HERMES_CRON_FIRE_AT'] + '\\n'); "
        "sys.exit(0 if n == '3' else 1)"
    )
    job = ctx.store.add(
        sched("every 1h", clock), command=[sys.executable, "-c", script], retries=3, retry_delay=10
    )
    due = fire_time(ctx.store, job["id"])
    clock.set(due)
    assert run_one_job(ctx, job["id"], to_iso(due)).status == "error"
    for attempt, delay in ((2, 10), (3, 20)):
        retry_at = fire_time(ctx.store, job["id"])
        assert retry_at == clock.now() + timedelta(seconds=delay)
        clock.set(retry_at)
        result = run_one_job(ctx, job["id"], to_iso(retry_at))
        assert result.attempt == attempt and result.fire_at == to_iso(due)
    assert result.status == "ok"
    rows = list(reversed(ctx.ledger.read(job_id=job["id"])))
    assert [(r["attempt"], r["status"], r["fire_at"]) for r in rows] == [
        (1, "error", to_iso(due)),
        (2, "error", to_iso(due)),
        (3, "ok", to_iso(due)),
    ]
    assert "due_at" not in rows[0] and rows[2]["due_at"] == to_iso(clock.now())
    assert log.read_text().split() == ["1", to_iso(due), "2", to_iso(due), "3", to_iso(due)]
    record = ctx.store.get(job["id"])
    assert record["repeat"]["completed"] == 1 and record["last_status"] == "ok"
    assert fire_time(ctx.store, job["id"]) == due + timedelta(hours=1)


def _pid_from(path: Path) -> int:
    return int(wait_until(lambda: path.exists() and path.read_text().strip(), what=str(path)))


def test_replace_kills_the_running_command_and_records_it_cancelled(
    paths: HomePaths, clock: FakeClock, tmp_path: Path
) -> None:
    ctx = make_ctx(paths, clock)
    pids = tmp_path / "pids"
    pids.mkdir()
    # The first run starts a child in its process group and sleeps; later runs just end.
    script = (
        "import os, subprocess, sys, time\n"
        f"if not os.path.exists({str(pids / 'first')!r}):\n"
        "    child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"    open({str(pids / 'first')!r}, 'w').write(str(child.pid))\n"
        "    time.sleep(60)\n"
    )
    job = ctx.store.add(
        sched("every 1m", clock), command=[sys.executable, "-c", script], overlap="replace"
    )
    first = fire_time(ctx.store, job["id"])
    clock.set(first)
    results: List[Any] = []
    runner = threading.Thread(
        target=lambda: results.append(run_one_job(ctx, job["id"], to_iso(first)))
    )
    runner.start()
    child = _pid_from(pids / "first")
    second = first + timedelta(minutes=1)
    clock.set(second)
    queued = run_one_job(ctx, job["id"], to_iso(second))
    assert queued.claim == "queued" and not queued.ran
    runner.join(30)
    assert not runner.is_alive(), "the replaced run did not stop"
    [cancelled] = results
    assert cancelled.status == "cancelled"
    assert f"replaced by the fire due at {to_iso(second)}" in (cancelled.error or "")
    wait_until(lambda: pid_gone(child), what="the run's whole process group to be killed")
    record = ctx.store.get(job["id"])
    assert record["last_status"] == "cancelled" and fire_time(ctx.store, job["id"]) == second
    replacement = run_one_job(ctx, job["id"], to_iso(second))
    assert replacement.ran and replacement.status == "ok"
    rows = [(r["fire_at"], r["status"]) for r in reversed(ctx.ledger.read(job_id=job["id"]))]
    assert rows == [(to_iso(first), "cancelled"), (to_iso(second), "ok")]
    assert fire_time(ctx.store, job["id"]) == first + timedelta(minutes=2)


class Honours:
    """A prompt runner that waits for its cancel signal (or a release)."""

    def __init__(self, honour: bool = True) -> None:
        self.honour = honour
        self.started = threading.Event()
        self.release = threading.Event()
        self.cancel_seen: List[bool] = []

    @hookimpl
    def run_job(self, ctx: Any, job: Dict[str, Any]) -> RunOutcome:
        if (job["fire_claim"].get("attempt") or 1) > 1 or self.started.is_set():
            return RunOutcome(status="ok", output="quick")
        self.started.set()
        if self.honour:
            self.cancel_seen.append(ctx.cancel.wait(30))
            return RunOutcome(status="cancelled", output="stopped early")
        self.release.wait(30)
        return RunOutcome(status="ok", output="finished anyway")


def test_a_replaced_prompt_run_in_another_process_gets_its_cancel_signal(
    paths: HomePaths, clock: FakeClock, store_kind: str, request: pytest.FixtureRequest
) -> None:
    """On every store: the stop request is seen by the owner's store instance (the
    file's change token, or PostgreSQL's notifications), not handed over in memory."""
    url = request.getfixturevalue("pg_url") if store_kind == "postgresql" else None
    runner = Honours()
    owner_ctx = make_ctx(paths, clock, runner, url=url)
    other_ctx = make_ctx(paths, clock, runner, url=url)  # as another process sees it
    assert owner_ctx.store is not other_ctx.store
    job = owner_ctx.store.add(sched("every 1m", clock), prompt="think", overlap="replace")
    first = fire_time(owner_ctx.store, job["id"])
    clock.set(first)
    results: List[Any] = []
    thread = threading.Thread(
        target=lambda: results.append(run_one_job(owner_ctx, job["id"], to_iso(first)))
    )
    thread.start()
    assert runner.started.wait(30)
    second = first + timedelta(minutes=1)
    clock.set(second)
    assert run_one_job(other_ctx, job["id"], to_iso(second)).claim == "queued"
    thread.join(30)
    assert runner.cancel_seen == [True]
    assert results[0].status == "cancelled"
    assert other_ctx.store.get(job["id"])["last_status"] == "cancelled"
    assert run_one_job(other_ctx, job["id"], to_iso(second)).status == "ok"
    for ctx in (owner_ctx, other_ctx):
        ctx.store.close()


def test_a_runner_that_ignores_cancel_makes_replace_wait_like_queue(
    paths: HomePaths, clock: FakeClock
) -> None:
    runner = Honours(honour=False)
    ctx = make_ctx(paths, clock, runner)
    job = ctx.store.add(sched("every 1m", clock), prompt="think", overlap="replace")
    first = fire_time(ctx.store, job["id"])
    clock.set(first)
    results: List[Any] = []
    thread = threading.Thread(
        target=lambda: results.append(run_one_job(ctx, job["id"], to_iso(first)))
    )
    thread.start()
    assert runner.started.wait(30)
    second = first + timedelta(minutes=1)
    clock.set(second)
    assert run_one_job(ctx, job["id"], to_iso(second)).claim == "queued"
    # Never two runs of one job at once: the newer fire waits for the running one.
    assert run_one_job(ctx, job["id"], to_iso(second)).claim == "lost"
    runner.release.set()
    thread.join(30)
    assert results[0].status == "ok"  # it did finish: recorded as what happened
    assert run_one_job(ctx, job["id"], to_iso(second)).status == "ok"


def test_only_replace_jobs_are_watched(paths: HomePaths, clock: FakeClock) -> None:
    """A job that cannot be replaced needs no cancel watch."""
    import hermes_cron.runner as runner_module

    ctx = make_ctx(paths, clock)
    job = ctx.store.add(sched("every 1h", clock), command=["true"], overlap="queue")
    assert run_one_job(ctx, job["id"], None, manual=True).status == "ok"
    assert ctx.store not in runner_module._WATCHES
