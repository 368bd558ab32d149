"""The Chronos provider hooks, with NAS mocked by pytest-httpx (the seed notes' 13 behaviours
and more)."""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import hermes_cron_builtin_plugins.chronos as chronos
import httpx
import pytest
from helpers.chronoskit import (
    ACCESS_TOKEN,
    CALLBACK,
    PORTAL,
    chronos_config,
    make_ctx,
    mock_nas,
    nas_calls,
    write_auth,
    write_config,
)

from hermes_cron import hookimpl as hermes_hookimpl
from hermes_cron.clock import FakeClock
from hermes_cron.context import CronContext
from hermes_cron.schedules import parse_schedule
from hermes_cron.timeutil import parse_iso, to_iso

PROVISION = "/api/agent-cron/provision"
CANCEL = "/api/agent-cron/cancel"
LIST = "/api/agent-cron/list"


def add_job(ctx: CronContext, text: str, command: Any = None, **kwargs: Any) -> dict:
    schedule = parse_schedule(text, now=ctx.clock.now())
    return ctx.store.add(schedule, command=command or ["true"], **kwargs)


def fire(ctx: CronContext, job_id: str, fire_at: str) -> Any:
    return ctx.hook.fire_due(ctx=ctx, job_id=job_id, fire_at=fire_at)


def warm_up(ctx: CronContext, httpx_mock: Any, armed: Any = None) -> None:
    """Reconcile once (cold: one list) and forget the requests it made."""
    chronos.chronos_state(ctx).reconcile()
    httpx_mock.reset()
    mock_nas(httpx_mock, armed=armed)


# -- is_available --------------------------------------------------------------------


def test_is_available_off_without_config(home: Path) -> None:
    write_auth(home)
    assert chronos.is_available({"cron": {"chronos": {}}}) is False
    assert chronos.is_available(chronos_config(portal_url="")) is False
    assert chronos.is_available(chronos_config(callback_url="")) is False


def test_is_available_off_without_a_stored_token(home: Path) -> None:
    config = chronos_config()
    assert chronos.is_available(config) is False  # no auth.json at all
    write_auth(home, access_token=None)
    assert chronos.is_available(config) is False
    write_auth(home, access_token="")
    assert chronos.is_available(config) is False


def test_is_available_on_with_config(chronos_home: Path) -> None:
    assert chronos.is_available(chronos_config()) is True


def test_is_available_makes_no_network_call(home: Path, no_sockets: None, httpx_mock: Any) -> None:
    # An expired token must not tempt it into refreshing: availability is local only.
    write_auth(home, expires_in=-3600)
    assert chronos.is_available(chronos_config()) is True
    assert httpx_mock.get_requests() == []


