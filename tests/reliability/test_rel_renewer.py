"""Claim renewal for running jobs: one renewer thread per store, shared by its runs.

Starting and joining a renewal thread for every run cost each run time before it
started (and, on a fake clock, up to one 10 ms poll after it ended). The shared
renewer must still keep every long run's claim fresh, stop renewing a claim that was
taken over, and go away when nothing runs.
"""

from __future__ import annotations

import threading
from typing import Any, Dict, List

from helpers.storekit import make_ctx, sched, wait_until

from hermes_cron import hookimpl
from hermes_cron.clock import FakeClock
from hermes_cron.paths import HomePaths
from hermes_cron.runner import RunOutcome, run_one_job
from hermes_cron.timeutil import parse_iso, to_iso


class Blocking:
    """A runner whose runs last until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started: List[str] = []

    @hookimpl(tryfirst=True)
    def run_job(self, ctx: Any, job: Dict[str, Any]) -> RunOutcome:
        self.started.append(job["id"])
        assert self.release.wait(30)
        return RunOutcome(status="ok", output="done")


def _renewer_threads() -> List[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("hermes-cron-renew")]


def test_concurrent_runs_share_one_renewer_that_keeps_every_claim_fresh(
    paths: HomePaths, clock: FakeClock
) -> None:
    runner = Blocking()
    ctx = make_ctx(paths, clock, runner, claim_ttl=30)
    jobs = [ctx.store.add(sched("+1m", clock), command=["true"])["id"] for _ in range(3)]
    clock.advance(60)
    before = set(_renewer_threads())  # other stores' renewers may still be lingering
    threads = [
        threading.Thread(target=run_one_job, args=(ctx, job_id, to_iso(clock.now())))
        for job_id in jobs
    ]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(runner.started) == 3, what="the three runs to start")
        assert len(set(_renewer_threads()) - before) == 1
        for _ in range(4):  # 4 x 11 s: past the 30 s TTL, renewed every 10 s
            # Advance only once the renewer waits: else its deadline moves with the clock.
            assert clock.wait_for_waiters(1), "the renewer never waited on the clock"
            clock.advance(11)
            now = to_iso(clock.now())
            wait_until(
                lambda now=now: all(
                    ctx.store.get(j)["fire_claim"]["claimed_at"] == now for j in jobs
                ),
                what="every claim to be renewed",
            )
        # The claim is lost to another process (here: released, then claimed by hand by
        # "intruder"): the renewer stops renewing it; the others still are renewed.
        taken = jobs[0]
        record = ctx.store.get(taken)
        assert record["fire_claim"]["owner"] != "intruder"
        ctx.store.finish_run(
            taken, record["fire_claim"]["owner"], status="error", error="x", started_at=clock.now()
        )
        assert ctx.store.claim_manual(taken, "intruder").won
        assert clock.wait_for_waiters(1), "the renewer never waited on the clock"
        clock.advance(11)
        now = to_iso(clock.now())
        wait_until(
            lambda: all(ctx.store.get(j)["fire_claim"]["claimed_at"] == now for j in jobs[1:]),
            what="the other claims to be renewed",
        )
        assert ctx.store.get(taken)["fire_claim"]["owner"] == "intruder"
    finally:
        runner.release.set()
        for thread in threads:
            thread.join(30)
    for job_id in jobs[1:]:
        assert ctx.store.get(job_id)["fire_claim"] is None
        assert ctx.store.get(job_id)["last_status"] == "ok"


def test_the_renewer_leaves_when_nothing_runs(paths: HomePaths, clock: FakeClock) -> None:
    import hermes_cron.runner as runner_module

    ctx = make_ctx(paths, clock, claim_ttl=30)
    job = ctx.store.add(sched("every 1m", clock), command=["true"])
    old = runner_module.RENEWER_LINGER
    runner_module.RENEWER_LINGER = 0.05
    try:
        for _ in range(3):
            due = ctx.store.get(job["id"])["next_run_at"]
            clock.set(parse_iso(due))
            assert run_one_job(ctx, job["id"], due).status == "ok"
        renewer = runner_module._RENEWERS[ctx.store]
        wait_until(lambda: renewer._thread is None, timeout=10, what="the renewer to exit")
        # ...and comes back for the next run.
        due = ctx.store.get(job["id"])["next_run_at"]
        clock.set(parse_iso(due))
        assert run_one_job(ctx, job["id"], due).status == "ok"
    finally:
        runner_module.RENEWER_LINGER = old
