"""CronService: construction from a home, config problems, mutations, reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List

import pytest
from helpers.servicekit import PromptRunner, write_config, write_user_plugin

from hermes_cron import hookimpl
from hermes_cron.clock import FakeClock
from hermes_cron.errors import JobNotFoundError, PluginError, ScheduleError, UsageError
from hermes_cron.service import CronService
from hermes_cron.timeutil import local_zone_name

RECORDER = """
from hermes_cron import hookimpl

CHANGED = []

@hookimpl
def on_jobs_changed(ctx, job_ids):
    CHANGED.append(list(job_ids))
    return True

@hookimpl
def start(ctx, stop_event):
    return {"armed": len(ctx.store.list_jobs())}
"""

STATUS_KEYS = {
    "provider",
    "requested",
    "fallback_reason",
    "heartbeat_at",
    "last_error",
    "jobs",
    "next_due",
}
PROVIDER_KEYS = {"name", "source", "path", "available", "active", "shadowed_by", "error"}


def test_malformed_config_runs_on_defaults_and_says_why(home: Path, clock: FakeClock) -> None:
    (home / "config.yaml").write_text("cron:\n  provider: chronos\n  bad: [\n", encoding="utf-8")
    service = CronService.from_home(home, clock=clock)
    assert service.config_error is not None
    assert str(home / "config.yaml") in service.config_error
    assert "malformed YAML" in service.config_error
    assert service.provider_name == "builtin"
    status = service.status()
    assert status["config_error"] == service.config_error
    job = service.add_job("every 1m", command=["true"])  # still works
    assert service.store.get(job["id"])["state"] == "scheduled"


def test_bad_config_values_fall_back_to_defaults(home: Path, clock: FakeClock) -> None:
    write_config(
        home,
        {"cron": {"max_workers": "many", "timezone": "Mars/Olympus", "claim_ttl": -1}},
    )
    service = CronService.from_home(home, clock=clock)
    assert "cron.max_workers" in service.config_error
    assert "unknown time zone 'Mars/Olympus'" in service.config_error
    assert "cron.claim_ttl" in service.config_error
    assert service.config["cron"]["max_workers"] == 4
    assert service.store.claim_ttl == 300
    assert service.default_tz == local_zone_name()


def test_configured_timezone_is_the_default_for_new_jobs(home: Path, clock: FakeClock) -> None:
    write_config(home, {"cron": {"timezone": "Europe/Paris"}})
    service = CronService.from_home(home, clock=clock)
    job = service.add_job("0 9 * * *", command=["true"])
    assert job["schedule"]["tz"] == "Europe/Paris"
    assert job["next_run_at"] == "2026-03-03T08:00:00+00:00"  # 09:00 in Paris
    other = service.add_job("0 9 * * *", command=["true"], tz="America/New_York")
    assert other["schedule"]["tz"] == "America/New_York"
    with pytest.raises(ScheduleError):
        service.add_job("0 9 * * *", command=["true"], tz="Nowhere/Land")
    assert len(service.store.list_jobs()) == 2


def test_every_mutation_notifies_the_active_provider(home: Path, clock: FakeClock) -> None:
    write_user_plugin(home, "recorder", RECORDER)
    write_config(home, {"cron": {"provider": "recorder"}})
    service = CronService.from_home(home, clock=clock)
    changed: List[Any] = service.scheduler.plugin.CHANGED
    job = service.add_job("every 1h", command=["true"], name="n", repeat=3)
    service.pause_job(job["id"])
    service.resume_job(job["id"])
    service.run_now(job["id"])
    service.remove_job(job["id"])
    assert changed == [[job["id"]]] * 5
    with pytest.raises(UsageError):
        service.add_job("   ", command=["true"])
    with pytest.raises(JobNotFoundError):
        service.pause_job("nope")
    assert len(changed) == 5  # nothing changed, nobody told


def test_run_now_is_manual_and_does_not_advance(home: Path, clock: FakeClock) -> None:
    service = CronService.from_home(home, clock=clock)
    job = service.add_job("every 1h", command=["sh", "-c", "echo $HERMES_CRON_JOB_ID"])
    result = service.run_now(job["id"])
    assert result.claim == "won" and result.status == "ok"
    assert job["id"] in Path(result.output_path).read_text(encoding="utf-8")
    after = service.store.get(job["id"])
    assert after["next_run_at"] == job["next_run_at"] and after["last_status"] == "ok"
    assert service.ledger.read(job["id"])[0]["manual"] is True
    with pytest.raises(JobNotFoundError):
        service.run_now("nope")


def test_run_now_of_a_quarantined_record_is_refused(home: Path, clock: FakeClock) -> None:
    service = CronService.from_home(home, clock=clock)
    service.add_job("every 1h", command=["true"])
    data = json.loads(service.store.path.read_text(encoding="utf-8"))
    data["jobs"].append({"id": "broken1", "schedule": "not a record", "command": ["true"]})
    service.store.path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(UsageError, match="quarantined"):
        service.run_now("broken1")
    status = service.status()
    assert status["jobs"] == 1 and status["quarantined"][0]["id"] == "broken1"


def test_status_shape(home: Path, clock: FakeClock) -> None:
    service = CronService.from_home(home, clock=clock)
    late = service.add_job("every 2h", command=["true"])
    soon = service.add_job("every 30s", command=["true"])
    status = service.status()
    assert STATUS_KEYS <= set(status)
    assert status["provider"] == "builtin" and status["requested"] == ""
    assert status["fallback_reason"] is None and status["heartbeat_at"] is None
    assert status["last_error"] is None and status["jobs"] == 2
    assert status["next_due"] == [
        {"id": soon["id"], "next_run_at": soon["next_run_at"]},
        {"id": late["id"], "next_run_at": late["next_run_at"]},
    ]
    json.dumps(status)


def test_providers_builtin_active(home: Path) -> None:
    write_user_plugin(home, "extra", RECORDER)
    rows = CronService.from_home(home).providers()
    assert all(PROVIDER_KEYS <= set(r) for r in rows)
    assert [r["name"] for r in rows if r["active"]] == ["builtin"]
    builtin = rows[0]
    assert builtin["source"] == "builtin" and builtin["available"] is True
    extra = next(r for r in rows if r["name"] == "extra")
    assert extra["available"] is True and extra["source"] == "user" and extra["error"] is None
    chronos = next(r for r in rows if r["name"] == "chronos")
    assert chronos["available"] is False  # not configured


def test_providers_selected_plugin_active(home: Path) -> None:
    write_user_plugin(home, "recorder", RECORDER)
    write_user_plugin(home, "chronos", RECORDER)  # shadowed by the bundled one
    write_config(home, {"cron": {"provider": "recorder"}})
    rows = CronService.from_home(home).providers()
    assert [(r["name"], r["source"]) for r in rows if r["active"]] == [("recorder", "user")]
    shadowed = next(r for r in rows if r["name"] == "chronos" and r["source"] == "user")
    assert shadowed["shadowed_by"] == "bundled" and shadowed["available"] is None


def test_providers_after_a_fallback(home: Path) -> None:
    write_config(home, {"cron": {"provider": "chronos"}})
    service = CronService.from_home(home)
    rows = service.providers()
    assert [r["name"] for r in rows if r["active"]] == ["builtin"]
    chronos = next(r for r in rows if r["name"] == "chronos")
    assert chronos["available"] is False and "not available" in chronos["error"]
    assert service.status()["fallback_reason"] == service.scheduler.fallback_reason


def test_start_in_thread_with_an_external_provider_returns_its_summary(home: Path) -> None:
    write_user_plugin(home, "recorder", RECORDER)
    write_config(home, {"cron": {"provider": "recorder"}})
    service = CronService.from_home(home)
    service.add_job("every 1h", command=["true"])
    handle = service.start_in_thread()
    handle.thread.join(20)
    assert not handle.running and handle.stop() == {"armed": 1}


def test_register_plugin_after_construction(home: Path, clock: FakeClock) -> None:
    service = CronService.from_home(home, clock=clock)
    job = service.add_job("every 1h", prompt="hello")
    assert service.run_now(job["id"]).status == "error"  # no runner yet
    runner = PromptRunner()
    service.register_plugin(runner, name="agent")
    assert service.run_now(job["id"]).status == "ok"

    class Broken:
        @hookimpl
        def run_jobz(self, ctx: Any, job: Any) -> None:
            return None

    with pytest.raises(PluginError, match="run_jobz"):
        service.register_plugin(Broken())


def test_plugins_passed_to_from_home(home: Path, clock: FakeClock) -> None:
    runner = PromptRunner()
    service = CronService.from_home(home, clock=clock, plugins=[runner])
    job = service.add_job("every 1h", prompt="ok")
    assert service.run_now(job["id"]).status == "ok"
    assert runner.count(job["id"]) == 1


def test_tick_runs_due_jobs(home: Path, clock: FakeClock) -> None:
    service = CronService.from_home(home, clock=clock)
    job = service.add_job("every 10s", command=["true"])
    assert service.tick()["results"] == []
    clock.advance(10)
    (result,) = service.tick()["results"]
    assert result["job_id"] == job["id"] and result["status"] == "ok"
