"""Chronos and the job options: NAS is armed at ``next_run_at`` whatever made it (a
jittered time, a retry, a queued fire whose run ended), and ``edit`` re-arms the edited
job once. NAS mocked by pytest-httpx."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any, Dict, Iterator, List

import hermes_cron_builtin_plugins.chronos as chronos
import pytest
from helpers.chronoskit import chronos_config, mock_nas, nas_calls

from hermes_cron import hookimpl
from hermes_cron.clock import FakeClock
from hermes_cron.config import DEFAULTS, deep_merge
from hermes_cron.runner import RunOutcome
from hermes_cron.service import CronService
from hermes_cron.store.rules import jitter_offset
from hermes_cron.timeutil import parse_iso, to_iso

PROVISION = "/api/agent-cron/provision"


class Runner:
    """Prompt jobs: ``fail`` fails once; ``block`` waits for ``release`` on its first run."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.failed: List[str] = []

    @hookimpl
    def run_job(self, ctx: Any, job: Dict[str, Any]) -> RunOutcome:
        if job["prompt"] == "fail" and job["id"] not in self.failed:
            self.failed.append(job["id"])
            return RunOutcome(status="error", error="made to fail")
        if job["prompt"] == "block" and not self.started.is_set():
            self.started.set()
            assert self.release.wait(30)
        return RunOutcome(status="ok", output="done")


@pytest.fixture
def runner() -> Runner:
    return Runner()


@pytest.fixture
def service(chronos_home: Path, clock: FakeClock, runner: Runner) -> Iterator[CronService]:
    built = CronService.from_home(
        chronos_home, clock=clock, config=deep_merge(DEFAULTS, chronos_config()), plugins=[runner]
    )
    assert built.provider_name == "chronos", built.scheduler.fallback_reason
    yield built
    state = built.ctx.state.get("chronos")
    if state is not None:
        state.client.close()


def warm(service: CronService, httpx_mock: Any) -> None:
    """One reconcile (cold: one list), then forget what it asked."""
    chronos.chronos_state(service.ctx).reconcile()
    httpx_mock.reset()
    mock_nas(httpx_mock)


def provisions(httpx_mock: Any) -> List[str]:
    return [body["fire_at"] for _m, path, body in nas_calls(httpx_mock) if path == PROVISION]


def test_a_jittered_job_is_armed_at_its_delayed_time(service: CronService, httpx_mock: Any) -> None:
    mock_nas(httpx_mock)
    job = service.add_job("every 1h", prompt="p", jitter="10m")
    scheduled = parse_iso(job["next_scheduled_at"])
    delayed = scheduled + jitter_offset(job["id"], scheduled, 600)
    assert provisions(httpx_mock)[-1] == to_iso(delayed) == job["next_run_at"]


def test_edit_re_arms_the_edited_job_once(service: CronService, httpx_mock: Any) -> None:
    mock_nas(httpx_mock)
    job = service.add_job("every 1h", prompt="p")
    warm(service, httpx_mock)
    edited = service.edit_job(job["id"], schedule="every 2h", jitter="5m")
    assert provisions(httpx_mock) == [edited["next_run_at"]]
    httpx_mock.reset()
    mock_nas(httpx_mock)
    service.edit_job(job["id"], name="renamed")  # the fire time did not move: no NAS call
    assert nas_calls(httpx_mock) == []


def test_a_retry_is_armed_after_the_failed_run_and_the_schedule_after_it(
    service: CronService, httpx_mock: Any, clock: FakeClock
) -> None:
    mock_nas(httpx_mock)
    job = service.add_job("every 1h", prompt="fail", retries=1, retry_delay=60)
    warm(service, httpx_mock)
    due = job["next_run_at"]
    clock.set(parse_iso(due))
    assert service.fire_due(job["id"], due).status == "error"
    next_fire = to_iso(parse_iso(due) + timedelta(hours=1))
    retry_at = to_iso(clock.now() + timedelta(seconds=60))
    # Armed at the next fire when the claim advanced it, then at the retry once it failed.
    assert provisions(httpx_mock) == [next_fire, retry_at]
    httpx_mock.reset()
    mock_nas(httpx_mock)
    clock.set(parse_iso(retry_at))
    result = service.fire_due(job["id"], retry_at)
    assert result.status == "ok" and result.attempt == 2
    assert provisions(httpx_mock) == [next_fire]  # back to the schedule


def test_a_queued_fire_is_armed_when_the_run_before_it_ends(
    service: CronService, httpx_mock: Any, clock: FakeClock, runner: Runner
) -> None:
    mock_nas(httpx_mock)
    job = service.add_job("every 1m", prompt="block", overlap="queue")
    warm(service, httpx_mock)
    first = job["next_run_at"]
    clock.set(parse_iso(first))
    results: List[Any] = []
    thread = threading.Thread(target=lambda: results.append(service.fire_due(job["id"], first)))
    thread.start()
    assert runner.started.wait(30)
    second = to_iso(parse_iso(first) + timedelta(minutes=1))
    clock.set(parse_iso(second))
    assert service.fire_due(job["id"], second).claim == "queued"
    third = to_iso(parse_iso(first) + timedelta(minutes=2))
    assert provisions(httpx_mock)[-1] == third  # the schedule moved on
    runner.release.set()
    thread.join(30)
    assert results[0].status == "ok"
    assert provisions(httpx_mock)[-1] == second  # the waiting fire is due: armed now
    assert service.fire_due(job["id"], second).status == "ok"
    assert provisions(httpx_mock)[-1] == third
