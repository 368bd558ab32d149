"""A run starts at its due time from a thread already awake, and recording stays out of
its way.

On the real clock the dispatcher hands a claim to its worker ``handoff_lead`` before
the due time and the worker waits out the rest (``SystemClock.wait_until``): a thread
asleep on a timer wakes 0.1 ms late at best in a VM. While a run is about to start,
the recorder pauses between its steps (within a budget per batch), so the GIL is free
when the worker needs it. Here the same paths run on a fake clock that has a lead.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Dict, List

from helpers.servicekit import PromptRunner, advance_idle, wait_for

from hermes_cron.builtin_provider import _Dispatcher
from hermes_cron.clock import FakeClock, SystemClock, handoff_lead
from hermes_cron.runner import RunRecorder, execute_claim, new_owner_token
from hermes_cron.service import CronService
from hermes_cron.status_file import read_status
from hermes_cron.store import WON, Claim
from hermes_cron.timeutil import UTC, parse_iso


class LeadClock(FakeClock):
    """A fake clock whose runs are handed over ``handoff_lead`` seconds early; its
    ``wait_until`` sleeps on the fake time."""

    handoff_lead = 1.0

    def wait_until(self, when: datetime) -> None:
        never = threading.Event()
        while self.now() < when:
            self.wait(never, (when - self.now()).total_seconds())


def test_the_real_clock_waits_until_never_before_it() -> None:
    clock = SystemClock()
    for ms in (0.0, 0.2, 1.0, 3.0, 20.0):
        when = datetime.now(UTC) + timedelta(milliseconds=ms)
        clock.wait_until(when)
        assert datetime.now(UTC) >= when
    began = time.monotonic()
    clock.wait_until(datetime.now(UTC) - timedelta(hours=1))  # past: at once
    assert time.monotonic() - began < 1.0


def test_a_real_clock_of_its_own_time_waits_by_that_time() -> None:
    class Ahead(SystemClock):
        def now(self) -> datetime:
            return datetime.now(UTC) + timedelta(hours=1)

    clock = Ahead()
    began = time.monotonic()
    when = clock.now() + timedelta(milliseconds=2)
    clock.wait_until(when)  # an hour ahead of the system's time: still 2 ms
    assert clock.now() >= when
    assert time.monotonic() - began < 30


def test_only_a_clock_that_can_wait_until_gets_runs_early() -> None:
    class NowAndWait:
        handoff_lead = 5.0  # no wait_until: the lead means nothing

        def now(self) -> datetime:
            return datetime.now(UTC)

        def wait(self, event: threading.Event, timeout: float) -> bool:
            return event.wait(timeout)

    assert 0 < handoff_lead(SystemClock()) < 0.01
    assert handoff_lead(FakeClock()) == 0.0
    assert handoff_lead(NowAndWait()) == 0.0
    assert handoff_lead(LeadClock()) == 1.0


def claim_due(clock: FakeClock, seconds: float) -> Claim:
    return Claim("job-1", clock.now() + timedelta(seconds=seconds), WON, "owner-1", job={})


def test_the_dispatcher_hands_a_claim_over_one_lead_before_it_is_due() -> None:
    clock = LeadClock()
    handed: List[Claim] = []
    dispatcher = _Dispatcher(clock, handed.append)
    try:
        claim = claim_due(clock, 10.0)
        dispatcher.add(claim)
        assert clock.wait_for_sleepers("hermes-cron-dispatch")
        clock.advance(8.9)  # 1.1 s before it is due
        assert clock.wait_for_sleepers("hermes-cron-dispatch")
        assert handed == [] and dispatcher.hands_over_within(0.2)
        assert not dispatcher.hands_over_within(0.05)
        clock.advance(0.1)  # one lead before it is due
        wait_for(lambda: handed == [claim])
        assert not dispatcher.hands_over_within(60)
    finally:
        assert dispatcher.close() == []


def test_a_run_handed_over_early_starts_at_its_due_time(home: Path) -> None:
    clock = LeadClock(datetime(2026, 3, 2, 12, 0, tzinfo=UTC))
    runner = PromptRunner()
    service = CronService.from_home(home, clock=clock, plugins=[runner])
    job = service.add_job("every 10s", prompt="x")
    due = parse_iso(job["next_run_at"])
    handle = service.start_in_thread()
    try:
        wait_for(lambda: read_status(service.paths).get("heartbeat_at"))
        advance_idle(clock, (due - clock.now()).total_seconds() - 0.04)  # claimed now
        # Claimed and handed to a worker, which waits on the clock for the due time.
        assert clock.wait_for_sleepers("hermes-cron-worker-1")
        assert service.ledger.read() == [] and runner.calls == []
        clock.set(due)
        wait_for(lambda: len(service.ledger.read()) == 1)
    finally:
        handle.stop(30)
    (row,) = service.ledger.read()
    assert row["status"] == "ok"
    assert parse_iso(row["started_at"]) == due == parse_iso(row["fire_at"])


def recorder_runs(home: Path, clock: FakeClock, count: int) -> Any:
    service = CronService.from_home(home, clock=clock, plugins=[PromptRunner()])
    ids = [service.add_job("every 10s", prompt="ok")["id"] for _ in range(count)]
    clock.advance(10)
    claims = service.store.claim_many(service.store.due(clock.now()), new_owner_token())
    assert [c.outcome for c in claims] == [WON] * count
    return service, ids, claims


def test_the_recorder_pauses_while_a_run_is_imminent(home: Path, clock: FakeClock) -> None:
    service, ids, claims = recorder_runs(home, clock, 3)
    asked: Dict[str, int] = {"n": 0}
    gate = threading.Event()

    def imminent() -> bool:
        asked["n"] += 1
        return not gate.is_set()

    recorder = RunRecorder(service.ctx, imminent=imminent, max_pause=60)
    for claim in claims:
        assert execute_claim(service.ctx, claim, recorder=recorder).status == "ok"
    wait_for(lambda: asked["n"] >= 5)  # it is asking again and again, and waiting
    assert service.ledger.read() == []
    assert all(service.store.get(j)["fire_claim"] for j in ids)
    gate.set()
    assert recorder.close(30)
    assert sorted(r["job_id"] for r in service.ledger.read()) == sorted(ids)
    assert not any(service.store.get(j)["fire_claim"] for j in ids)


def test_fires_that_never_stop_coming_cannot_starve_the_recorder(
    home: Path, clock: FakeClock
) -> None:
    service, ids, claims = recorder_runs(home, clock, 3)
    recorder = RunRecorder(service.ctx, imminent=lambda: True, max_pause=0.05)
    for claim in claims:
        execute_claim(service.ctx, claim, recorder=recorder)
    assert recorder.wait_idle(30)
    assert sorted(r["job_id"] for r in service.ledger.read()) == sorted(ids)
    assert recorder.close(30)


def test_a_closing_recorder_does_not_pause(home: Path, clock: FakeClock) -> None:
    service, ids, claims = recorder_runs(home, clock, 2)
    recorder = RunRecorder(service.ctx, imminent=lambda: True, max_pause=3600)
    for claim in claims:
        execute_claim(service.ctx, claim, recorder=recorder)
    # close() waits for the queue first; the pause ends once it is closing.
    began = time.monotonic()
    closer = threading.Thread(target=recorder.close, args=(0.2,))
    closer.start()
    closer.join(60)
    wait_for(lambda: len(service.ledger.read()) == 2)
    assert time.monotonic() - began < 60
