"""The default run_job: command jobs as subprocesses, with a timeout that kills the group."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Dict

import pytest
from helpers.storekit import make_ctx, pid_gone, sched, wait_until

from hermes_cron import executor
from hermes_cron.clock import FakeClock
from hermes_cron.executor import OUTPUT_CAP, PROMPT_NEEDS_RUNNER, DefaultExecutor, run_command
from hermes_cron.paths import HomePaths

PY = sys.executable


@pytest.fixture
def ctx(paths: HomePaths, clock: FakeClock) -> Any:
    return make_ctx(paths, clock)


def _claimed(ctx: Any, **kwargs: Any) -> Dict[str, Any]:
    """Add a job and claim it by hand, as the runner would before calling run_job."""
    job = ctx.store.add(sched("every 1h", ctx.clock), **kwargs)
    claim = ctx.store.claim_manual(job["id"], "test")
    assert claim.won
    return claim.job


def test_runs_argv_without_a_shell_with_job_env(ctx: Any) -> None:
    code = (
        "import os, sys; print(sys.argv[1:]); print(os.getcwd()); "
        "e = os.environ; print(e['HERMES_CRON_JOB_ID'], e['HERMES_CRON_FIRE_AT'], "
        "e['HERMES_CRON_OWNER']); "
        "print('stdin:', repr(sys.stdin.read()))"
    )
    job = _claimed(ctx, command=[PY, "-c", code, "$HOME", "a b", ";", "|"])
    outcome = DefaultExecutor().run_job(ctx, job)
    assert outcome.status == "ok" and outcome.exit_code == 0 and outcome.error is None
    lines = outcome.output.splitlines()
    assert lines[0] == "['$HOME', 'a b', ';', '|']"
    assert lines[1] == str(Path.home())
    claim = job["fire_claim"]
    assert lines[2] == f"{job['id']} {claim['fire_at']} {claim['owner']}"
    assert lines[3] == "stdin: ''"


def test_stdout_and_stderr_are_captured_together(ctx: Any) -> None:
    code = "import sys; print('out', flush=True); sys.stderr.write('err\\n')"
    outcome = DefaultExecutor().run_job(ctx, _claimed(ctx, command=[PY, "-c", code]))
    assert outcome.output == "out\nerr\n"


def test_nonzero_exit_and_signal_deaths_are_errors(ctx: Any) -> None:
    outcome = DefaultExecutor().run_job(ctx, _claimed(ctx, command=[PY, "-c", "exit(7)"]))
    assert (outcome.status, outcome.error, outcome.exit_code) == ("error", "exit code 7", 7)
    code = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    killed = DefaultExecutor().run_job(ctx, _claimed(ctx, command=[PY, "-c", code]))
    assert killed.status == "error" and killed.error == "exit code -9 (killed by SIGKILL)"


def test_missing_and_unexecutable_programs(ctx: Any, tmp_path: Path) -> None:
    missing = DefaultExecutor().run_job(ctx, _claimed(ctx, command=["/no/such/prog", "x"]))
    assert missing.status == "error"
    assert missing.error == "cannot run '/no/such/prog': no such program"
    plain = tmp_path / "not-executable.sh"
    plain.write_text("echo hi\n")
    denied = DefaultExecutor().run_job(ctx, _claimed(ctx, command=[str(plain)]))
    assert denied.status == "error" and "permission denied" in denied.error


def test_prompt_job_needs_a_runner(ctx: Any) -> None:
    outcome = DefaultExecutor().run_job(ctx, _claimed(ctx, prompt="hello agent"))
    assert outcome.status == "error" and outcome.error == PROMPT_NEEDS_RUNNER


def test_timeout_kills_the_whole_process_group(ctx: Any, tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        f"open({str(pidfile)!r}, 'w').write(str(child.pid))\n"
        "print('started', flush=True)\n"
        "time.sleep(120)\n"
    )
    job = _claimed(ctx, command=[PY, "-c", code], timeout=5)  # time for two interpreters
    began = time.monotonic()
    outcome = DefaultExecutor().run_job(ctx, job)
    elapsed = time.monotonic() - began
    assert outcome.status == "timeout"
    assert outcome.error == "timed out after 5 s; the process group was killed"
    assert "started" in outcome.output
    assert elapsed < 20
    grandchild = int(pidfile.read_text())
    wait_until(lambda: pid_gone(grandchild), what="the grandchild to die")


def test_timeout_sigkills_what_ignores_sigterm(ctx: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor, "KILL_GRACE", 0.5)
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('stubborn', flush=True); time.sleep(120)"
    )
    job = _claimed(ctx, command=[PY, "-c", code], timeout=4)
    began = time.monotonic()
    outcome = DefaultExecutor().run_job(ctx, job)
    assert outcome.status == "timeout" and "stubborn" in outcome.output
    assert time.monotonic() - began < 20


def test_config_job_timeout_applies_when_the_job_has_none(ctx: Any) -> None:
    ctx.config["cron"]["job_timeout"] = 0.5
    job = _claimed(ctx, command=[PY, "-c", "import time; time.sleep(60)"])
    assert job["timeout"] is None
    outcome = DefaultExecutor().run_job(ctx, job)
    assert outcome.status == "timeout" and "0.5 s" in outcome.error


def test_output_is_capped(ctx: Any) -> None:
    code = "import sys; sys.stdout.write('z' * (3 * 1024 * 1024))"
    outcome = DefaultExecutor().run_job(ctx, _claimed(ctx, command=[PY, "-c", code]))
    assert outcome.status == "ok"
    assert outcome.output.startswith("z" * OUTPUT_CAP)
    assert outcome.output.count("z") == OUTPUT_CAP
    assert f"output truncated, {2 * 1024 * 1024} more bytes dropped" in outcome.output


def test_invalid_utf8_output_is_replaced_not_fatal() -> None:
    code = "import sys; sys.stdout.buffer.write(b'ok \\xff\\xfe end')"
    outcome = run_command([PY, "-c", code], timeout=30)
    assert outcome.status == "ok" and outcome.output == "ok \ufffd\ufffd end"


def test_child_environment_is_inherited(monkeypatch: pytest.MonkeyPatch, ctx: Any) -> None:
    monkeypatch.setenv("HERMES_TEST_MARK", "inherited")
    code = "import os; print(os.environ['HERMES_TEST_MARK'], os.environ['HERMES_HOME'])"
    outcome = DefaultExecutor().run_job(ctx, _claimed(ctx, command=[PY, "-c", code]))
    assert outcome.output.split() == ["inherited", os.environ["HERMES_HOME"]]
