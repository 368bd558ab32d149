"""Wall-clock jumps, forward and backward, against the running built-in loop (FakeClock).

A seeded random walk of jumps (a second, a minute, an hour, two days; back by seconds
or an hour) over jobs of every kind. After each jump the loop settles and the test
checks what it did against the missed-run policy (SPEC §4), computed independently from
the schedules: at most one run per job per jump (no fire storm); a run only for a fire
time that has come (never early), coalesced to the latest missed time when that is
within ``misfire_grace``, else one ``missed`` record; nothing after a backward jump;
no fire time twice, ever.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from helpers.servicekit import PromptRunner, wait_for, wait_idle, write_config

from hermes_cron.clock import FakeClock
from hermes_cron.service import CronService
from hermes_cron.status_file import read_status
from hermes_cron.timeutil import parse_iso, to_iso

GRACE = 600
#: Jumps in seconds, with how often each is drawn.
JUMPS = [
    (1, 6),
    (2, 3),
    (7, 2),
    (59, 2),
    (61, 1),
    (300, 1),
    (3600, 1),
    (2 * 86400, 1),
    (-5, 2),
    (-90, 1),
    (-3600, 1),
]
STEPS = 80


def _expected(service: CronService, now: datetime) -> Dict[str, Tuple[str, Optional[str]]]:
    """What each job must do at ``now``, from its record and schedule alone:
    ``{job_id: ("run", fire_at) or ("missed", None)}``; jobs with nothing due are absent."""
    out: Dict[str, Tuple[str, Optional[str]]] = {}
    for job in service.store.list_jobs(include_completed=True):
        if job["state"] != "scheduled" or not job["next_run_at"]:
            continue
        due = parse_iso(job["next_run_at"])
        if due > now:
            continue
        schedule = service.store.get_schedule(job["id"])
        latest = schedule.latest_at_or_before(now) if schedule.recurring else due
        assert latest is not None and latest >= due
        if (now - latest).total_seconds() <= GRACE:
            out[job["id"]] = ("run", to_iso(latest))
        else:
            out[job["id"]] = ("missed", None)
    return out


def _settled(service: CronService, now: datetime, rows: int) -> bool:
    if len(service.ledger.read()) != rows:
        return False
    for job in service.store.list_jobs(include_completed=True):
        if job["fire_claim"]:
            return False
        if job["state"] == "scheduled" and job["next_run_at"]:
            if parse_iso(job["next_run_at"]) <= now:
                return False
    return True


def test_random_clock_jumps_follow_the_missed_run_policy(home: Path, clock: FakeClock) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    write_config(home, {"cron": {"misfire_grace": GRACE, "timezone": "Europe/Paris"}})
    runner = PromptRunner()
    service = CronService.from_home(home, clock=clock, plugins=[runner])
    for text, extra in [
        ("every 1s", {}),
        ("every 7s", {}),
        ("* * * * *", {}),
        ("30 * * * *", {}),  # in Europe/Paris
        ("0 2 * * *", {}),  # in a DST gap on 2026-03-29
        ("+90s", {}),
        ("every 1h", {"repeat": 3}),
    ]:
        service.add_job(text, prompt="ok", **extra)
    handle = service.start_in_thread()
    rows_seen = 0
    log: List[str] = []
    try:
        wait_for(lambda: read_status(service.paths).get("heartbeat_at"))
        for step in range(STEPS):
            jump = rng.choices([j for j, _ in JUMPS], weights=[w for _, w in JUMPS])[0]
            before = clock.now()
            now = before + timedelta(seconds=jump)
            want = _expected(service, now)
            if jump < 0:
                assert want == {}, "a backward jump can have nothing due"
            log.append(f"step {step}: {jump:+d} s to {to_iso(now)}: {want}")
            wait_idle(clock)
            clock.set(now)
            expected_rows = rows_seen + len(want)
            wait_for(lambda n=now, r=expected_rows: _settled(service, n, r), timeout=20)
            new = list(reversed(service.ledger.read()))[rows_seen:]
            rows_seen = expected_rows
            got = {
                r["job_id"]: ("run", r["fire_at"]) if r["status"] == "ok" else (r["status"], None)
                for r in new
            }
            assert len(got) == len(new), (f"seed {seed}: two records for one job", new, log)
            assert got == want, (f"seed {seed}", log[-3:], new)
    finally:
        handle.stop(30)
    # Never early, never twice, always in order.
    fires: Dict[str, List[Any]] = {}
    for call in runner.calls:
        assert parse_iso(call["fire_at"]) <= call["at"], (seed, call)
        fires.setdefault(call["job_id"], []).append(parse_iso(call["fire_at"]))
    for job_id, times in fires.items():
        assert times == sorted(set(times)), (seed, job_id, times)
    assert len(runner.calls) == sum(1 for r in service.ledger.read() if r["status"] == "ok")


def test_a_backward_jump_under_a_held_claim_does_not_run_it_again(
    home: Path, clock: FakeClock
) -> None:
    """A claim dated in the future (the clock went back after it was taken) is stale:
    the job is not stuck behind it, and the fire it was for is not run again."""
    write_config(home, {"cron": {"claim_ttl": 30}})
    runner = PromptRunner()
    service = CronService.from_home(home, clock=clock, plugins=[runner])
    job = service.add_job("every 10s", prompt="ok")
    t0 = clock.now()
    first = t0 + timedelta(seconds=10)
    clock.set(first)
    claim = service.store.claim(job["id"], first, "a-process-that-died")
    assert claim.won
    clock.set(t0 - timedelta(seconds=3600))  # back an hour: the claim is now "in the future"
    handle = service.start_in_thread()
    try:
        # The start-up catch-up sees a claim dated ahead of the clock: stale, so reaped.
        wait_for(lambda: not service.store.get(job["id"])["fire_claim"])
        assert runner.count(job["id"]) == 0
        clock.set(first + timedelta(seconds=10))  # the clock catches up: the next fire runs
        wait_for(lambda: runner.count(job["id"]) == 1)
        wait_for(lambda: not service.store.get(job["id"])["fire_claim"])
    finally:
        handle.stop(30)
    assert runner.fires(job["id"]) == [to_iso(first + timedelta(seconds=10))]
    statuses = sorted(r["status"] for r in service.ledger.read(job["id"]))
    assert statuses == ["error", "ok"]  # the dead claim is recorded as interrupted
