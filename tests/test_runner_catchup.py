"""Missed runs after downtime: one coalesced catch-up per job, misses recorded, O(1), on
every store backend."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Callable, Iterator, List

import pytest
from helpers.storekit import fire_time, make_ctx, sched

from hermes_cron.clock import FakeClock
from hermes_cron.errors import StoreError, StoreUnavailableError
from hermes_cron.paths import HomePaths
from hermes_cron.runner import RunResult, execute_claim, run_one_job
from hermes_cron.schedules import Schedule
from hermes_cron.store import INTERRUPTED, MISSED, WON
from hermes_cron.timeutil import parse_iso, to_iso


@pytest.fixture
def new_ctx(
    paths: HomePaths, clock: FakeClock, store_kind: str, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Any]]:
    """``new_ctx(**store_kwargs)``: a CronContext on a store of ``store_kind``."""
    url = request.getfixturevalue("pg_url") if store_kind == "postgresql" else None
    made: List[Any] = []

    def make(**kwargs: Any) -> Any:
        ctx = make_ctx(paths, clock, url=url, **kwargs)
        made.append(ctx.store)
        return ctx

    yield make
    for store in made:
        store.close()


def _fire_everything_due(ctx: Any) -> List[RunResult]:
    """What a provider does: fire each due job once (through the shared body)."""
    return [run_one_job(ctx, job_id, to_iso(at)) for job_id, at in ctx.store.due(ctx.clock.now())]


def test_three_day_downtime_runs_each_job_once(
    new_ctx: Callable[..., Any], clock: FakeClock
) -> None:
    ctx = new_ctx()
    fast = ctx.store.add(sched("every 1s", clock), command=["true"], name="fast")
    ten = ctx.store.add(sched("every 10m", clock), command=["true"], name="ten")
    hourly = ctx.store.add(sched("0 * * * *", clock), command=["true"], name="hourly")
    firsts = {j["id"]: fire_time(ctx.store, j["id"]) for j in (fast, ten, hourly)}

    clock.advance(3 * 86400 + 30)  # the machine was off for three days
    results = _fire_everything_due(ctx)
    assert sorted(r.job_id for r in results) == sorted(firsts)
    assert all(r.claim == WON and r.status == "ok" for r in results)
    assert _fire_everything_due(ctx) == []  # no burst: nothing else is due now

    rows = {r["job_id"]: r for r in ctx.ledger.read()}
    assert len(ctx.ledger.read()) == 3
    for job_id, first in firsts.items():
        row = rows[job_id]
        assert row["coalesced_from"] == to_iso(first)  # the first missed time folded in
        assert "catch-up" in row["note"]
        # The run is for the latest missed time, and the schedule resumes after now.
        assert parse_iso(row["fire_at"]) <= clock.now()
        assert fire_time(ctx.store, job_id) > clock.now()
    assert rows[fast["id"]]["fire_at"] == to_iso(clock.now())
    assert rows[ten["id"]]["fire_at"] == to_iso(clock.now().replace(minute=0, second=0))
    assert "259230 fire times" in rows[fast["id"]]["note"]


def test_beyond_grace_is_missed_and_the_schedule_resumes(
    new_ctx: Callable[..., Any], clock: FakeClock
) -> None:
    ctx = new_ctx(misfire_grace=3600)
    daily = ctx.store.add(sched("0 9 * * *", clock), command=["true"], name="daily")
    strict = ctx.store.add(sched("every 10m", clock), command=["true"], misfire_grace=60)
    once = ctx.store.add(sched("+2h", clock), command=["true"])

    clock.set(clock.now() + timedelta(days=3, hours=1, minutes=3))  # 13:03 UTC, 3 days on
    results = {r.job_id: r for r in _fire_everything_due(ctx)}
    assert results[daily["id"]].claim == MISSED  # 09:00 was 4 h ago: beyond the hour of grace
    assert results[strict["id"]].claim == MISSED  # 13:00 was 3 min ago, grace is 60 s
    assert results[once["id"]].claim == MISSED
    assert _fire_everything_due(ctx) == []

    rows = {r["job_id"]: r for r in ctx.ledger.read()}
    assert {r["status"] for r in rows.values()} == {"missed"}
    assert "late" in rows[daily["id"]]["error"] and rows[daily["id"]]["output"] is None
    assert ctx.store.get(once["id"])["state"] == "completed"
    assert ctx.store.get(once["id"])["last_status"] == "missed"

    # The recurring ones were never stopped: their next fires run normally.
    record = ctx.store.get(daily["id"])
    assert record["state"] == "scheduled" and record["last_status"] == "missed"
    clock.set(fire_time(ctx.store, daily["id"]))
    assert [r.status for r in _fire_everything_due(ctx) if r.job_id == daily["id"]] == ["ok"]
    clock.set(fire_time(ctx.store, strict["id"]))
    assert run_one_job(ctx, strict["id"], to_iso(clock.now())).status == "ok"


def test_catch_up_at_start_records_misses_in_one_write(
    new_ctx: Callable[..., Any], clock: FakeClock
) -> None:
    ctx = new_ctx(misfire_grace=600)
    jobs = [ctx.store.add(sched("every 1h", clock), command=["true"]) for _ in range(3)]
    within = ctx.store.add(sched("every 1h", clock), command=["true"], misfire_grace=7200)
    clock.advance(3600 + 1800)  # 30 min after the fire: beyond 600 s, within 7200 s
    claims = ctx.store.catch_up()
    assert sorted(c.job_id for c in claims) == sorted(j["id"] for j in jobs)
    assert all(c.outcome == MISSED for c in claims)
    for claim in claims:
        execute_claim(ctx, claim)
    assert len(ctx.ledger.read()) == 3
    # The one within its own grace is left due, for the caller to claim and run.
    assert [job_id for job_id, _ in ctx.store.due(clock.now())] == [within["id"]]
    assert ctx.store.catch_up() == []  # idempotent


def test_catch_up_costs_o1_per_job(
    new_ctx: Callable[..., Any], clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = new_ctx()
    job = ctx.store.add(sched("every 1s", clock), command=["true"])
    cron = ctx.store.add(sched("* * * * *", clock), command=["true"])
    calls = {"next_after": 0, "latest_at_or_before": 0}
    for name in calls:
        real = getattr(Schedule, name)

        def counting(self: Schedule, when: Any, _real: Any = real, _name: str = name) -> Any:
            calls[_name] += 1
            return _real(self, when)

        monkeypatch.setattr(Schedule, name, counting)
    clock.advance(3 * 86400)  # 259,200 missed fires of the 1 s job
    won = ctx.store.claim(job["id"], parse_iso(job["next_run_at"]), "me")
    won_cron = ctx.store.claim(cron["id"], parse_iso(cron["next_run_at"]), "me")
    assert won.outcome == WON and won.fire_at == clock.now()
    assert won_cron.outcome == WON and won_cron.fire_at == clock.now().replace(second=0)
    # Enumerating the 259,200 misses would call next_after that many times.
    assert calls["next_after"] <= 2 and calls["latest_at_or_before"] <= 4
    # And a miss beyond grace is O(1) too: a 2-hourly job with 60 s of grace, a month late.
    slow = ctx.store.add(sched("every 2h", clock), command=["true"], misfire_grace=60)
    for key in calls:
        calls[key] = 0
    clock.advance(30 * 86400 + 3600)
    missed = ctx.store.claim(slow["id"], parse_iso(slow["next_run_at"]), "me")
    assert missed.outcome == MISSED
    assert calls["next_after"] <= 1 and calls["latest_at_or_before"] <= 1
    assert fire_time(ctx.store, slow["id"]) == clock.now() + timedelta(hours=1)


def _fire_and_lose_the_finish(ctx: Any, job_id: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the due fire of ``job_id`` as a process that wrote the run's final row and
    then lost the store before ``finish_run`` landed (its claim stays behind)."""
    due = fire_time(ctx.store, job_id)
    ctx.clock.set(due)

    def lost(*args: Any, **kwargs: Any) -> Any:
        raise StoreError("the store went away")

    with monkeypatch.context() as patch:
        patch.setattr(ctx.store, "finish_run", lost)
        result = run_one_job(ctx, job_id, to_iso(due))
    assert result.claim == WON and result.status == "ok"
    assert ctx.store.get(job_id)["fire_claim"] is not None  # the finish never landed
    return to_iso(due)


