"""The job options of SPEC §4.1 in the store's rules: jitter, overlap queue/replace,
retries, until, and the run counter. Everything is a claim or a finish on a real
store, and what one store instance writes is read back by another (another process).

Every test runs on every store backend (``make_store``: ``jobs.json`` and PostgreSQL);
``other`` is a second store on the same jobs (another process).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any, Callable, Dict

import pytest
from helpers.storekit import fire_time, hand_edit, sched

from hermes_cron.clock import FakeClock
from hermes_cron.errors import UsageError
from hermes_cron.store import INTERRUPTED, LOST, MISSED, QUEUED, SKIPPED, WON, JobStore
from hermes_cron.store.rules import cancel_requested, delayed, jitter_offset
from hermes_cron.timeutil import parse_iso, to_iso


@pytest.fixture
def store(make_store: Callable[..., Any]) -> Any:
    return make_store(claim_ttl=300, misfire_grace=3600)


@pytest.fixture
def other(make_store: Callable[..., Any]) -> Any:
    """Another process's store on the same jobs."""
    return make_store(claim_ttl=300, misfire_grace=3600)


def dump(store: Any) -> str:
    """Everything the store holds, as it holds it (jobs.json's bytes, or every row)."""
    if isinstance(store, JobStore):
        return store.path.read_bytes().decode() if store.path.exists() else ""
    return json.dumps(store.export_records(), sort_keys=True)


def run_once(store: Any, job_id: str, clock: FakeClock, status: str = "ok") -> Any:
    """Claim the job's due fire at its time and finish it with ``status``."""
    due = fire_time(store, job_id)
    clock.set(max(due, clock.now()))
    claim = store.claim(job_id, due, "worker")
    assert claim.outcome == WON, claim
    store.finish_run(job_id, "worker", status=status, error=None, started_at=clock.now())
    return claim


# -- jitter ------------------------------------------------------------------------------


def test_jitter_offset_depends_on_the_job_and_the_scheduled_time_alone(clock: FakeClock) -> None:
    at = clock.now()
    first = jitter_offset("abc", at, 120)
    assert first == jitter_offset("abc", at, 120)  # any process, any time
    assert timedelta(0) <= first < timedelta(seconds=120)
    offsets = {jitter_offset("abc", at + timedelta(hours=h), 120) for h in range(50)}
    assert len(offsets) > 40  # a spread, not one constant delay
    assert all(timedelta(0) <= o < timedelta(seconds=120) for o in offsets)
    assert jitter_offset("abc", at, None) == jitter_offset("abc", at, 0) == timedelta(0)
    assert jitter_offset("abd", at, 120) != first or jitter_offset("abe", at, 120) != first


def test_a_jittered_job_fires_at_its_delayed_time_and_never_drifts(
    store: Any, other: Any, clock: FakeClock
) -> None:
    job = store.add(sched("every 1h", clock), command=["a"], jitter=600)
    scheduled = clock.now() + timedelta(hours=1)
    record = other.get(job["id"])
    assert parse_iso(record["next_scheduled_at"]) == scheduled
    due = parse_iso(record["next_run_at"])
    assert due == scheduled + jitter_offset(job["id"], scheduled, 600) == delayed(record, scheduled)
    assert due != scheduled
    for n in range(1, 6):
        clock.set(scheduled)
        if due > scheduled:
            assert store.claim(job["id"], scheduled, "w").outcome == LOST  # undelayed: not due
        claim = run_once(store, job["id"], clock)
        assert claim.fire_at == due  # fire_at is the delayed time
        record = other.get(job["id"])
        scheduled = scheduled + timedelta(hours=1)  # from the undelayed time: no drift
        assert parse_iso(record["next_scheduled_at"]) == scheduled, n
        due = parse_iso(record["next_run_at"])
        assert due == delayed(record, scheduled)
        assert due - scheduled < timedelta(seconds=600)


