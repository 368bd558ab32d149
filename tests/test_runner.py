"""The shared run body: claim, run through run_job, write output and ledger, finish."""

from __future__ import annotations

import json
import re
import sys
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest
from helpers.storekit import fire_time, make_ctx, sched, wait_until

from hermes_cron import hookimpl
from hermes_cron.clock import FakeClock
from hermes_cron.errors import UsageError
from hermes_cron.paths import HomePaths
from hermes_cron.runner import RunOutcome, execute_claim, run_one_job
from hermes_cron.store import GONE, LOST, MISSED, SKIPPED, WON
from hermes_cron.timeutil import parse_iso, to_iso

PY = sys.executable


def _due(ctx: Any, job_id: str) -> str:
    due = fire_time(ctx.store, job_id)
    ctx.clock.set(due)
    return to_iso(due)


def test_command_job_ok_writes_output_ledger_and_finishes(
    paths: HomePaths, clock: FakeClock
) -> None:
    ctx = make_ctx(paths, clock)
    script = (
        "import os; e = os.environ; print('job', e['HERMES_CRON_JOB_ID'], e['HERMES_CRON_FIRE_AT'])"
    )
    job = ctx.store.add(sched("every 10m", clock), command=[PY, "-c", script], name="hello")
    fire_at = _due(ctx, job["id"])
    result = run_one_job(ctx, job["id"], fire_at)
    assert result.claim == WON and result.ran and result.status == "ok" and result.error is None
    assert result.fire_at == fire_at

    output = Path(result.output_path)
    assert output.parent == (paths.output_dir / job["id"]).resolve()
    assert re.fullmatch(r"\d{8}T\d{6}\.\d{6}Z\.md", output.name)
    text = output.read_text()
    assert text.startswith("# hello\n")
    assert f"- job: `{job['id']}`" in text and f"- fire time: {fire_at}" in text
    assert "- status: ok" in text
    assert f"job {job['id']} {fire_at}" in text  # the env vars reached the command

    rows = ctx.ledger.read(job["id"])
    assert len(rows) == 1
    row = rows[0]
    assert {k: row[k] for k in ("job_id", "fire_at", "provider", "status", "output", "error")} == {
        "job_id": job["id"],
        "fire_at": fire_at,
        "provider": "builtin",
        "status": "ok",
        "output": str(output),
        "error": None,
    }
    assert row["started_at"] and row["finished_at"] and row["owner"].count(":") == 2
    record = ctx.store.get(job["id"])
    assert record["fire_claim"] is None and record["last_status"] == "ok"
    assert parse_iso(record["next_run_at"]) == parse_iso(fire_at) + timedelta(minutes=10)


def test_command_job_failure(paths: HomePaths, clock: FakeClock) -> None:
    ctx = make_ctx(paths, clock)
    job = ctx.store.add(
        sched("every 10m", clock),
        command=[PY, "-c", "import sys; print('oops'); sys.stderr.write('bad\\n'); sys.exit(3)"],
    )
    result = run_one_job(ctx, job["id"], _due(ctx, job["id"]))
    assert result.status == "error" and result.error == "exit code 3"
    text = Path(result.output_path).read_text()
    assert "oops" in text and "bad" in text and "- exit code: 3" in text
    record = ctx.store.get(job["id"])
    assert (record["last_status"], record["last_error"]) == ("error", "exit code 3")
    assert ctx.ledger.read(job["id"])[0]["exit_code"] == 3


def test_command_timeout_is_recorded(paths: HomePaths, clock: FakeClock) -> None:
    ctx = make_ctx(paths, clock)
    job = ctx.store.add(
        sched("every 10m", clock), command=[PY, "-c", "import time; time.sleep(60)"], timeout=0.5
    )
    result = run_one_job(ctx, job["id"], _due(ctx, job["id"]))
    assert result.status == "timeout" and "timed out after 0.5 s" in result.error
    assert ctx.store.get(job["id"])["last_status"] == "timeout"
    assert ctx.ledger.read(job["id"])[0]["status"] == "timeout"


def test_missing_program_is_a_clear_error(paths: HomePaths, clock: FakeClock) -> None:
    ctx = make_ctx(paths, clock)
    job = ctx.store.add(sched("every 10m", clock), command=["no-such-program-hermes"])
    result = run_one_job(ctx, job["id"], _due(ctx, job["id"]))
    assert result.status == "error"
    assert result.error == "cannot run 'no-such-program-hermes': no such program"
    assert ctx.store.get(job["id"])["fire_claim"] is None


