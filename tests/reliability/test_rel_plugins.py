"""Hostile provider plugins: one that raises in every hook, one that hangs in
``is_available``, one that returns garbage from every hook.

Promise (SPEC §1, §6): cron is never left without a trigger. The scheduler falls back to
the built-in (or carries on with the built-in default for the hook that failed), says
why in ``status`` (``fallback_reason``, ``last_error``; ``hermes-cron status --json``
too), never prints a traceback, and never runs a fire twice.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Dict

import pytest
from helpers.servicekit import (
    PromptRunner,
    advance_idle,
    cli_cmd,
    run_cli,
    wait_for,
    write_config,
    write_user_plugin,
)

from hermes_cron.clock import FakeClock
from hermes_cron.service import CronService
from hermes_cron.status_file import read_status
from hermes_cron.store import LOST

RAISES_EVERYWHERE = """
from hermes_cron import hookimpl

AVAILABLE = {available}

@hookimpl
def is_available(config):
    if AVAILABLE:
        return True
    raise RuntimeError("is_available exploded")

@hookimpl
def start(ctx, stop_event):
    raise RuntimeError("start exploded")

@hookimpl
def reconcile(ctx):
    raise RuntimeError("reconcile exploded")

@hookimpl
def on_jobs_changed(ctx, job_ids):
    raise RuntimeError("on_jobs_changed exploded")

@hookimpl
def fire_due(ctx, job_id, fire_at):
    raise RuntimeError("fire_due exploded")
"""

HANGS = """
import time
from hermes_cron import hookimpl

@hookimpl
def is_available(config):
    time.sleep(3600)
    return True
"""

GARBAGE = """
from hermes_cron import hookimpl

AVAILABLE = {available}

class Odd:
    def __repr__(self):
        return "<odd\\nthing>"

@hookimpl
def is_available(config):
    return True if AVAILABLE else "maybe"

@hookimpl
def start(ctx, stop_event):
    return [Odd(), b"\\xff", float("nan")]

@hookimpl
def reconcile(ctx):
    return Odd()

@hookimpl
def on_jobs_changed(ctx, job_ids):
    return {{"weird": Odd()}}

@hookimpl
def fire_due(ctx, job_id, fire_at):
    return "garbage"