def test_a_jittered_catch_up_runs_once_and_the_next_fire_is_ahead(
    store: Any, clock: FakeClock
) -> None:
    job = store.add(sched("every 10m", clock), command=["a"], jitter=300)
    due = fire_time(store, job["id"])
    clock.advance(3600 + 30)  # down for an hour
    claim = store.claim(job["id"], due, "w")
    assert claim.outcome == WON and claim.missed_from == due
    assert claim.fire_at <= clock.now()
    record = store.get(job["id"])
    assert parse_iso(record["next_run_at"]) > clock.now()  # no second run due at once
    assert parse_iso(record["next_scheduled_at"]) <= parse_iso(record["next_run_at"])


def test_changing_the_jitter_re_times_the_pending_fire(store: Any, clock: FakeClock) -> None:
    job = store.add(sched("every 1h", clock), command=["a"])
    scheduled = fire_time(store, job["id"])
    edited = store.update(job["id"], jitter=900)
    assert parse_iso(edited["next_scheduled_at"]) == scheduled
    assert parse_iso(edited["next_run_at"]) == scheduled + jitter_offset(job["id"], scheduled, 900)
    cleared = store.update(job["id"], jitter=None)
    assert parse_iso(cleared["next_run_at"]) == scheduled


# -- retries ------------------------------------------------------------------------------


def test_a_failed_run_is_retried_with_doubling_delays_then_gives_up(
    store: Any, other: Any, clock: FakeClock
) -> None:
    job = store.add(sched("every 1d", clock), command=["a"], retries=2, retry_delay=30)
    first = fire_time(store, job["id"])
    next_fire = first + timedelta(days=1)
    run_once(store, job["id"], clock, status="error")
    record = other.get(job["id"])
    retry_at = clock.now() + timedelta(seconds=30)
    assert parse_iso(record["next_run_at"]) == retry_at
    assert record["pending_retry"]["attempt"] == 2
    assert record["state"] == "scheduled" and record["repeat"]["completed"] == 1
    assert "retry 1 of 2" in record["last_error"]

    clock.set(retry_at)
    claim = store.claim(job["id"], retry_at, "w")
    assert claim.outcome == WON and claim.attempt == 2
    assert claim.fire_at == first and claim.due == retry_at  # the fire it retries
    assert store.claim(job["id"], retry_at, "w2").outcome == LOST  # at most once
    assert parse_iso(claim.job["next_run_at"]) == next_fire
    assert claim.job["fire_claim"]["attempt"] == 2
    store.finish_run(job["id"], "w", status="timeout", error="slow", started_at=clock.now())

    retry_at = clock.now() + timedelta(seconds=60)  # doubled
    assert parse_iso(store.get(job["id"])["next_run_at"]) == retry_at
    clock.set(retry_at)
    claim = store.claim(job["id"], retry_at, "w")
    assert claim.attempt == 3
    store.finish_run(job["id"], "w", status="error", error="boom", started_at=clock.now())
    record = store.get(job["id"])
    assert record["pending_retry"] is None
    assert parse_iso(record["next_run_at"]) == next_fire
    assert "no retry left" in record["last_error"]
    assert record["repeat"]["completed"] == 1  # three attempts, one run


def test_a_retry_never_runs_at_or_after_the_next_fire(store: Any, clock: FakeClock) -> None:
    job = store.add(sched("every 1m", clock), command=["a"], retries=3, retry_delay=60)
    run_once(store, job["id"], clock, status="error")
    record = store.get(job["id"])
    assert record["pending_retry"] is None
    assert "the next fire" in record["last_error"] and "comes first" in record["last_error"]


def test_a_late_retry_is_superseded_by_the_next_fire(store: Any, clock: FakeClock) -> None:
    job = store.add(sched("every 1h", clock), command=["a"], retries=1, retry_delay=600)
    scheduled = fire_time(store, job["id"])
    run_once(store, job["id"], clock, status="error")
    retry_at = fire_time(store, job["id"])
    clock.set(scheduled + timedelta(hours=1, minutes=1))  # asleep until after the next fire
    claim = store.claim(job["id"], retry_at, "w")
    assert claim.outcome == MISSED and claim.attempt == 2 and "superseded" in claim.reason
    assert fire_time(store, job["id"]) == scheduled + timedelta(hours=1)


