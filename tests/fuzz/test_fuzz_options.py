"""Fuzz the job options through the store's rules: random jitter, overlap, retries and
until, then random fires (some overlapping a run), run ends, clock jumps, catch-ups and
edits.

Promise (SPEC §4, §4.1): nothing crashes; what is written always reads back as a valid
record (never quarantined); no fire comes after ``until``; a retry always comes before
the fire it gives way to; each due time is won at most once; the run counter counts
the runs won for scheduled and queued fires, never retries.
"""

from __future__ import annotations

import tempfile
from datetime import datetime, timedelta
from typing import Any, Dict, List, Optional, Set, Tuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hermes_cron.clock import FakeClock
from hermes_cron.errors import UsageError
from hermes_cron.paths import HomePaths
from hermes_cron.schedules import parse_schedule
from hermes_cron.store import WON, JobStore
from hermes_cron.timeutil import UTC, parse_iso, to_iso

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "jitter": st.sampled_from([0, 1, 30, 59.5, 600, 3600, 7200]),
        "overlap": st.sampled_from(["skip", "queue", "replace"]),
        "retries": st.integers(0, 4),
        "retry_delay": st.sampled_from([1, 30, 90, 1800]),
        "misfire_grace": st.sampled_from([0, 60, 3600]),
        "until": st.integers(60, 6 * 3600).map(lambda s: to_iso(NOW + timedelta(seconds=s))),
    },
)
SCHEDULES = st.sampled_from(["every 90s", "every 10m", "every 1h", "*/15 * * * *", "+20m"])
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("fire"), st.sampled_from(["ok", "error", "timeout"])),
        st.tuples(st.just("overlap"), st.sampled_from(["ok", "error", "cancelled"])),
        st.tuples(st.just("sleep"), st.integers(1, 4 * 3600)),
        st.tuples(st.just("edit"), OPTIONS),
    ),
    min_size=1,
    max_size=14,
)


class Model:
    """Drives one job on a real store and checks the promises after every step."""

    def __init__(self, store: JobStore, clock: FakeClock, job_id: str) -> None:
        self.store = store
        self.clock = clock
        self.job_id = job_id
        self.won: Set[Tuple[str, int]] = set()
        self.runs = 0
        self.owners = 0

    def record(self) -> Dict[str, Any]:
        snap = self.store.snapshot()
        assert snap.quarantined == [], snap.quarantined[0].error
        return self.store.get(self.job_id)

    def claim(self) -> Optional[Any]:
        job = self.record()
        if job["state"] != "scheduled" or not job["next_run_at"]:
            return None
        due = parse_iso(job["next_run_at"])
        if due > self.clock.now():
            self.clock.set(due)
        self.owners += 1
        claim = self.store.claim(self.job_id, due, f"owner-{self.owners}")
        if claim.outcome == WON:
            key = (to_iso(claim.due), claim.attempt)
            assert key not in self.won, f"{key} won twice"
            self.won.add(key)
            if claim.attempt == 1:
                self.runs += 1
        return claim

    def finish(self, claim: Any, status: str) -> None:
        self.clock.advance(5)
        self.store.finish_run(
            self.job_id, claim.owner, status=status, error=None, started_at=self.clock.now()
        )

    def check(self) -> None:
        job = self.record()
        until = parse_iso(job["until"]) if job.get("until") else None
        nxt = parse_iso(job["next_run_at"]) if job.get("next_run_at") else None
        if until is not None and nxt is not None and not job.get("queued_fire"):
            assert nxt <= until, (job["next_run_at"], job["until"])
        retry = job.get("pending_retry")
        if retry:
            assert job["next_run_at"] == retry["due_at"]
            if retry.get("resume_at"):
                assert parse_iso(retry["due_at"]) < parse_iso(retry["resume_at"])
        assert job["repeat"]["completed"] == self.runs
        if job["state"] == "completed":
            assert not job.get("pending_retry") and not job.get("fire_claim")


@FUZZ
@given(text=SCHEDULES, options=OPTIONS, steps=STEPS)
def test_options_keep_every_promise(
    text: str, options: Dict[str, Any], steps: List[Tuple[str, Any]]
) -> None:
    with tempfile.TemporaryDirectory(prefix="hermes-fuzz-") as folder:
        clock = FakeClock(NOW)
        store = JobStore(HomePaths.at(folder), clock=clock, claim_ttl=300, misfire_grace=3600)
        try:
            job = store.add(parse_schedule(text, now=NOW), command=["true"], **options)
        except UsageError:
            return  # e.g. until before the first fire: refused, nothing written
        model = Model(store, clock, job["id"])
        for kind, arg in steps:
            if kind == "fire":
                claim = model.claim()
                if claim is not None and claim.won:
                    model.finish(claim, arg)
            elif kind == "overlap":
                claim = model.claim()
                if claim is not None and claim.won:
                    model.clock.advance(1)
                    second = model.claim()  # a fire due while it runs (if any)
                    if second is not None and second.won:  # the first one was stale
                        model.finish(second, "ok")
                    model.finish(claim, arg)
            elif kind == "sleep":
                clock.advance(arg)
                store.catch_up()
            else:
                try:
                    store.update(job["id"], **arg)
                except UsageError:
                    pass
            model.check()