"""


def _use(home: Path, name: str, code: str) -> None:
    write_user_plugin(home, name, code)
    write_config(home, {"cron": {"provider": name}})


def _status(home: Path, timeout: float = 60.0) -> Dict[str, Any]:
    proc = run_cli(home, "status", "--json", timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return json.loads(proc.stdout)


def test_a_provider_raising_in_is_available_leaves_the_builtin_in_charge(home: Path) -> None:
    _use(home, "boom", RAISES_EVERYWHERE.format(available=False))
    status = _status(home)
    assert status["provider"] == "builtin" and status["requested"] == "boom"
    assert "is_available raised RuntimeError: is_available exploded" in status["fallback_reason"]
    providers = json.loads(run_cli(home, "providers", "--json").stdout)
    row = next(p for p in providers if p["name"] == "boom")
    assert row["active"] is False and row["available"] is False and "exploded" in row["error"]
    assert [p["name"] for p in providers if p["active"]] == ["builtin"]
    # And the built-in really runs the jobs: a tick fires a due one.
    job_id = run_cli(home, "add", "+1s", "--", "true").stdout.strip()
    wait_for(
        lambda: (
            "ok" in run_cli(home, "tick").stdout
            or json.loads(run_cli(home, "show", job_id, "--json").stdout)["last_status"] == "ok"
        ),
        timeout=30,
    )


def test_a_provider_raising_in_every_other_hook_never_stops_cron(
    home: Path, clock: FakeClock
) -> None:
    _use(home, "boom", RAISES_EVERYWHERE.format(available=True))
    runner = PromptRunner()
    service = CronService.from_home(home, clock=clock, plugins=[runner])
    assert service.provider_name == "boom"
    job = service.add_job("every 2s", prompt="ok")  # on_jobs_changed raised: recorded
    assert service.store.get(job["id"])["state"] == "scheduled"
    assert "on_jobs_changed" in service.status()["last_error"]
    assert service.reconcile() is None
    assert "reconcile exploded" in service.status()["last_error"]
    with pytest.raises(RuntimeError, match="fire_due exploded"):
        service.fire_due(job["id"], job["next_run_at"])
    assert runner.count(job["id"]) == 0
    # start raises: the built-in loop takes over and runs the job on time.
    handle = service.start_in_thread()
    try:
        wait_for(lambda: read_status(service.paths).get("heartbeat_at"))
        advance_idle(clock, 2)
        wait_for(lambda: runner.count(job["id"]) == 1)
        status = service.status()
        assert status["provider"] == "builtin"
        assert "start raised RuntimeError: start exploded" in status["fallback_reason"]
        # The dropped provider no longer sees fire_due: the built-in default runs it.
        wait_for(lambda: not service.store.get(job["id"])["fire_claim"])
        due = service.store.get(job["id"])["next_run_at"]
        advance_idle(clock, 2)
        result = service.fire_due(job["id"], due)  # races the loop for it: one of them wins
        assert result.claim in ("won", LOST)
    finally:
        handle.stop(30)
    fires = runner.fires(job["id"])
    assert len(fires) == len(set(fires))


def test_a_daemon_with_a_provider_whose_start_raises_runs_jobs_and_says_why(home: Path) -> None:
    _use(home, "boom", RAISES_EVERYWHERE.format(available=True))
    out = home / "fired.txt"
    job_id = run_cli(
        home, "add", "every", "1s", "--", "sh", "-c", f"echo $HERMES_CRON_FIRE_AT >> {out}"
    ).stdout.strip()
    assert job_id
    env = dict(os.environ, HERMES_HOME=str(home))
    proc = subprocess.Popen(
        cli_cmd("daemon"), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(lambda: out.exists() and len(out.read_text().split()) >= 2, timeout=30)
        status = _status(home)
        # The daemon fell back; a `status` in another process learns it from status.json.
        assert "start raised RuntimeError: start exploded" in status["last_error"]
        assert status["running_process"]["provider"] == "builtin"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    fires = out.read_text().split()
    assert len(fires) == len(set(fires))


def test_a_provider_hanging_in_is_available_is_abandoned(home: Path) -> None:
    _use(home, "hangs", HANGS)
    runner = PromptRunner()
    began = time.monotonic()
    service = CronService.from_home(home, plugins=[runner], availability_timeout=0.3)
    assert time.monotonic() - began < 10
    assert service.provider_name == "builtin"
    assert "did not answer within 0.3 s" in service.status()["fallback_reason"]
    # The command line waits its bounded 5 s, then says so.
    began = time.monotonic()
    status = _status(home, timeout=60)
    assert time.monotonic() - began < 30
    assert status["provider"] == "builtin"
    assert "is_available did not answer within 5 s" in status["fallback_reason"]


def test_a_provider_answering_garbage_to_is_available_is_not_selected(home: Path) -> None:
    _use(home, "junk", GARBAGE.format(available=False))
    status = _status(home)
    assert status["provider"] == "builtin"
    assert "is_available returned 'maybe'" in status["fallback_reason"]


def test_a_provider_answering_garbage_everywhere_else_never_stops_a_fire(
    home: Path, clock: FakeClock
) -> None:
    _use(home, "junk", GARBAGE.format(available=True))
    runner = PromptRunner()
    service = CronService.from_home(home, clock=clock, plugins=[runner])
    assert service.provider_name == "junk"
    job = service.add_job("every 2s", prompt="ok")
    service.reconcile()
    clock.advance(2)
    due = job["next_run_at"]
    result = service.fire_due(job["id"], due)
    # fire_due answered "garbage": recorded, and the built-in default fired it instead.
    assert result.claim == "won" and result.status == "ok"
    assert (
        "fire_due" in service.status()["last_error"] and "garbage" in service.status()["last_error"]
    )
    again = service.fire_due(job["id"], due)  # a duplicate of the same fire
    assert again.claim == LOST
    assert runner.fires(job["id"]) == [due]
    # The command line prints whatever start answered, on one line per key, and exits 0.
    proc = run_cli(home, "daemon")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    proc = run_cli(home, "daemon", "--json")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    json.loads(proc.stdout)
