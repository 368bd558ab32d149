"""Claims: the compare-and-set that decides who runs a fire (on every store backend)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Callable

import pytest
from helpers.storekit import counting_writes, fire_time, sched

from hermes_cron.clock import FakeClock
from hermes_cron.errors import UsageError
from hermes_cron.store import GONE, INACTIVE, LOST, MISSED, SKIPPED, WON
from hermes_cron.timeutil import parse_iso, to_iso


@pytest.fixture
def store(make_store: Callable[..., Any]) -> Any:
    return make_store(claim_ttl=300, misfire_grace=3600)


def test_won_claim_is_written_before_returning(
    store: Any, clock: FakeClock, make_store: Callable[..., Any]
) -> None:
    job = store.add(sched("every 10m", clock), command=["a"])
    due = fire_time(store, job["id"])
    clock.set(due)
    claim = store.claim(job["id"], due, "owner-1")
    assert claim.outcome == WON and claim.won and claim.fire_at == due and claim.reason == ""
    on_disk = make_store().get(job["id"])  # what another process sees
    assert on_disk["fire_claim"] == {
        "fire_at": to_iso(due),
        "owner": "owner-1",
        "claimed_at": to_iso(clock.now()),
    }
    assert parse_iso(on_disk["next_run_at"]) == due + timedelta(minutes=10)
    assert claim.job == on_disk


def test_fire_at_is_compared_as_an_instant(store: Any, clock: FakeClock) -> None:
    job = store.add(sched("every 10m", clock), command=["a"])
    due = fire_time(store, job["id"])
    clock.set(due)
    from zoneinfo import ZoneInfo

    same_instant = due.astimezone(ZoneInfo("Asia/Tokyo"))
    assert store.claim(job["id"], same_instant, "me").outcome == WON


def test_duplicate_and_mismatched_fires_are_lost(store: Any, clock: FakeClock) -> None:
    job = store.add(sched("every 10m", clock), command=["a"])
    due = fire_time(store, job["id"])
    clock.set(due)
    assert store.claim(job["id"], due, "first").outcome == WON
    token = store.change_token()
    again = store.claim(job["id"], due, "second")
    assert again.outcome == LOST and "not due for" in again.reason
    assert store.change_token() == token  # a refused claim writes nothing
    wrong = store.claim(job["id"], due + timedelta(seconds=1), "third")
    assert wrong.outcome == LOST


def test_gone_and_inactive(store: Any, clock: FakeClock) -> None:
    assert store.claim("nope", clock.now(), "me").outcome == GONE
    job = store.add(sched("every 10m", clock), command=["a"])
    due = fire_time(store, job["id"])
    clock.set(due)
    store.pause(job["id"])
    paused = store.claim(job["id"], due, "me")
    assert paused.outcome == INACTIVE and paused.reason == "paused"
    store.resume(job["id"])
    store.update(job["id"], enabled=False)
    disabled = store.claim(job["id"], fire_time(store, job["id"]), "me")
    assert disabled.outcome == INACTIVE and disabled.reason == "disabled"
    store.remove(job["id"])
    assert store.claim(job["id"], due, "me").outcome == GONE


def test_early_claim_is_refused_but_a_few_seconds_are_tolerated(
    store: Any, clock: FakeClock
) -> None:
    job = store.add(sched("every 10m", clock), command=["a"])
    due = fire_time(store, job["id"])
    clock.set(due - timedelta(seconds=30))
    early = store.claim(job["id"], due, "me")
    assert early.outcome == LOST and "not due yet" in early.reason
    clock.set(due - timedelta(seconds=3))
    ok = store.claim(job["id"], due, "me")
    assert ok.outcome == WON and ok.fire_at == due
    assert fire_time(store, job["id"]) == due + timedelta(minutes=10)


def test_overlap_skips_while_a_fresh_claim_runs(store: Any, clock: FakeClock) -> None:
    job = store.add(sched("every 1m", clock), command=["a"])
    first = fire_time(store, job["id"])
    clock.set(first)
    assert store.claim(job["id"], first, "slow").won
    clock.advance(60)  # the next fire arrives while "slow" still runs (claim 60 s old)
    second = fire_time(store, job["id"])
    skipped = store.claim(job["id"], second, "next")
    assert skipped.outcome == SKIPPED and "overlap" in skipped.reason and "slow" in skipped.reason
    record = store.get(job["id"])
    assert record["fire_claim"]["owner"] == "slow"  # the running fire keeps its claim
    assert record["last_status"] == "skipped"
    assert parse_iso(record["next_run_at"]) == second + timedelta(minutes=1)
    # The slow run ends normally; the schedule goes on.
    done = store.finish_run(job["id"], "slow", status="ok", error=None, started_at=first)
    assert done is not None and done["last_status"] == "ok" and done["fire_claim"] is None
    clock.advance(60)
    assert store.claim(job["id"], fire_time(store, job["id"]), "later").won


def test_stale_claim_is_taken_over(store: Any, clock: FakeClock) -> None:
    job = store.add(sched("every 10m", clock), command=["a"])
    due = fire_time(store, job["id"])
    clock.set(due)
    assert store.claim(job["id"], due, "crashed").won
    clock.advance(600)  # next fire; the old claim is 600 s old > ttl 300: stale
    nxt = fire_time(store, job["id"])
    taken = store.claim(job["id"], nxt, "new")
    assert taken.outcome == WON
    assert store.get(job["id"])["fire_claim"]["owner"] == "new"
    # The old owner's late finish changes nothing.
    token = store.change_token()
    assert store.finish_run(job["id"], "crashed", status="ok", error=None, started_at=due) is None
    assert store.renew_claim(job["id"], "crashed") is False
    assert store.change_token() == token
    assert store.get(job["id"])["fire_claim"]["owner"] == "new"


def test_future_dated_claim_is_stale(store: Any, clock: FakeClock) -> None:
    job = store.add(sched("every 10m", clock), command=["a"])
    due = fire_time(store, job["id"])
    clock.set(due + timedelta(minutes=10))
    assert store.claim_manual(job["id"], "from-the-future").won
    clock.set(due)  # the clock went back: that claim is dated in the future
    assert store.claim(job["id"], due, "now").outcome == WON


def test_claim_ttl_boundary(store: Any, clock: FakeClock) -> None:
    job = store.add(sched("every 1m", clock), command=["a"])
    assert store.claim_manual(job["id"], "runner").won
    clock.advance(299)
    assert store.claim_manual(job["id"], "other").outcome == LOST
    clock.advance(1)
    assert store.claim_manual(job["id"], "other").won


def test_renewal_keeps_a_long_run_from_takeover(store: Any, clock: FakeClock) -> None:
    job = store.add(sched("every 2m", clock), command=["a"])
    due = fire_time(store, job["id"])
    clock.set(due)
    assert store.claim(job["id"], due, "long").won
    for _ in range(6):  # 6 x 100 s = 10 minutes of running, renewed every 100 s
        clock.advance(100)
        assert store.renew_claim(job["id"], "long")
        assert store.renew_claim(job["id"], "intruder") is False
    nxt = fire_time(store, job["id"])
    assert nxt <= clock.now()
    assert store.claim(job["id"], nxt, "intruder").outcome == SKIPPED
    assert store.get(job["id"])["fire_claim"]["owner"] == "long"
    assert store.finish_run(job["id"], "long", status="ok", error=None, started_at=due)


def test_finish_is_owner_only(store: Any, clock: FakeClock) -> None:
    job = store.add(sched("every 10m", clock), command=["a"])
    due = fire_time(store, job["id"])
    clock.set(due)
    assert store.claim(job["id"], due, "owner").won
    assert store.finish_run(job["id"], "other", status="ok", error=None, started_at=due) is None
    assert store.get(job["id"])["fire_claim"]["owner"] == "owner"
    clock.advance(5)
    done = store.finish_run(job["id"], "owner", status="error", error="boom", started_at=due)
    assert done is not None
    assert (done["last_status"], done["last_error"]) == ("error", "boom")
    assert done["last_run_at"] == to_iso(due) and done["fire_claim"] is None
    assert done["state"] == "scheduled"
    with pytest.raises(UsageError):
        store.finish_run(job["id"], "owner", status="skipped", error=None, started_at=due)


def test_one_shot_completes(store: Any, clock: FakeClock) -> None:
    job = store.add(sched("+30m", clock), command=["a"])
    due = fire_time(store, job["id"])
    clock.set(due)
    claim = store.claim(job["id"], due, "me")
    assert claim.won and claim.job["next_run_at"] is None
    assert store.due(clock.now() + timedelta(days=1)) == []
    done = store.finish_run(job["id"], "me", status="ok", error=None, started_at=due)
    assert done["state"] == "completed" and done["next_run_at"] is None
    assert store.claim(job["id"], due, "again").outcome == INACTIVE


def test_repeat_n_completes_after_n_runs(store: Any, clock: FakeClock) -> None:
    job = store.add(sched("every 1m", clock), command=["a"], repeat=3)
    for n in range(1, 4):
        due = fire_time(store, job["id"])
        clock.set(due)
        claim = store.claim(job["id"], due, f"run{n}")
        assert claim.won
        assert claim.job["repeat"]["completed"] == n  # counted at claim time
        record = store.finish_run(job["id"], f"run{n}", status="ok", error=None, started_at=due)
        assert record["state"] == ("completed" if n == 3 else "scheduled")
    final = store.get(job["id"])
    assert final["next_run_at"] is None and final["repeat"] == {"times": 3, "completed": 3}


def test_missed_and_skipped_do_not_count_toward_repeat(store: Any, clock: FakeClock) -> None:
    job = store.add(sched("every 1h", clock), command=["a"], repeat=2, misfire_grace=60)
    due = fire_time(store, job["id"])
    clock.set(due + timedelta(minutes=5))
    missed = store.claim(job["id"], due, "late")
    assert missed.outcome == MISSED
    record = store.get(job["id"])
    assert record["repeat"]["completed"] == 0 and record["state"] == "scheduled"
    assert record["last_status"] == "missed"
    assert parse_iso(record["next_run_at"]) == due + timedelta(hours=1)


def test_manual_claim_does_not_advance_and_refuses_while_running(
    store: Any, clock: FakeClock
) -> None:
    job = store.add(sched("every 1h", clock), command=["a"], repeat=5)
    store.pause(job["id"])  # running a paused job by hand is allowed
    claim = store.claim_manual(job["id"], "hand")
    assert claim.won and claim.manual and claim.fire_at == clock.now()
    record = store.get(job["id"])
    assert record["next_run_at"] == job["next_run_at"]
    assert record["repeat"]["completed"] == 0
    assert record["fire_claim"]["manual"] is True
    busy = store.claim_manual(job["id"], "hand2")
    assert busy.outcome == LOST and "already running" in busy.reason
    done = store.finish_run(job["id"], "hand", status="ok", error=None, started_at=clock.now())
    assert done["state"] == "paused" and done["last_status"] == "ok"
    assert store.claim_manual("nope", "x").outcome == GONE


def test_manual_run_of_a_one_shot_does_not_complete_it(store: Any, clock: FakeClock) -> None:
    job = store.add(sched("+1h", clock), command=["a"])
    assert store.claim_manual(job["id"], "hand").won
    done = store.finish_run(job["id"], "hand", status="ok", error=None, started_at=clock.now())
    assert done["state"] == "scheduled" and done["next_run_at"] == job["next_run_at"]


def test_claim_many_in_one_write(store: Any, clock: FakeClock) -> None:
    jobs = [store.add(sched("every 5m", clock), command=["a", str(i)]) for i in range(5)]
    store.pause(jobs[4]["id"])
    clock.advance(300)
    fires = [(j["id"], fire_time(store, j["id"])) for j in jobs]
    with counting_writes(store) as writes:
        claims = store.claim_many(fires + [("gone", clock.now())], "batch")
    assert len(writes) == 1
    assert [c.outcome for c in claims] == [WON, WON, WON, WON, INACTIVE, GONE]
    assert store.claim_many([], "batch") == []


def test_claim_needs_an_owner_and_an_aware_time(store: Any, clock: FakeClock) -> None:
    job = store.add(sched("every 5m", clock), command=["a"])
    with pytest.raises(UsageError, match="owner"):
        store.claim(job["id"], clock.now(), "")
    with pytest.raises(UsageError, match="offset"):
        store.claim(job["id"], clock.now().replace(tzinfo=None), "me")


def test_overlap_on_a_one_shot_during_a_manual_run(store: Any, clock: FakeClock) -> None:
    job = store.add(sched("+10m", clock), command=["a"])
    clock.advance(590)
    assert store.claim_manual(job["id"], "hand").won
    clock.advance(10)
    skipped = store.claim(job["id"], fire_time(store, job["id"]), "sched")
    assert skipped.outcome == SKIPPED
    assert store.get(job["id"])["state"] == "completed"
    assert store.due(clock.now() + timedelta(days=1)) == []


@pytest.mark.parametrize("call", ["claim", "claim_many"])
def test_racing_threads_claim_a_fire_exactly_once(
    make_store: Callable[..., Any], clock: FakeClock, call: str
) -> None:
    """Threads with stores of their own (so, on PostgreSQL, sessions of their own)."""
    import threading

    setup = make_store()
    job = setup.add(sched("every 1m", clock), command=["a"])
    due = fire_time(setup, job["id"])
    clock.set(due)
    stores = [make_store() for _ in range(6)]
    for s in stores:
        s.snapshot()  # connected and warm before the start line
    start = threading.Barrier(len(stores))
    outcomes: list = []

    def race(n: int) -> None:
        start.wait()
        if call == "claim":
            outcomes.append(stores[n].claim(job["id"], due, f"t{n}").outcome)
        else:
            outcomes.append(stores[n].claim_many([(job["id"], due)], f"t{n}")[0].outcome)

    threads = [threading.Thread(target=race, args=(n,)) for n in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes) == [LOST] * (len(stores) - 1) + [WON]
    assert setup.get(job["id"])["fire_claim"]["owner"].startswith("t")


def test_an_overlap_skip_claimed_ahead_of_time_moves_past_that_fire(
    store: Any, clock: FakeClock
) -> None:
    """The loop claims up to a quarter second early: skipping that fire must not leave
    it pending, or every wake before it is due would skip (and record) it again."""
    job = store.add(sched("every 1m", clock), command=["a"])
    first = fire_time(store, job["id"])
    clock.set(first)
    assert store.claim(job["id"], first, "slow").won
    second = fire_time(store, job["id"])
    clock.set(second - timedelta(seconds=0.2))
    skipped = store.claim(job["id"], second, "early")
    assert skipped.outcome == SKIPPED
    assert fire_time(store, job["id"]) == second + timedelta(minutes=1)
    assert store.claim(job["id"], second, "again").outcome == LOST
