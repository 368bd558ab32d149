"""The file store keeps its due index across its own writes (updated for the records a
write changed, not re-sorted): it must always equal the index built from scratch."""

from __future__ import annotations

import os
import random
from typing import Any

import pytest
from helpers.storekit import new_store, sched

from hermes_cron.clock import FakeClock
from hermes_cron.paths import HomePaths
from hermes_cron.store import WON, JobStore


def _from_scratch(store: JobStore) -> tuple:
    fresh = new_store(store.paths, store.clock)
    return fresh._load()._due_from_scratch()


def test_the_kept_due_index_equals_a_full_rebuild(paths: HomePaths, clock: FakeClock) -> None:
    store = new_store(paths, clock)
    rng = random.Random(12)
    texts = ["every 10s", "every 7s", "every 1m", "every 5s"]
    ids = [store.add(sched(rng.choice(texts), clock), command=["true"])["id"] for _ in range(40)]
    # Two jobs with the same next run time: ties keep file order.
    twin = store.add(sched("every 10s", clock), command=["true"])["id"]
    ids.append(twin)
    for step in range(60):
        store.next_due_at()  # build the index, so later writes update it
        clock.advance(rng.choice([1, 2, 3, 5]))
        due = store.due(clock.now())
        claims = store.claim_many(due, f"host:1:{step:04x}") if due else []
        won = [c for c in claims if c.outcome == WON]
        if won:
            store.finish_runs(
                [(c.job_id, c.owner, "ok", None, clock.now()) for c in won[: len(won) // 2 + 1]]
            )
        pick = rng.choice(ids)
        action = rng.choice(["pause", "resume", "nothing"])
        if action == "pause":
            store.pause(pick)
        elif action == "resume":
            store.resume(pick)
        kept = store._load()._due
        assert kept is not None
        assert kept == _from_scratch(store), f"step {step}"


def test_a_read_that_a_write_of_this_process_overtakes_is_not_parsed_again(
    paths: HomePaths, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader thread that took the cached view, then opened the file after a write of
    this process had replaced it and updated the cache, takes the new cache: parsing
    10,000 records there took 0.15 s (and a full GC after it) under load."""
    store = new_store(paths, clock)
    ids = [store.add(sched("every 10s", clock), command=["true"])["id"] for _ in range(5)]
    store.next_due_at()
    parses = []
    real_parse = JobStore._parse
    monkeypatch.setattr(
        JobStore, "_parse", lambda self, *a: parses.append(1) or real_parse(self, *a)
    )
    armed = [True]
    real_open = os.open

    def open_after_a_write(path: Any, flags: int, *args: Any) -> int:
        if armed[0] and str(path) == str(store.path):
            armed[0] = False
            store.pause(ids[0])  # lands between this read's look at the cache and its open
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", open_after_a_write)
    assert store.next_due_at() is not None
    assert not armed[0], "the write did not happen inside the read"
    assert parses == []
    assert store.get(ids[0])["state"] == "paused"
    assert new_store(paths, clock).get(ids[0])["state"] == "paused"  # on disk too
