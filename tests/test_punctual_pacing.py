"""Background Python steps aside while a run is about to start (``hermes_cron.punctual``).

A thread waking to start a run needs the GIL, and a thread running Python without a
pause keeps it from the waker well past the switch interval. Store mutations (per
record), the file store's serialization and due index, and the recorder call a pacer
between steps: while a registered scheduler says a run is imminent it sleeps, within a
budget. Time here is a fake one the pacer sleeps on, so nothing depends on the machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator, List

import pytest
from helpers.servicekit import wait_for

from hermes_cron import punctual
from hermes_cron.clock import FakeClock
from hermes_cron.schedules import parse_schedule
from hermes_cron.service import CronService
from hermes_cron.status_file import read_status
from hermes_cron.store import WON


class FakeTime:
    """What ``punctual`` reads of ``time``: a counter that only ``sleep`` moves."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: List[float] = []
        #: How far each reading moves the counter (work between two steps takes time).
        self.tick = 0.0

    def perf_counter(self) -> float:
        self.now += self.tick
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTime]:
    fake = FakeTime()
    monkeypatch.setattr(punctual, "time", fake)
    yield fake


@pytest.fixture
def registered() -> Iterator[Callable[[Callable[[], bool]], None]]:
    checks: List[Callable[[], bool]] = []

    def register(check: Callable[[], bool]) -> None:
        checks.append(check)
        punctual.register(check)

    yield register
    for check in checks:
        punctual.unregister(check)
    assert not punctual.imminent()


def test_with_no_scheduler_a_step_never_asks_or_sleeps(fake_time: FakeTime) -> None:
    step = punctual.pacer()
    for _ in range(10_000):
        step()
        fake_time.now += 0.001  # time passes between steps: each one could ask
    assert fake_time.sleeps == []


def test_a_step_sleeps_until_the_run_is_no_longer_imminent(
    fake_time: FakeTime, registered: Callable[[Callable[[], bool]], None]
) -> None:
    asked: List[int] = []

    def imminent() -> bool:
        asked.append(1)
        return len(fake_time.sleeps) < 3

    registered(imminent)
    step = punctual.pacer(budget=1.0)
    step()
    assert fake_time.sleeps == [punctual.POLL] * 3
    assert len(asked) == 4
    # Asking takes a lock and reads the clock: not again within CHECK_EVERY.
    fake_time.now += punctual.CHECK_EVERY / 2
    step()
    assert len(asked) == 4


def test_the_budget_bounds_the_pauses_of_one_piece_of_work(
    fake_time: FakeTime, registered: Callable[[Callable[[], bool]], None]
) -> None:
    registered(lambda: True)  # a run is always about to start: fires without end
    step = punctual.pacer(budget=0.01)
    for _ in range(100):
        step()
        fake_time.now += punctual.CHECK_EVERY
    assert sum(fake_time.sleeps) == pytest.approx(0.01, abs=punctual.POLL)
    # The next piece of work has a budget of its own.
    before = len(fake_time.sleeps)
    punctual.pacer(budget=0.01)()
    assert len(fake_time.sleeps) > before


def test_a_pacer_told_to_stop_does_not_pause(fake_time: FakeTime) -> None:
    stopping = [False]
    step = punctual.Pacer(60.0, imminent=lambda: True, stop=lambda: stopping[0])
    step()
    assert fake_time.sleeps  # paused (until its budget, on the fake time)
    stopping[0] = True
    fake_time.sleeps.clear()
    fake_time.now += 1.0
    punctual.Pacer(60.0, imminent=lambda: True, stop=lambda: stopping[0])()
    assert fake_time.sleeps == []


def test_an_unregistered_check_is_not_asked(fake_time: FakeTime) -> None:
    asked: List[int] = []

    def check() -> bool:
        asked.append(1)
        return True

    punctual.register(check)
    punctual.unregister(check)
    punctual.unregister(check)  # twice: ignored
    punctual.pacer()()
    assert asked == [] and fake_time.sleeps == []


def test_a_store_mutation_steps_aside_while_a_run_is_imminent(
    make_store: Callable[..., Any],
    clock: FakeClock,
    fake_time: FakeTime,
    registered: Callable[[Callable[[], bool]], None],
) -> None:
    store = make_store()
    ids = [
        store.add(parse_schedule("every 1h", now=clock.now()), command=["true"])["id"]
        for _ in range(5)
    ]
    clock.advance(3600)
    asked: List[int] = []

    def imminent() -> bool:
        asked.append(1)
        return len(asked) % 2 == 1  # imminent at every other look

    registered(imminent)
    fake_time.tick = punctual.CHECK_EVERY  # so every record's step asks again
    claims = store.claim_many(store.due(clock.now()), "host:1:t")
    assert [c.outcome for c in claims] == [WON] * 5
    assert len(asked) >= 5 and fake_time.sleeps  # it asked per record, and waited
    assert all(store.get(i)["fire_claim"]["owner"] == "host:1:t" for i in ids)


def test_a_large_file_store_write_steps_through_its_index_serialization_and_io(
    paths: Any,
    clock: FakeClock,
    fake_time: FakeTime,
    registered: Callable[[Callable[[], bool]], None],
) -> None:
    """Not only the rules: the due-index update (per change), the serialization (per
    1,024 records) and the write (per ``writev`` group, and before the ``fsync``)."""
    from helpers.storekit import new_store

    store = new_store(paths, clock)
    try:
        schedule = parse_schedule("every 1h", now=clock.now())
        for _ in range(2):
            store.add(schedule, command=["true"])
        records = store.export_records()
        template = records[0]
        store.import_records(
            [dict(template, id=f"bulk{n:05d}") for n in range(2_100)], replace=False
        )
        clock.advance(3600)
        due = store.due(clock.now())[:2]
        asked: List[int] = []

        def imminent() -> bool:
            asked.append(1)
            return False

        registered(imminent)
        fake_time.tick = punctual.CHECK_EVERY  # every step asks
        claims = store.claim_many(due, "host:1:t")
        assert [c.outcome for c in claims] == [WON, WON]
    finally:
        store.close()
    # 2 rules + 2 due-index changes + 3 slices of 2,102 records + 5 writev groups of
    # 4,205 pieces + 1 before the fsync.
    assert len(asked) >= 2 + 2 + 3 + 5 + 1


def test_the_builtin_loop_registers_on_the_real_clock_only(home: Path, clock: FakeClock) -> None:
    assert not punctual._checks
    real = CronService.from_home(home)
    with real.start_in_thread():
        # Registered once the loop runs (its first heartbeat comes just before).
        wait_for(lambda: len(punctual._checks) == 1)
    assert punctual._checks == []

    fake = CronService.from_home(home / "fake", clock=clock)
    fake.add_job("every 1h", command=["true"])
    with fake.start_in_thread():
        wait_for(lambda: read_status(fake.paths).get("heartbeat_at"))
        assert punctual._checks == []
