"""A full disk, a read-only file system, a denied permission, an I/O error: on ``jobs.json``,
on the output folder, on the run ledger, on the status file, and on all of them at once.

The faults are injected in-process (``reliakit.DiskFault`` patches ``os``): tests run as
root, where ``chmod`` denies nothing. Promises checked: the error is reported on one line
(the exception, the CLI's stderr, the job's ``last_error``, ``status``'s ``last_error``),
the old ``jobs.json`` is intact byte for byte, no temp file is left, nothing is lost, and
nothing runs twice or without its claim written first.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import pytest
from helpers.servicekit import PromptRunner, advance_idle, wait_for
from helpers.storekit import fire_time, make_ctx, sched
from reliakit import DiskFault, named, under

from hermes_cron import hookimpl
from hermes_cron.cli import main
from hermes_cron.clock import FakeClock
from hermes_cron.errors import StoreError
from hermes_cron.paths import HomePaths
from hermes_cron.runner import RunOutcome, execute_claim, run_one_job
from hermes_cron.service import CronService
from hermes_cron.status_file import read_status
from hermes_cron.store import INTERRUPTED, LOST, WON
from hermes_cron.timeutil import to_iso

#: (errno, the call that fails): how each fault shows up in practice.
STORE_FAULTS = [
    pytest.param(errno.ENOSPC, ("write",), id="disk-full-on-write"),
    pytest.param(errno.EROFS, ("open",), id="read-only-fs"),
    pytest.param(errno.EACCES, ("open",), id="permission-denied"),
    pytest.param(errno.EIO, ("fsync",), id="io-error-on-fsync"),
    pytest.param(errno.EROFS, ("replace",), id="read-only-on-rename"),
]
DIR_FAULTS = [
    pytest.param(errno.ENOSPC, id="disk-full"),
    pytest.param(errno.EROFS, id="read-only-fs"),
    pytest.param(errno.EACCES, id="permission-denied"),
]


def _one_line(text: str) -> bool:
    return "\n" not in text.strip() and "Traceback" not in text


def _temps(paths: HomePaths) -> list:
    return [p.name for p in paths.cron_dir.iterdir() if p.name.endswith(".tmp")]


def _due(ctx: Any, job_id: str) -> str:
    due = fire_time(ctx.store, job_id)
    ctx.clock.set(due)
    return to_iso(due)


@pytest.mark.parametrize("err, calls", STORE_FAULTS)
def test_a_failing_jobs_file_write_is_reported_and_the_old_file_stays(
    paths: HomePaths, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, err: int, calls: tuple
) -> None:
    ctx = make_ctx(paths, clock)
    job = ctx.store.add(sched("every 10m", clock), command=["true"])
    before = paths.jobs.read_bytes()
    fault = DiskFault(monkeypatch, named("jobs.json"), err, calls=calls)
    attempts: Dict[str, Callable[[], Any]] = {
        "add": lambda: ctx.store.add(sched("every 1h", clock), command=["true"]),
        "pause": lambda: ctx.store.pause(job["id"]),
        "update": lambda: ctx.store.update(job["id"], name="renamed"),
        "remove": lambda: ctx.store.remove(job["id"]),
        "claim": lambda: ctx.store.claim(job["id"], fire_time(ctx.store, job["id"]), "me"),
    }
    clock.set(fire_time(ctx.store, job["id"]))
    for label, attempt in attempts.items():
        with pytest.raises(StoreError) as info:
            attempt()
        message = str(info.value)
        assert _one_line(message), label
        assert str(paths.jobs) in message and "cannot write" in message, message
        assert f"[Errno {err}]" in message and __import__("os").strerror(err) in message
        assert paths.jobs.read_bytes() == before, f"{label} changed jobs.json"
        assert _temps(paths) == [], label
    assert fault.hits >= len(attempts)
    # The process's own view did not move ahead of the file either.
    assert ctx.store.get(job["id"]) == json.loads(before)["jobs"][0]
    fault.off()
    claim = ctx.store.claim(job["id"], fire_time(ctx.store, job["id"]), "me")
    assert claim.won
    assert ctx.store.get(job["id"])["fire_claim"]["owner"] == "me"


def test_the_cli_reports_a_full_disk_and_a_denied_read_in_one_line(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["add", "every", "1h", "--", "true"]) == 0
    job_id = capsys.readouterr().out.strip()
    jobs = home / "cron" / "jobs.json"
    before = jobs.read_bytes()

    fault = DiskFault(monkeypatch, named("jobs.json"), errno.ENOSPC, calls=("write",))
    for argv in (["add", "every", "2h", "--", "true"], ["pause", job_id], ["remove", job_id]):
        code = main(argv)
        out, err = capsys.readouterr()
        assert code == 2, (argv, out, err)
        assert _one_line(err) and err.startswith("hermes-cron: "), err
        assert "No space left on device" in err and str(jobs) in err
        assert jobs.read_bytes() == before
    fault.off()

    DiskFault(monkeypatch, named("jobs.json"), errno.EACCES, calls=("open",), reads=True)
    for argv in (["list"], ["show", job_id], ["status"], ["run", job_id]):
        code = main(argv)
        out, err = capsys.readouterr()
        assert code == 2, (argv, out, err)
        assert _one_line(err) and "Permission denied" in err and str(jobs) in err, err
    assert jobs.read_bytes() == before


@pytest.mark.parametrize("err", DIR_FAULTS)
def test_a_failing_output_folder_is_recorded_and_the_run_still_counts(
    paths: HomePaths, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, err: int
) -> None:
    ctx = make_ctx(paths, clock)
    job = ctx.store.add(sched("every 10m", clock), command=["true"])
    fault = DiskFault(monkeypatch, under(paths.output_dir), err)
    first = _due(ctx, job["id"])
    result = run_one_job(ctx, job["id"], first)
    assert result.ran and result.status == "ok" and result.output_path is None
    assert "cannot write output" in result.error and __import__("os").strerror(err) in result.error
    record = ctx.store.get(job["id"])
    assert record["fire_claim"] is None and record["last_status"] == "ok"
    assert _one_line(record["last_error"]) and "cannot write output" in record["last_error"]
    row = ctx.ledger.read(job["id"])[0]
    assert row["fire_at"] == first and row["status"] == "ok" and row["output"] is None
    assert run_one_job(ctx, job["id"], first).claim == LOST  # never twice

    fault.off()
    result = run_one_job(ctx, job["id"], _due(ctx, job["id"]))
    assert result.error is None and Path(result.output_path).is_file()
    assert ctx.store.get(job["id"])["last_error"] is None


@pytest.mark.parametrize("err", DIR_FAULTS)
def test_a_failing_ledger_is_recorded_in_the_job(
    paths: HomePaths, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, err: int
) -> None:
    ctx = make_ctx(paths, clock)
    job = ctx.store.add(sched("every 10m", clock), command=["true"])
    ctx.ledger.append({"job_id": "earlier", "fire_at": "x", "status": "ok"})
    before = paths.runs.read_bytes()
    DiskFault(monkeypatch, named("runs.jsonl"), err)
    result = run_one_job(ctx, job["id"], _due(ctx, job["id"]))
    assert result.status == "ok" and Path(result.output_path).is_file()
    assert (
        "cannot record the run" in result.error and __import__("os").strerror(err) in result.error
    )
    record = ctx.store.get(job["id"])
    assert record["fire_claim"] is None and "cannot record the run" in record["last_error"]
    assert paths.runs.read_bytes() == before


class _FaultDuringRun:
    """A runner that switches a fault on while its job runs (the disk fills mid-run)."""

    def __init__(self, fault: Optional[DiskFault] = None) -> None:
        self.fault = fault
        self.runs = 0

    @hookimpl(tryfirst=True)
    def run_job(self, ctx: Any, job: Dict[str, Any]) -> RunOutcome:
        self.runs += 1
        if self.fault is not None:
            self.fault.on()
        return RunOutcome(status="ok", output="done")


def test_the_whole_home_read_only_mid_run_loses_nothing_and_runs_nothing_twice(
    paths: HomePaths, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = _FaultDuringRun()
    ctx = make_ctx(paths, clock, runner, claim_ttl=60)
    job = ctx.store.add(sched("every 10m", clock), command=["true"])
    fire = _due(ctx, job["id"])
    runner.fault = DiskFault(monkeypatch, under(paths.cron_dir), errno.EROFS)
    runner.fault.off()
    result = run_one_job(ctx, job["id"], fire)
    runner.fault.off()
    # The run happened; nothing about it could be written, and each failure is reported.
    assert runner.runs == 1 and result.status == "ok"
    assert "cannot write output" in result.error and "cannot record the run" in result.error
    record = ctx.store.get(job["id"])
    assert record["fire_claim"] is not None  # finish_run could not be written either
    assert record["next_run_at"] > fire  # ...but the claim had advanced the schedule
    # The fire is spent: a retry of it, by anyone, is refused.
    assert run_one_job(ctx, job["id"], fire).claim == LOST
    assert runner.runs == 1
    # After the TTL the held claim is reaped and recorded: not lost, not re-run.
    clock.advance(61)
    claims = ctx.store.catch_up()
    assert [c.outcome for c in claims] == [INTERRUPTED]
    execute_claim(ctx, claims[0])
    row = ctx.ledger.read(job["id"])[0]
    assert row["fire_at"] == fire and row["status"] == "error" and "interrupted" in row["error"]
    assert runner.runs == 1
    # And the job goes on.
    assert run_one_job(ctx, job["id"], _due(ctx, job["id"])).claim == WON
    assert runner.runs == 2


def test_the_loop_reports_a_full_disk_runs_nothing_unclaimed_and_recovers(
    home: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = PromptRunner()
    service = CronService.from_home(home, clock=clock, plugins=[runner])
    job = service.add_job("every 2s", prompt="ok")
    fault = DiskFault(monkeypatch, named("jobs.json"), errno.ENOSPC, calls=("write",))
    fault.off()
    handle = service.start_in_thread()
    try:
        wait_for(lambda: read_status(service.paths).get("heartbeat_at"))
        fault.on()
        advance_idle(clock, 2)
        status = wait_for(
            lambda: (
                "No space left" in str(read_status(service.paths).get("last_error"))
                and read_status(service.paths)
            )
        )
        assert _one_line(status["last_error"]) and "jobs.json" in status["last_error"]
        assert runner.count(job["id"]) == 0  # no run without its claim on disk
        assert handle.running
        fault.off()
        # The loop records the error, then sleeps for its retry: move the clock only then.
        advance_idle(clock, 2)
        wait_for(
            lambda: runner.count(job["id"]) == 1 and not service.store.get(job["id"])["fire_claim"]
        )
    finally:
        handle.stop(30)
    # One run for the two fire times that passed while the disk was full.
    assert len(runner.fires(job["id"])) == 1
    assert service.status()["last_error"] == status["last_error"]


def test_an_unwritable_status_file_never_stops_the_scheduler(
    home: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = PromptRunner()
    service = CronService.from_home(home, clock=clock, plugins=[runner])
    job = service.add_job("every 2s", prompt="ok")
    fault = DiskFault(monkeypatch, named("status.json", ".status.lock"), errno.EROFS)
    handle = service.start_in_thread()
    try:
        for k in (1, 2):
            advance_idle(clock, 2)  # no heartbeat to wait for: status.json is unwritable
            wait_for(
                lambda k=k: (
                    runner.count(job["id"]) == k and not service.store.get(job["id"])["fire_claim"]
                )
            )
    finally:
        handle.stop(30)
    assert fault.hits > 0 and not (home / "cron" / "status.json").exists()
    assert [r["status"] for r in service.ledger.read(job["id"])] == ["ok", "ok"]
