"""The ends of runs share one store write (``RunRecorder(hold=...)``).

Under load each whole-file ``jobs.json`` write of a run's end cost the daemon a write
of every record (55 a second at 167 fires/s with 10,000 jobs). With a hold, a run's
output and ledger row are written at once, its end (``finish_runs``) with the next
store write, which comes at most every ``hold`` seconds: one write at a time, for
all the runs that ended meanwhile. An end is never held past a second before its
job's next fire, nor once ``flush``, ``wait_idle`` or ``close`` asks for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List

import pytest
from helpers.servicekit import PromptRunner, wait_for

from hermes_cron.clock import FakeClock
from hermes_cron.runner import RunRecorder, execute_claim, new_owner_token
from hermes_cron.service import CronService
from hermes_cron.store import WON


def claimed(home: Path, clock: FakeClock, schedules: List[str]) -> Any:
    service = CronService.from_home(home, clock=clock, plugins=[PromptRunner()])
    ids = [service.add_job(text, prompt="ok")["id"] for text in schedules]
    clock.advance(3600)
    claims = service.store.claim_many(service.store.due(clock.now()), new_owner_token())
    assert [c.outcome for c in claims] == [WON] * len(ids)
    by_id = {c.job_id: c for c in claims}
    return service, ids, [by_id[i] for i in ids]


def writes_of(service: CronService, monkeypatch: pytest.MonkeyPatch) -> List[int]:
    """The number of runs in each ``finish_runs`` / ``finish_run`` store write."""
    calls: List[int] = []
    store = type(service.store)
    many, one = store.finish_runs, store.finish_run

    def finish_runs(self: Any, runs: Any) -> Any:
        calls.append(len(runs))
        return many(self, runs)

    def finish_run(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return one(self, *args, **kwargs)

    monkeypatch.setattr(store, "finish_runs", finish_runs)
    monkeypatch.setattr(store, "finish_run", finish_run)
    return calls


def claimed_now(service: CronService, job_id: str) -> bool:
    return bool(service.store.get(job_id)["fire_claim"])


def test_runs_ending_within_the_hold_share_one_write(
    home: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    service, ids, claims = claimed(home, clock, ["every 1h"] * 4)
    calls = writes_of(service, monkeypatch)
    recorder = RunRecorder(service.ctx, hold=3600)
    # Nothing written lately: the first end is written at once.
    execute_claim(service.ctx, claims[0], recorder=recorder)
    wait_for(lambda: not claimed_now(service, ids[0]))
    assert calls == [1]
    for claim in claims[1:]:
        execute_claim(service.ctx, claim, recorder=recorder)
    # Each run's output and ledger row are written at once; its end waits.
    wait_for(lambda: len(service.ledger.read()) == 4)
    assert all(r["output"] for r in service.ledger.read())
    assert recorder.pending == 3
    assert all(claimed_now(service, i) for i in ids[1:])
    assert calls == [1]
    recorder.flush()
    wait_for(lambda: recorder.pending == 0)
    assert calls == [1, 3]
    assert not any(claimed_now(service, i) for i in ids)
    assert [service.store.get(i)["last_status"] for i in ids] == ["ok"] * 4
    assert recorder.close(30)


def test_an_end_is_not_held_when_the_jobs_next_fire_is_near(
    home: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    service, ids, claims = claimed(home, clock, ["every 1h", "every 1s"])
    calls = writes_of(service, monkeypatch)
    recorder = RunRecorder(service.ctx, hold=3600)
    execute_claim(service.ctx, claims[0], recorder=recorder)
    wait_for(lambda: not claimed_now(service, ids[0]))
    # Due again within a second: its next claim must find this run ended.
    execute_claim(service.ctx, claims[1], recorder=recorder)
    wait_for(lambda: not claimed_now(service, ids[1]))
    assert calls == [1, 1]
    assert recorder.close(30)


def test_waiting_for_the_recorder_writes_what_it_holds(
    home: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    service, ids, claims = claimed(home, clock, ["every 1h"] * 3)
    calls = writes_of(service, monkeypatch)
    recorder = RunRecorder(service.ctx, hold=3600)
    for claim in claims:
        execute_claim(service.ctx, claim, recorder=recorder)
    wait_for(lambda: len(service.ledger.read()) == 3)
    assert recorder.wait_idle(30)
    assert recorder.pending == 0 and sum(calls) == 3
    assert not any(claimed_now(service, i) for i in ids)
    # And closing with ends held writes them too (the daemon's stop).
    service2, ids2, claims2 = claimed(home / "two", clock, ["every 1h"] * 2)
    recorder2 = RunRecorder(service2.ctx, hold=3600)
    execute_claim(service2.ctx, claims2[0], recorder=recorder2)
    wait_for(lambda: not claimed_now(service2, ids2[0]))
    execute_claim(service2.ctx, claims2[1], recorder=recorder2)
    wait_for(lambda: len(service2.ledger.read()) == 2)
    assert recorder2.close(30)
    assert not claimed_now(service2, ids2[1])