def test_a_one_shot_with_retries_completes_only_when_done(store: Any, clock: FakeClock) -> None:
    job = store.add(sched("+5m", clock), command=["a"], retries=1)
    assert job["repeat"] == {"times": 1, "completed": 0}
    run_once(store, job["id"], clock, status="error")
    record = store.get(job["id"])
    assert record["state"] == "scheduled" and record["pending_retry"]["attempt"] == 2
    assert parse_iso(record["next_run_at"]) == clock.now() + timedelta(seconds=30)  # default
    run_once(store, job["id"], clock, status="ok")
    record = store.get(job["id"])
    assert record["state"] == "completed" and record["next_run_at"] is None
    assert record["repeat"] == {"times": 1, "completed": 1}


def test_no_retry_after_until_nor_for_a_manual_run(store: Any, clock: FakeClock) -> None:
    until = to_iso(clock.now() + timedelta(minutes=1, seconds=10))
    job = store.add(sched("+1m", clock), command=["a"], retries=2, until=until)
    run_once(store, job["id"], clock, status="error")
    record = store.get(job["id"])
    assert record["state"] == "completed" and "after until" in record["last_error"]

    manual = store.add(sched("every 1h", clock), command=["a"], retries=2)
    assert store.claim_manual(manual["id"], "me").won
    store.finish_run(manual["id"], "me", status="error", error="x", started_at=clock.now())
    assert store.get(manual["id"])["pending_retry"] is None


# -- overlap: queue ----------------------------------------------------------------------------


def test_queue_keeps_one_fire_durably_and_runs_it_when_the_run_ends(
    store: Any, other: Any, clock: FakeClock
) -> None:
    job = store.add(sched("every 1m", clock), command=["a"], overlap="queue")
    first = fire_time(store, job["id"])
    clock.set(first)
    assert store.claim(job["id"], first, "A").won
    second = first + timedelta(minutes=1)
    clock.set(second)
    queued = store.claim(job["id"], second, "B")
    assert queued.outcome == QUEUED and queued.replacing is None
    record = other.get(job["id"])  # durable: another process (or a restart) sees it
    assert record["queued_fire"]["fire_at"] == to_iso(second)
    assert record["fire_claim"]["owner"] == "A"
    third = first + timedelta(minutes=2)
    assert fire_time(store, job["id"]) == third
    clock.set(third)
    assert store.claim(job["id"], third, "C").outcome == SKIPPED  # one fire waits, not two

    clock.advance(20)
    store.finish_run(job["id"], "A", status="ok", error=None, started_at=first)
    assert fire_time(store, job["id"]) == second  # due now: the queued fire
    claim = store.claim(job["id"], second, "D")
    assert claim.outcome == WON and claim.fire_at == second
    assert store.claim(job["id"], second, "E").outcome == LOST
    record = store.get(job["id"])
    assert record["queued_fire"] is None
    assert parse_iso(record["next_run_at"]) == first + timedelta(minutes=3)
    assert record["repeat"]["completed"] == 2  # two runs; the skip is not one


def test_a_crash_does_not_lose_the_queued_fire_nor_run_it_twice(
    store: Any, other: Any, clock: FakeClock
) -> None:
    job = store.add(sched("every 10m", clock), command=["a"], overlap="queue")
    first = fire_time(store, job["id"])
    clock.set(first)
    assert store.claim(job["id"], first, "A").won
    second = first + timedelta(minutes=10)
    clock.set(second - timedelta(minutes=1))
    assert store.renew_claim(job["id"], "A")  # A's run is alive and renews its claim
    clock.set(second)
    assert store.claim(job["id"], second, "B").outcome == QUEUED
    clock.advance(301)  # A died: its claim goes stale
    claims = other.catch_up()  # a restarted daemon
    assert [c.outcome for c in claims] == [INTERRUPTED]
    assert fire_time(store, job["id"]) == second  # the queued fire was kept
    assert store.claim(job["id"], second, "C").won
    clock.advance(301)  # ... and C dies too
    claims = other.catch_up()
    assert [c.outcome for c in claims] == [INTERRUPTED]
    record = store.get(job["id"])
    assert record["queued_fire"] is None
    assert parse_iso(record["next_run_at"]) > second  # not run a second time


# -- overlap: replace ----------------------------------------------------------------------------