def test_prompt_job_without_a_runner_fails_clearly(paths: HomePaths, clock: FakeClock) -> None:
    ctx = make_ctx(paths, clock)
    job = ctx.store.add(sched("every 10m", clock), prompt="write a haiku")
    result = run_one_job(ctx, job["id"], _due(ctx, job["id"]))
    assert result.status == "error"
    assert result.error == (
        "no runner is registered for prompt jobs: an embedding agent must register a run_job hook"
    )
    assert ctx.store.get(job["id"])["last_error"] == result.error


class PromptRunner:
    """What an embedding agent registers: handles prompts, leaves commands to the default."""

    def __init__(self) -> None:
        self.seen: List[Dict[str, Any]] = []

    @hookimpl
    def run_job(self, ctx: Any, job: Dict[str, Any]) -> Optional[RunOutcome]:
        if job.get("prompt") is None:
            return None
        self.seen.append(job)
        return RunOutcome(status="ok", output=f"agent says: {job['prompt']}")


def test_custom_runner_handles_prompt_jobs(paths: HomePaths, clock: FakeClock) -> None:
    runner = PromptRunner()
    ctx = make_ctx(paths, clock, runner)
    prompt_job = ctx.store.add(sched("every 10m", clock), prompt="write a haiku")
    command_job = ctx.store.add(sched("every 10m", clock), command=[PY, "-c", "print(42)"])
    fire_at = _due(ctx, prompt_job["id"])
    result = run_one_job(ctx, prompt_job["id"], fire_at)
    assert result.status == "ok"
    assert "agent says: write a haiku" in Path(result.output_path).read_text()
    assert runner.seen[0]["fire_claim"]["fire_at"] == fire_at  # the job carries its claim
    other = run_one_job(ctx, command_job["id"], to_iso(fire_time(ctx.store, command_job["id"])))
    assert other.status == "ok" and "42" in Path(other.output_path).read_text()
    assert len(runner.seen) == 1


class Raiser:
    @hookimpl
    def run_job(self, ctx: Any, job: Dict[str, Any]) -> Optional[RunOutcome]:
        raise RuntimeError("plugin exploded")


class Nobody:
    @hookimpl(tryfirst=True)
    def run_job(self, ctx: Any, job: Dict[str, Any]) -> Any:
        return "not an outcome"


def test_plugin_that_raises_becomes_an_error_run(paths: HomePaths, clock: FakeClock) -> None:
    ctx = make_ctx(paths, clock, Raiser())
    job = ctx.store.add(sched("every 10m", clock), command=["true"])
    result = run_one_job(ctx, job["id"], _due(ctx, job["id"]))
    assert result.status == "error"
    assert result.error == "run_job raised RuntimeError: plugin exploded"
    assert "Traceback" in Path(result.output_path).read_text()
    record = ctx.store.get(job["id"])
    assert record["fire_claim"] is None and record["last_error"] == result.error


def test_plugin_returning_garbage_becomes_an_error(paths: HomePaths, clock: FakeClock) -> None:
    ctx = make_ctx(paths, clock, Nobody())
    job = ctx.store.add(sched("every 10m", clock), command=["true"])
    result = run_one_job(ctx, job["id"], _due(ctx, job["id"]))
    assert result.status == "error" and "expected a RunOutcome" in result.error


def test_no_implementation_is_an_error(paths: HomePaths, clock: FakeClock) -> None:
    ctx = make_ctx(paths, clock, default_executor=False)
    job = ctx.store.add(sched("every 10m", clock), command=["true"])
    result = run_one_job(ctx, job["id"], _due(ctx, job["id"]))
    assert result.error == "no run_job implementation handled this job"
    assert ctx.store.get(job["id"])["fire_claim"] is None


def test_bad_fire_at_is_a_usage_error(paths: HomePaths, clock: FakeClock) -> None:
    ctx = make_ctx(paths, clock)
    job = ctx.store.add(sched("every 10m", clock), command=["true"])
    for bad in ("yesterday", "2026-03-02T12:00:00", None):
        with pytest.raises(UsageError, match="bad fire time"):
            run_one_job(ctx, job["id"], bad)  # type: ignore[arg-type]
    assert ctx.store.get(job["id"])["fire_claim"] is None