def test_a_run_whose_finish_was_lost_is_recorded_once(
    new_ctx: Callable[..., Any], clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = new_ctx(claim_ttl=300)
    job = ctx.store.add(sched("every 10m", clock), command=["true"])
    fire_at = _fire_and_lose_the_finish(ctx, job["id"], monkeypatch)

    clock.advance(301)  # the claim goes stale: catch-up finds a run that never finished
    claims = ctx.store.catch_up()
    assert [(c.job_id, c.outcome) for c in claims] == [(job["id"], INTERRUPTED)]
    execute_claim(ctx, claims[0])

    rows = [r for r in ctx.ledger.read(job["id"]) if r["fire_at"] == fire_at]
    assert [r["status"] for r in rows] == ["ok"]  # its own row; no second "interrupted"
    record = ctx.store.get(job["id"])
    assert record["fire_claim"] is None
    # ...and the record says what the ledger says (status and list read it).
    assert (record["last_status"], record["last_error"]) == ("ok", None)
    assert record["last_run_at"] == rows[0]["started_at"]
    # A later run that died before writing anything still gets its error row.
    later = fire_time(ctx.store, job["id"])
    clock.set(later)
    assert ctx.store.claim(job["id"], later, "died").won
    clock.advance(301)
    for claim in ctx.store.catch_up():
        execute_claim(ctx, claim)
    rows = [r for r in ctx.ledger.read(job["id"]) if r["fire_at"] == to_iso(later)]
    assert [r["status"] for r in rows] == ["error"] and "never finished" in rows[0]["error"]
    record = ctx.store.get(job["id"])
    assert record["last_status"] == "error" and "interrupted" in record["last_error"]


def test_a_fire_taking_over_a_run_whose_finish_was_lost_keeps_that_run_s_end(
    new_ctx: Callable[..., Any], clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No catch-up (the Chronos path): the next fire finds the stale claim. The run it
    takes over had written its row, so the record takes that row's end at once."""
    ctx = new_ctx(claim_ttl=300)
    job = ctx.store.add(sched("every 10m", clock), command=["true"])
    fire_at = _fire_and_lose_the_finish(ctx, job["id"], monkeypatch)
    [ran] = [r for r in ctx.ledger.read(job["id"]) if r["fire_at"] == fire_at]
    later = fire_time(ctx.store, job["id"])
    clock.set(later)
    claim = ctx.store.claim(job["id"], later, "next")
    assert claim.won and claim.superseded is not None
    execute_claim(ctx, claim.superseded)  # what the shared body does before the run
    record = ctx.store.get(job["id"])
    assert (record["last_status"], record["last_run_at"]) == ("ok", ran["started_at"])
    assert record["fire_claim"]["owner"] == "next"  # the new run's claim is untouched
    rows = [r for r in ctx.ledger.read(job["id"]) if r["fire_at"] == fire_at]
    assert len(rows) == 1


def test_a_run_ending_while_the_store_is_down_is_recorded_when_it_returns(
    new_ctx: Callable[..., Any], clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = new_ctx(claim_ttl=300)
    job = ctx.store.add(sched("every 10m", clock), command=["true"])
    due = fire_time(ctx.store, job["id"])
    clock.set(due)
    failures: List[str] = []

    def down_twice(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if failures.count(name) < 2:
                failures.append(name)
                raise StoreUnavailableError("postgresql://db: connection refused")
            return real(*args, **kwargs)

        return call

    monkeypatch.setattr(ctx.ledger, "append", down_twice("row", ctx.ledger.append))
    monkeypatch.setattr(ctx.store, "finish_run", down_twice("end", ctx.store.finish_run))
    result = run_one_job(ctx, job["id"], to_iso(due))
    assert result.status == "ok" and result.error is None
    assert failures == ["row", "row", "end", "end"]
    record = ctx.store.get(job["id"])
    assert record["fire_claim"] is None and record["last_status"] == "ok"
    assert record["last_error"] is None
    assert [r["status"] for r in ctx.ledger.read(job["id"])] == ["ok"]  # not left "running"