def test_replace_asks_the_running_run_to_stop_then_runs_the_new_fire(
    store: Any, other: Any, clock: FakeClock
) -> None:
    job = store.add(sched("every 1m", clock), command=["a"], overlap="replace")
    first = fire_time(store, job["id"])
    clock.set(first)
    assert store.claim(job["id"], first, "A").won
    assert cancel_requested(store.get(job["id"]), "A") is None
    second = first + timedelta(minutes=1)
    clock.set(second)
    claim = store.claim(job["id"], second, "B")
    assert claim.outcome == QUEUED and claim.replacing == "A"
    record = other.get(job["id"])
    assert cancel_requested(record, "A") == {"at": to_iso(second), "fire_at": to_iso(second)}
    assert cancel_requested(record, "B") is None
    assert store.renew_claim(job["id"], "A")  # still A's until its run has stopped
    store.finish_run(job["id"], "A", status="cancelled", error="replaced", started_at=first)
    record = store.get(job["id"])
    assert record["last_status"] == "cancelled"
    assert parse_iso(record["next_run_at"]) == second
    assert store.claim(job["id"], second, "B").won


# -- until ----------------------------------------------------------------------------------------


def test_until_ends_the_job_after_its_last_fire(store: Any, clock: FakeClock) -> None:
    start = clock.now()
    until = start + timedelta(minutes=25)
    job = store.add(sched("every 10m", clock), command=["a"], until=to_iso(until))
    fires = []
    while store.get(job["id"])["state"] == "scheduled":
        fires.append(run_once(store, job["id"], clock).fire_at)
    assert fires == [start + timedelta(minutes=10), start + timedelta(minutes=20)]
    record = store.get(job["id"])
    assert record["state"] == "completed" and record["repeat"]["completed"] == 2


def test_until_before_the_first_fire_is_refused(store: Any, clock: FakeClock) -> None:
    with pytest.raises(UsageError, match="never fires before --until"):
        store.add(sched("every 1h", clock), command=["a"], until=to_iso(clock.now()))
    assert store.list_jobs(include_completed=True) == []


def test_moving_until_into_the_past_completes_the_job(store: Any, clock: FakeClock) -> None:
    job = store.add(sched("every 1h", clock), command=["a"])
    clock.advance(60)
    record = store.update(job["id"], until=to_iso(clock.now()))
    assert record["state"] == "completed" and record["next_run_at"] is None


# -- the run counter ---------------------------------------------------------------------------


def test_every_run_counts_and_a_one_shot_is_one_run(store: Any, clock: FakeClock) -> None:
    job = store.add(sched("every 1h", clock), command=["a"])
    for _ in range(3):
        run_once(store, job["id"], clock, status="error")
    assert store.get(job["id"])["repeat"] == {"times": None, "completed": 3}
    once = store.add(sched("+1m", clock), command=["a"])
    assert once["repeat"] == {"times": 1, "completed": 0}


def test_an_old_one_shot_without_times_still_runs_and_completes(
    store: Any, clock: FakeClock
) -> None:
    job = store.add(sched("+1m", clock), command=["a"])
    old = store.get(job["id"])
    for key in ("next_scheduled_at", "pending_retry", "queued_fire", "jitter", "overlap"):
        del old[key]
    old["repeat"] = {"times": None, "completed": 0}  # as records were written before
    hand_edit(store, job["id"], old)
    assert store.snapshot().quarantined == []
    run_once(store, job["id"], clock)
    record = store.get(job["id"])
    assert record["state"] == "completed" and record["repeat"]["completed"] == 1