def test_lost_and_gone_do_nothing(paths: HomePaths, clock: FakeClock) -> None:
    ctx = make_ctx(paths, clock)
    job = ctx.store.add(sched("every 10m", clock), command=["true"])
    fire_at = _due(ctx, job["id"])
    assert run_one_job(ctx, job["id"], fire_at).ran
    dup = run_one_job(ctx, job["id"], fire_at)
    assert dup.claim == LOST and not dup.ran and dup.status is None
    gone = run_one_job(ctx, "nope", fire_at)
    assert gone.claim == GONE
    assert len(ctx.ledger.read()) == 1


def test_skip_and_miss_are_written_to_the_ledger(paths: HomePaths, clock: FakeClock) -> None:
    ctx = make_ctx(paths, clock, misfire_grace=60, claim_ttl=900)
    job = ctx.store.add(sched("every 10m", clock), command=["true"])
    first = fire_time(ctx.store, job["id"])
    clock.set(first)
    claim = ctx.store.claim(job["id"], first, "still-running")
    assert claim.won
    clock.advance(600)
    skipped = run_one_job(ctx, job["id"], to_iso(fire_time(ctx.store, job["id"])))
    assert skipped.claim == SKIPPED and skipped.status == "skipped"
    ctx.store.finish_run(job["id"], "still-running", status="ok", error=None, started_at=first)
    late = fire_time(ctx.store, job["id"])
    clock.set(late + timedelta(seconds=61))
    missed = run_one_job(ctx, job["id"], to_iso(late))
    assert missed.claim == MISSED and missed.status == "missed"
    rows = ctx.ledger.read(job["id"])
    assert [r["status"] for r in rows] == ["missed", "skipped"]
    assert rows[0]["output"] is None and "late" in rows[0]["error"]
    assert rows[1]["output"] is None and "overlap" in rows[1]["error"]
    assert rows[0]["started_at"] == rows[0]["finished_at"]


def test_manual_run(paths: HomePaths, clock: FakeClock) -> None:
    ctx = make_ctx(paths, clock)
    job = ctx.store.add(sched("every 1h", clock), command=[PY, "-c", "print('by hand')"])
    ctx.store.pause(job["id"])
    result = ctx.run_one_job(job["id"], "", manual=True)
    assert result.status == "ok" and result.fire_at == to_iso(clock.now())
    row = ctx.ledger.read(job["id"])[0]
    assert row["manual"] is True
    record = ctx.store.get(job["id"])
    assert record["state"] == "paused" and record["next_run_at"] == job["next_run_at"]
    assert "(manual run)" in Path(result.output_path).read_text()


def test_output_write_failure_is_recorded_and_claim_released(
    paths: HomePaths, clock: FakeClock
) -> None:
    ctx = make_ctx(paths, clock)
    job = ctx.store.add(sched("every 10m", clock), command=["true"])
    paths.output_dir.parent.mkdir(parents=True, exist_ok=True)
    paths.output_dir.write_text("not a folder")
    result = run_one_job(ctx, job["id"], _due(ctx, job["id"]))
    assert result.status == "ok" and result.output_path is None
    assert "cannot write output" in result.error
    record = ctx.store.get(job["id"])
    assert record["fire_claim"] is None and "cannot write output" in record["last_error"]
    assert ctx.ledger.read(job["id"])[0]["output"] is None


def test_ledger_write_failure_is_recorded_and_claim_released(
    paths: HomePaths, clock: FakeClock
) -> None:
    ctx = make_ctx(paths, clock)
    job = ctx.store.add(sched("every 10m", clock), command=["true"])
    paths.runs.mkdir(parents=True)  # a folder where the ledger file should be
    result = run_one_job(ctx, job["id"], _due(ctx, job["id"]))
    assert "cannot record the run" in result.error
    record = ctx.store.get(job["id"])
    assert record["fire_claim"] is None and "cannot record the run" in record["last_error"]


def test_output_file_names_never_clash(paths: HomePaths, clock: FakeClock) -> None:
    ctx = make_ctx(paths, clock)
    job = ctx.store.add(sched("every 1h", clock), command=["true"])
    first = ctx.run_one_job(job["id"], "", manual=True)
    second = ctx.run_one_job(job["id"], "", manual=True)  # same fake instant
    assert first.output_path != second.output_path
    assert Path(second.output_path).name.endswith("-1.md")