def test_is_available_reports_a_corrupt_auth_file(home: Path) -> None:
    (home / "auth.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(Exception, match="auth.json"):
        chronos.is_available(chronos_config())


# -- arming one job --------------------------------------------------------------------


def test_arm_payload_with_a_sub_minute_fire_at(ctx: CronContext, httpx_mock: Any) -> None:
    mock_nas(httpx_mock)
    job = add_job(ctx, "+45s")
    summary = chronos.on_jobs_changed(ctx, [job["id"]])
    assert summary["armed"] == 1 and summary["errors"] == []
    (request,) = httpx_mock.get_requests()
    assert request.method == "POST" and str(request.url) == PORTAL + PROVISION
    assert request.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    fire_at = "2026-03-02T12:00:45+00:00"  # 45 s after the fake now: no minute rounding
    assert json.loads(request.content) == {
        "job_id": job["id"],
        "fire_at": fire_at,
        "agent_callback_url": CALLBACK,
        "dedup_key": f"{job['id']}:{fire_at}",
    }


def test_arm_is_a_no_op_without_a_next_run(ctx: CronContext, httpx_mock: Any) -> None:
    mock_nas(httpx_mock)
    job = add_job(ctx, "every 30s")
    ctx.store.pause(job["id"])  # paused: no next run to arm
    warm_up(ctx, httpx_mock)
    summary = chronos.on_jobs_changed(ctx, [job["id"]])
    assert nas_calls(httpx_mock) == []
    assert summary["armed"] == 0 and summary["unchanged"] == 1


def test_cold_change_without_a_next_run_only_cancels(ctx: CronContext, httpx_mock: Any) -> None:
    # A fresh process (e.g. `hermes-cron pause`) does not know what NAS holds:
    # it clears a possible arm, never provisions.
    mock_nas(httpx_mock)
    job = add_job(ctx, "every 30s")
    ctx.store.pause(job["id"])
    chronos.on_jobs_changed(ctx, [job["id"]])
    assert nas_calls(httpx_mock) == [("POST", CANCEL, {"job_id": job["id"]})]


# -- reconcile ---------------------------------------------------------------------------


def test_reconcile_arms_all(ctx: CronContext, httpx_mock: Any) -> None:
    mock_nas(httpx_mock)
    jobs = [add_job(ctx, text) for text in ("every 30s", "+2h", "*/5 * * * *")]
    summary = chronos.reconcile(ctx)
    assert summary["armed"] == 3 and summary["listed"] is True and summary["errors"] == []
    calls = nas_calls(httpx_mock)
    assert calls[0] == ("GET", LIST, None)
    provisioned = {body["job_id"]: body["fire_at"] for _m, path, body in calls[1:]}
    assert provisioned == {j["id"]: to_iso(parse_iso(j["next_run_at"])) for j in jobs}
    assert len(calls) == 4


def test_reconcile_cancels_orphans(ctx: CronContext, httpx_mock: Any, clock: FakeClock) -> None:
    done = add_job(ctx, "+30s")
    clock.set(parse_iso(done["next_run_at"]))
    mock_nas(httpx_mock)
    assert ctx.run_one_job(done["id"], done["next_run_at"]).claim == "won"
    assert ctx.store.get(done["id"])["state"] == "completed"
    httpx_mock.reset()
    disabled = add_job(ctx, "every 1h")
    ctx.store.update(disabled["id"], enabled=False)
    live = add_job(ctx, "every 1h")
    armed = [
        {"job_id": "removed-job", "fire_at": "2026-03-02T13:00:00+00:00", "schedule_id": "a"},
        {"job_id": done["id"], "fire_at": done["next_run_at"], "schedule_id": "b"},
        {"job_id": disabled["id"], "fire_at": disabled["next_run_at"], "schedule_id": "c"},
        {"job_id": live["id"], "fire_at": live["next_run_at"], "schedule_id": "d"},
    ]
    mock_nas(httpx_mock, armed=armed)
    summary = chronos.reconcile(ctx)
    cancelled = {body["job_id"] for _m, path, body in nas_calls(httpx_mock) if path == CANCEL}
    assert cancelled == {"removed-job", done["id"], disabled["id"]}
    assert not [c for c in nas_calls(httpx_mock) if c[1] == PROVISION]
    assert summary["cancelled"] == 3 and summary["armed"] == 0


def test_reconcile_never_arms_a_paused_job(ctx: CronContext, httpx_mock: Any) -> None:
    armed_paused = add_job(ctx, "every 1h")
    quiet_paused = add_job(ctx, "every 1h")
    armed = [{"job_id": armed_paused["id"], "fire_at": armed_paused["next_run_at"]}]
    ctx.store.pause(armed_paused["id"])
    ctx.store.pause(quiet_paused["id"])
    mock_nas(httpx_mock, armed=armed)
    chronos.reconcile(ctx)
    calls = nas_calls(httpx_mock)
    assert calls == [("GET", LIST, None), ("POST", CANCEL, {"job_id": armed_paused["id"]})]


def test_reconcile_skips_what_is_already_armed(ctx: CronContext, httpx_mock: Any) -> None:
    right = add_job(ctx, "every 1h")
    moved = add_job(ctx, "every 2h")
    # NAS may spell the same instant differently ("Z"): still the same time.
    same_time = parse_iso(right["next_run_at"]).strftime("%Y-%m-%dT%H:%M:%SZ")
    armed = [
        {"job_id": right["id"], "fire_at": same_time, "schedule_id": "r"},
        {"job_id": moved["id"], "fire_at": "2026-03-02T12:30:00+00:00", "schedule_id": "m"},
    ]
    mock_nas(httpx_mock, armed=armed)
    summary = chronos.reconcile(ctx)
    provisions = [body for _m, path, body in nas_calls(httpx_mock) if path == PROVISION]
    assert [p["job_id"] for p in provisions] == [moved["id"]]
    assert provisions[0]["fire_at"] == to_iso(parse_iso(moved["next_run_at"]))
    assert summary["unchanged"] == 1 and summary["armed"] == 1
    # A second reconcile in the same process changes nothing and asks nothing.
    httpx_mock.reset()
    mock_nas(httpx_mock)
    again = chronos.reconcile(ctx)
    assert nas_calls(httpx_mock) == [] and again["unchanged"] == 2


def test_warm_change_costs_one_request_and_no_list(ctx: CronContext, httpx_mock: Any) -> None:
    mock_nas(httpx_mock)
    jobs = [add_job(ctx, "every 1h") for _ in range(20)]
    warm_up(ctx, httpx_mock, armed=None)
    ctx.store.pause(jobs[3]["id"])
    summary = chronos.on_jobs_changed(ctx, [jobs[3]["id"]])
    assert nas_calls(httpx_mock) == [("POST", CANCEL, {"job_id": jobs[3]["id"]})]
    assert summary["cancelled"] == 1
    # And a full reconcile afterwards: nothing left to do.
    httpx_mock.reset()
    mock_nas(httpx_mock)
    chronos.reconcile(ctx)
    assert nas_calls(httpx_mock) == []


def test_on_jobs_changed_tolerates_unknown_and_removed_ids(
    ctx: CronContext, httpx_mock: Any
) -> None:
    mock_nas(httpx_mock)
    job = add_job(ctx, "every 1h")
    chronos.on_jobs_changed(ctx, [job["id"]])
    ctx.store.remove(job["id"])
    httpx_mock.reset()
    mock_nas(httpx_mock)
    summary = chronos.on_jobs_changed(ctx, [job["id"], job["id"], "never-existed"])
    assert nas_calls(httpx_mock) == [
        ("POST", CANCEL, {"job_id": job["id"]}),
        ("POST", CANCEL, {"job_id": "never-existed"}),
    ]
    assert summary["errors"] == []


def test_start_reconciles_and_returns_a_summary(ctx: CronContext, httpx_mock: Any) -> None:
    import threading

    mock_nas(httpx_mock)
    add_job(ctx, "every 1h")
    summary = chronos.start(ctx, threading.Event())
    assert summary is not None
    assert summary["provider"] == "chronos" and summary["started"] is True
    assert summary["armed"] == 1


# -- fire_due ------------------------------------------------------------------------------


def test_fire_due_arms_the_next_one_shot_before_the_run(
    ctx: CronContext, httpx_mock: Any, tmp_path: Path, clock: FakeClock
) -> None:
    marker = tmp_path / "ran"
    seen_at_provision = []
    mock_nas(httpx_mock, on_provision=lambda request: seen_at_provision.append(marker.exists()))
    command = [sys.executable, "-c", f"open({str(marker)!r}, 'w').write('ran')"]
    job = add_job(ctx, "every 60s", command=command)
    chronos.chronos_state(ctx).reconcile()
    httpx_mock.reset()
    seen_at_provision.clear()
    mock_nas(httpx_mock, on_provision=lambda request: seen_at_provision.append(marker.exists()))
    first = job["next_run_at"]
    clock.set(parse_iso(first))
    result = fire(ctx, job["id"], first)
    assert result.claim == "won" and result.status == "ok"
    assert marker.exists()
    next_at = to_iso(parse_iso(first) + timedelta(seconds=60))
    assert nas_calls(httpx_mock) == [
        (
            "POST",
            PROVISION,
            {
                "job_id": job["id"],
                "fire_at": next_at,
                "agent_callback_url": CALLBACK,
                "dedup_key": f"{job['id']}:{next_at}",
            },
        )
    ]
    # Armed once the claim advanced next_run_at, before the command ran.
    assert seen_at_provision == [False]


def test_fire_due_no_re_arm_when_the_job_is_gone(
    ctx: CronContext, httpx_mock: Any, clock: FakeClock
) -> None:
    mock_nas(httpx_mock)
    job = add_job(ctx, "every 60s")
    warm_up(ctx, httpx_mock)
    ctx.store.remove(job["id"])
    clock.set(parse_iso(job["next_run_at"]))
    result = fire(ctx, job["id"], job["next_run_at"])
    assert result.claim == "gone"
    assert nas_calls(httpx_mock) == []


def test_fire_due_no_re_arm_after_the_last_run(
    ctx: CronContext, httpx_mock: Any, clock: FakeClock
) -> None:
    mock_nas(httpx_mock)
    once = add_job(ctx, "+30s")
    twice = add_job(ctx, "every 60s", repeat=1)
    for job in (once, twice):
        httpx_mock.reset()
        mock_nas(httpx_mock)
        chronos.on_jobs_changed(ctx, [job["id"]])
        httpx_mock.reset()
        mock_nas(httpx_mock)
        clock.set(parse_iso(job["next_run_at"]))
        result = fire(ctx, job["id"], job["next_run_at"])
        assert result.claim == "won"
        assert ctx.store.get(job["id"])["state"] == "completed"
        assert nas_calls(httpx_mock) == []  # nothing to arm, and NAS's arm is already spent


def test_fire_due_no_re_arm_when_the_claim_is_lost(
    ctx: CronContext, httpx_mock: Any, clock: FakeClock
) -> None:
    mock_nas(httpx_mock)
    job = add_job(ctx, "every 60s")
    warm_up(ctx, httpx_mock)
    first = job["next_run_at"]
    clock.set(parse_iso(first))
    assert fire(ctx, job["id"], first).claim == "won"
    httpx_mock.reset()
    mock_nas(httpx_mock)
    # A duplicate delivery of the same fire, and a fire for a time that is not due.
    assert fire(ctx, job["id"], first).claim == "lost"
    stale = to_iso(parse_iso(first) - timedelta(hours=1))
    assert fire(ctx, job["id"], stale).claim == "lost"
    assert nas_calls(httpx_mock) == []


def test_fire_due_in_a_cold_process_arms_the_next(
    ctx: CronContext, httpx_mock: Any, clock: FakeClock
) -> None:
    # Scale to zero: the process woke up for this fire and knows nothing yet.
    mock_nas(httpx_mock)
    job = add_job(ctx, "every 60s")
    clock.set(parse_iso(job["next_run_at"]))
    assert fire(ctx, job["id"], job["next_run_at"]).claim == "won"
    (call,) = nas_calls(httpx_mock)
    assert call[1] == PROVISION
    assert call[2]["fire_at"] == to_iso(parse_iso(job["next_run_at"]) + timedelta(seconds=60))


def test_fire_due_arms_after_the_run_without_claim_listeners(
    chronos_home: Path, clock: FakeClock, httpx_mock: Any
) -> None:
    ctx = make_ctx(chronos_home, clock, chronos_config(), listeners=False)
    mock_nas(httpx_mock)
    job = add_job(ctx, "every 60s")
    warm_up(ctx, httpx_mock)
    clock.set(parse_iso(job["next_run_at"]))
    assert fire(ctx, job["id"], job["next_run_at"]).claim == "won"
    assert [c[1] for c in nas_calls(httpx_mock)] == [PROVISION]
    chronos.chronos_state(ctx).client.close()


def test_fire_due_retries_the_arm_after_the_run_when_nas_failed(
    ctx: CronContext, httpx_mock: Any, clock: FakeClock
) -> None:
    mock_nas(httpx_mock)
    job = add_job(ctx, "every 60s")
    warm_up(ctx, httpx_mock)
    httpx_mock.reset()
    # The arm made right after the claim fails (NAS down for 3 attempts), then works.
    for _ in range(3):
        httpx_mock.add_exception(httpx.ConnectError("down"), url=PORTAL + PROVISION)
    mock_nas(httpx_mock)
    clock.set(parse_iso(job["next_run_at"]))
    result = fire(ctx, job["id"], job["next_run_at"])
    assert result.claim == "won"
    paths = [c[1] for c in nas_calls(httpx_mock)]
    assert paths == [PROVISION] * 4
    state = chronos.chronos_state(ctx)
    assert state.known(job["id"]) == to_iso(parse_iso(job["next_run_at"]) + timedelta(seconds=60))


def test_manual_run_leaves_the_arm_alone(
    ctx: CronContext, httpx_mock: Any, clock: FakeClock
) -> None:
    mock_nas(httpx_mock)
    job = add_job(ctx, "every 1h")
    warm_up(ctx, httpx_mock)
    result = ctx.run_one_job(job["id"], None, manual=True)
    assert result.claim == "won"
    assert nas_calls(httpx_mock) == []


def test_missed_fire_re_arms_the_next(ctx: CronContext, httpx_mock: Any, clock: FakeClock) -> None:
    # NAS delivered very late (beyond misfire_grace): the claim records a miss and
    # advances the job; the next one-shot must still be armed.
    mock_nas(httpx_mock)
    job = add_job(ctx, "every 1h", misfire_grace=60)
    warm_up(ctx, httpx_mock)
    clock.set(parse_iso(job["next_run_at"]) + timedelta(minutes=10))
    result = fire(ctx, job["id"], job["next_run_at"])
    assert result.claim == "missed"
    calls = nas_calls(httpx_mock)
    assert [c[1] for c in calls] == [PROVISION]
    assert calls[0][2]["fire_at"] == ctx.store.get(job["id"])["next_run_at"]


# -- NAS trouble -----------------------------------------------------------------------------


def test_start_is_bounded_and_heals_when_nas_is_down(ctx: CronContext, httpx_mock: Any) -> None:
    import threading
    import time

    for _ in range(3):  # one list, tried 3 times (retries: 2), then the pass stops
        httpx_mock.add_exception(httpx.ConnectError("refused"), url=PORTAL + LIST)
    jobs = [add_job(ctx, "every 1h") for _ in range(5)]
    began = time.monotonic()
    summary = chronos.start(ctx, threading.Event())
    assert time.monotonic() - began < 10
    assert summary["deferred"] is True and summary["armed"] == 0
    assert "list" in summary["errors"][0] and "ConnectError" in summary["errors"][0]
    assert len(httpx_mock.get_requests()) == 3
    # NAS is back: the next reconcile lists and arms everything.
    httpx_mock.reset()
    mock_nas(httpx_mock)
    healed = chronos.reconcile(ctx)
    assert healed["errors"] == [] and healed["armed"] == len(jobs)


def test_reconcile_stops_at_a_5xx_and_heals_later(ctx: CronContext, httpx_mock: Any) -> None:
    jobs = [add_job(ctx, "every 1h") for _ in range(4)]
    httpx_mock.add_response(url=PORTAL + LIST, json={"armed": []})
    for _ in range(3):
        httpx_mock.add_response(url=PORTAL + PROVISION, status_code=503, json={"error": "busy"})
    summary = chronos.reconcile(ctx)
    assert summary["deferred"] is True
    assert "HTTP 503" in summary["errors"][0] and "provision" in summary["errors"][0]
    assert len(httpx_mock.get_requests()) == 4  # the list + 3 attempts, not 3 per job
    httpx_mock.reset()
    mock_nas(httpx_mock, armed=[])
    healed = chronos.reconcile(ctx)
    # After trouble the state is re-listed, and every job gets armed.
    assert healed["listed"] is True and healed["armed"] == len(jobs)


def test_a_4xx_for_one_job_does_not_stop_the_others(ctx: CronContext, httpx_mock: Any) -> None:
    bad, good = add_job(ctx, "every 1h"), add_job(ctx, "every 2h")
    httpx_mock.add_response(url=PORTAL + LIST, json={"armed": []})

    def provision(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if body["job_id"] == bad["id"]:
            return httpx.Response(422, json={"error": "fire_at too far ahead"})
        return httpx.Response(200, json={"schedule_id": "ok"})

    httpx_mock.add_callback(provision, url=PORTAL + PROVISION, is_reusable=True)
    summary = chronos.reconcile(ctx)
    assert summary["armed"] == 1 and summary["deferred"] is False
    (error,) = summary["errors"]
    assert "HTTP 422" in error and bad["id"] in error and "fire_at too far ahead" in error
    state = chronos.chronos_state(ctx)
    assert state.known(bad["id"]) == chronos.UNKNOWN
    assert state.known(good["id"]) == to_iso(parse_iso(good["next_run_at"]))


def test_start_with_an_unusable_login_reports_it(
    home: Path, clock: FakeClock, httpx_mock: Any
) -> None:
    write_config(home, chronos_config())
    write_auth(home, expires_in=-60, refresh_token=None)  # expired, cannot refresh
    ctx = make_ctx(home, clock, chronos_config())
    import threading

    summary = chronos.start(ctx, threading.Event())
    assert summary["deferred"] is True
    assert "refresh_token" in summary["errors"][0]
    assert httpx_mock.get_requests() == []
    chronos.chronos_state(ctx).client.close()


def test_a_401_from_nas_refreshes_the_login_and_retries_once(
    ctx: CronContext, httpx_mock: Any, chronos_home: Path
) -> None:
    job = add_job(ctx, "every 1h")
    httpx_mock.add_response(url=PORTAL + PROVISION, status_code=401)
    httpx_mock.add_response(
        method="POST",
        url=PORTAL + "/api/oauth/token",
        json={"access_token": "access-2", "refresh_token": "refresh-2", "expires_in": 3600},
    )
    httpx_mock.add_response(url=PORTAL + PROVISION, json={"schedule_id": "s"})
    summary = chronos.on_jobs_changed(ctx, [job["id"]])
    assert summary["armed"] == 1 and summary["errors"] == []
    first, refresh, retry = httpx_mock.get_requests()
    assert first.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert refresh.url.path == "/api/oauth/token"
    assert retry.headers["Authorization"] == "Bearer access-2"
    stored = json.loads((chronos_home / "auth.json").read_text())["providers"]["nous"]
    assert stored["access_token"] == "access-2" and stored["refresh_token"] == "refresh-2"


class _CrashingRunner:
    """A run_job that dies the way a killed process would: nothing after it runs."""

    @hermes_hookimpl
    def run_job(self, ctx: Any, job: Any) -> Any:
        raise SystemExit("the process died mid-run")


def test_a_crash_during_the_run_never_loses_the_schedule(
    chronos_home: Path, clock: FakeClock, httpx_mock: Any
) -> None:
    ctx = make_ctx(chronos_home, clock, chronos_config(), extra_plugins=[_CrashingRunner()])
    mock_nas(httpx_mock)
    job = add_job(ctx, "every 60s")
    warm_up(ctx, httpx_mock)
    clock.set(parse_iso(job["next_run_at"]))
    with pytest.raises(SystemExit):
        fire(ctx, job["id"], job["next_run_at"])
    # The next one-shot was armed before the run began, so NAS will wake us again.
    (call,) = nas_calls(httpx_mock)
    assert call[1] == PROVISION
    assert call[2]["fire_at"] == to_iso(parse_iso(job["next_run_at"]) + timedelta(seconds=60))
    chronos.chronos_state(ctx).client.close()