# -- the record check ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("jitter", -1, "jitter"),
        ("jitter", "2m", "jitter"),
        ("timeout", 0, "timeout"),
        ("retry_delay", 0, "retry_delay"),
        ("overlap", "sometimes", "overlap"),
        ("retries", 1.5, "retries"),
        ("retries", 101, "retries"),
        ("cwd", "relative/dir", "cwd"),
        ("env", {"1BAD": "x"}, "env"),
        ("env", {"OK": 3}, "env.OK"),
        ("env", ["A=1"], "env"),
        ("until", "tomorrow", "until"),
        ("until", "2026-03-02T12:00", "until"),
        ("pending_retry", {"attempt": 1, "fire_at": "x", "due_at": "y"}, "pending_retry"),
        ("queued_fire", {"fire_at": 5}, "queued_fire"),
    ],
)
def test_a_hand_edited_bad_option_quarantines_the_record(
    store: Any, clock: FakeClock, field: str, value: Any, words: str
) -> None:
    bad = store.add(sched("every 1h", clock), command=["a"])
    good = store.add(sched("every 1h", clock), command=["b"])
    edited = {**store.get(bad["id"]), field: value}
    hand_edit(store, bad["id"], edited)
    [quarantined] = store.snapshot().quarantined
    assert quarantined.job_id == bad["id"] and words in quarantined.error
    clock.set(fire_time(store, good["id"]))
    assert store.claim(bad["id"], clock.now(), "w").outcome == "gone"
    assert store.claim(good["id"], clock.now(), "w").won  # the others keep running
    [kept] = [r for r in store.export_records() if r.get("id") == bad["id"]]
    assert kept == edited  # never rewritten


@pytest.mark.parametrize(
    "fields",
    [
        {"jitter": -5},
        {"overlap": "both"},
        {"retries": -1},
        {"cwd": "tmp"},
        {"env": {"A=B": "c"}},
        {"until": "soon"},
        {"schedule": "every 0s"},
        {"tz": "Mars/Olympus"},
    ],
)
def test_a_bad_update_writes_nothing(store: Any, clock: FakeClock, fields: Dict[str, Any]) -> None:
    job = store.add(sched("every 1h", clock), command=["a"])
    before = dump(store)
    with pytest.raises(UsageError):
        store.update(job["id"], **fields)
    assert dump(store) == before


# -- edit ----------------------------------------------------------------------------------------


def test_a_run_in_progress_keeps_its_claim_across_an_edit(store: Any, clock: FakeClock) -> None:
    job = store.add(sched("every 1h", clock), command=["a"])
    due = fire_time(store, job["id"])
    clock.set(due)
    assert store.claim(job["id"], due, "runner").won
    edited = store.update(job["id"], schedule="every 5m", name="renamed", retries=2)
    assert edited["fire_claim"]["owner"] == "runner"
    assert parse_iso(edited["next_run_at"]) == due + timedelta(minutes=5)
    clock.advance(30)
    done = store.finish_run(job["id"], "runner", status="ok", error=None, started_at=due)
    assert done is not None
    assert done["fire_claim"] is None and done["last_status"] == "ok"
    assert done["name"] == "renamed" and done["schedule"]["text"] == "every 5m"
    assert parse_iso(done["next_run_at"]) == due + timedelta(minutes=5)


def test_a_new_zone_re_zones_the_schedule(store: Any, clock: FakeClock) -> None:
    cron = store.add(sched("0 9 * * *", clock, tz="UTC"), command=["a"])
    edited = store.update(cron["id"], tz="Asia/Tokyo")
    assert edited["schedule"]["tz"] == "Asia/Tokyo" and edited["schedule"]["expr"] == "0 9 * * *"
    assert edited["next_run_at"] == "2026-03-03T00:00:00+00:00"  # 09:00 in Tokyo
    interval = store.add(sched("every 7m", clock, tz="UTC"), command=["a"])
    clock.advance(60)
    moved = store.update(interval["id"], tz="Europe/Paris")
    assert moved["schedule"]["anchor"] == interval["schedule"]["anchor"]  # no drift
    assert moved["next_run_at"] == interval["next_run_at"]
    text = store.update(cron["id"], schedule="30 8 * * *")  # in the job's own zone
    assert text["schedule"]["tz"] == "Asia/Tokyo" and text["next_run_at"].startswith(
        "2026-03-02T23:30"
    )


def test_a_recurring_job_made_a_one_shot_is_one_run(store: Any, clock: FakeClock) -> None:
    job = store.add(sched("every 1h", clock), command=["a"], repeat=5)
    once = store.update(job["id"], schedule="+10m")
    assert once["repeat"] == {"times": 1, "completed": 0}
    again = store.update(job["id"], schedule="every 2h")
    assert again["repeat"] == {"times": None, "completed": 0}
    with pytest.raises(UsageError, match="one-shot"):
        store.update(job["id"], schedule="+10m", repeat=3)