def test_output_fence_survives_backticks(paths: HomePaths, clock: FakeClock) -> None:
    ctx = make_ctx(paths, clock)
    job = ctx.store.add(sched("every 1h", clock), command=[PY, "-c", "print('````x````')"])
    text = Path(ctx.run_one_job(job["id"], "", manual=True).output_path).read_text()
    assert "`````text\n````x````\n`````" in text


class SlowRunner:
    """Holds the run open while the test moves the fake clock."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    @hookimpl(tryfirst=True)
    def run_job(self, ctx: Any, job: Dict[str, Any]) -> RunOutcome:
        self.started.set()
        assert self.release.wait(30)
        return RunOutcome(status="ok", output="slow done")


def test_renewal_during_a_long_run_prevents_takeover(paths: HomePaths, clock: FakeClock) -> None:
    slow = SlowRunner()
    ctx = make_ctx(paths, clock, slow, claim_ttl=300)
    job = ctx.store.add(sched("every 2m", clock), command=["true"])
    fire_at = _due(ctx, job["id"])
    results: list = []
    worker = threading.Thread(target=lambda: results.append(run_one_job(ctx, job["id"], fire_at)))
    worker.start()
    try:
        assert slow.started.wait(30)
        for _ in range(5):  # 5 x 110 s: far beyond the 300 s ttl without renewal
            assert clock.wait_for_waiters(1), "the renewer never waited on the clock"
            clock.advance(110)
            now = to_iso(clock.now())
            wait_until(
                lambda now=now: ctx.store.get(job["id"])["fire_claim"]["claimed_at"] == now,
                what="the claim renewal",
            )
        due = fire_time(ctx.store, job["id"])
        other = run_one_job(ctx, job["id"], to_iso(due))
        assert other.claim == SKIPPED
    finally:
        slow.release.set()
        worker.join(30)
    assert results[0].status == "ok"
    assert ctx.store.get(job["id"])["fire_claim"] is None
    statuses = [r["status"] for r in ctx.ledger.read(job["id"])]
    assert statuses == ["ok", "skipped"]


def test_interrupted_claims_are_reaped_and_recorded(paths: HomePaths, clock: FakeClock) -> None:
    ctx = make_ctx(paths, clock, claim_ttl=300)
    job = ctx.store.add(sched("+5m", clock), command=["true"])
    due = fire_time(ctx.store, job["id"])
    clock.set(due)
    assert ctx.store.claim(job["id"], due, "died").won  # ...and the process died here
    clock.advance(301)
    claims = ctx.store.catch_up()
    assert [c.outcome for c in claims] == ["interrupted"]
    result = execute_claim(ctx, claims[0])
    assert result.status == "error"
    record = ctx.store.get(job["id"])
    assert record["state"] == "completed" and record["fire_claim"] is None
    assert "interrupted" in record["last_error"]
    row = ctx.ledger.read(job["id"])[0]
    assert row["status"] == "error" and "never finished" in row["error"]


def test_a_fire_that_takes_over_a_stale_claim_records_the_lost_run(
    paths: HomePaths, clock: FakeClock
) -> None:
    # No catch-up pass ran (the Chronos/webhook path): the next fire itself finds the
    # stale claim of a run whose process died. That run must still get its ledger row.
    ctx = make_ctx(paths, clock, claim_ttl=300)
    job = ctx.store.add(sched("every 10m", clock), command=["true"])
    first = fire_time(ctx.store, job["id"])
    clock.set(first)
    assert ctx.store.claim(job["id"], first, "died").won  # ...and the process died here
    second = fire_time(ctx.store, job["id"])
    clock.set(second)
    result = run_one_job(ctx, job["id"], to_iso(second))
    assert result.claim == WON and result.status == "ok"
    rows = ctx.ledger.read(job["id"])
    assert [(r["status"], parse_iso(r["fire_at"])) for r in rows] == [
        ("ok", second),
        ("error", first),
    ]
    assert "never finished" in rows[1]["error"] and rows[1]["owner"] == "died"


def test_ledger_rows_are_valid_json_lines(paths: HomePaths, clock: FakeClock) -> None:
    ctx = make_ctx(paths, clock)
    job = ctx.store.add(sched("every 1h", clock), command=["true"])
    ctx.run_one_job(job["id"], "", manual=True)
    lines = paths.runs.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["job_id"] == job["id"]
