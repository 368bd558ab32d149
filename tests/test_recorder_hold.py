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


def one_written(
    home: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, schedules: List[str]
) -> Any:
    """Claims of jobs on ``schedules``, the store writes of run ends counted, and a
    recorder holding ends for an hour that has just written one end (another job's):
    nothing written lately, the first end goes at once; the next ones wait."""
    service, ids, claims = claimed(home, clock, ["every 1h", *schedules])
    calls = writes_of(service, monkeypatch)
    recorder = RunRecorder(service.ctx, hold=3600)
    execute_claim(service.ctx, claims[0], recorder=recorder)
    wait_for(lambda: not claimed_now(service, ids[0]))
    assert calls == [1]
    return service, ids[1:], claims[1:], calls, recorder


def test_runs_ending_within_the_hold_share_one_write(
    home: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    service, ids, claims, calls, recorder = one_written(home, clock, monkeypatch, ["every 1h"] * 3)
    for claim in claims:
        execute_claim(service.ctx, claim, recorder=recorder)
    # Each run's output and ledger row are written at once; its end waits.
    wait_for(lambda: len(service.ledger.read()) == 4)
    assert all(r["output"] for r in service.ledger.read())
    assert recorder.pending == 3
    assert all(claimed_now(service, i) for i in ids)
    assert calls == [1]
    recorder.flush()
    wait_for(lambda: recorder.pending == 0)
    assert calls == [1, 3]
    assert not any(claimed_now(service, i) for i in ids)
    assert [service.store.get(i)["last_status"] for i in ids] == ["ok"] * 3
    assert recorder.close(30)


def test_an_end_is_not_held_when_the_jobs_next_fire_is_near(
    home: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    service, ids, claims, calls, recorder = one_written(home, clock, monkeypatch, ["every 1s"])
    # Due again within a second: its next claim must find this run ended.
    execute_claim(service.ctx, claims[0], recorder=recorder)
    wait_for(lambda: not claimed_now(service, ids[0]))
    assert calls == [1, 1]
    assert recorder.close(30)


@pytest.mark.parametrize("how", ["wait_idle", "close"])
def test_waiting_for_or_closing_the_recorder_writes_what_it_holds(
    home: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    service, ids, claims, calls, recorder = one_written(home, clock, monkeypatch, ["every 1h"] * 2)
    for claim in claims:
        execute_claim(service.ctx, claim, recorder=recorder)
    wait_for(lambda: len(service.ledger.read()) == 3)
    assert recorder.pending == 2
    # wait_idle: what the daemon's stop and the tests wait on; close: the stop itself.
    assert getattr(recorder, how)(30)
    assert recorder.pending == 0 and calls == [1, 2]
    assert not any(claimed_now(service, i) for i in ids)
    assert recorder.close(30)
