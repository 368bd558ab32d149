"""Group commit: runs ending at the same moment share one ``jobs.json`` write.

With the default four workers, a burst of due jobs ends in a burst of ``finish_run``
calls; each used to rewrite (and fsync) the whole file. Calls that arrive while a
write is in progress now share the next one, and each caller still returns only once
its change is on disk (or raises the write's error).
"""

from __future__ import annotations

import errno
import threading
from typing import Any, List

import pytest
from helpers.storekit import new_store, sched, wait_until
from reliakit import DiskFault, named

from hermes_cron.clock import FakeClock
from hermes_cron.errors import StoreError
from hermes_cron.lock import FileLock
from hermes_cron.paths import HomePaths
from hermes_cron.store import JobStore

WORKERS = 4


def _running_jobs(store: JobStore, clock: FakeClock, count: int) -> List[str]:
    ids = [store.add(sched("every 1h", clock), command=["true"])["id"] for _ in range(count)]
    for job_id in ids:
        assert store.claim_manual(job_id, f"owner-{job_id}").won
    return ids


def _finish_together(
    store: JobStore, paths: HomePaths, clock: FakeClock, ids: List[str]
) -> List[Any]:
    """Finish every job from its own thread while another process holds the lock, so
    they all wait for one write; returns what each call returned or raised."""
    results: List[Any] = [None] * len(ids)

    def finish(n: int) -> None:
        job_id = ids[n]
        try:
            results[n] = store.finish_run(
                job_id, f"owner-{job_id}", status="ok", error=None, started_at=clock.now()
            )
        except Exception as exc:
            results[n] = exc

    blocker = FileLock(paths.jobs_lock, timeout=10)
    blocker.acquire()
    threads = [threading.Thread(target=finish, args=(n,)) for n in range(len(ids))]
    try:
        for thread in threads:
            thread.start()
        # One thread leads (waiting for the lock); the others queue behind it.
        wait_until(lambda: len(store._group) >= len(ids) - 1, what="the requests to queue")
    finally:
        blocker.release()
    for thread in threads:
        thread.join(30)
    return results


def test_finishes_that_arrive_together_share_writes(
    paths: HomePaths, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = new_store(paths, clock)
    ids = _running_jobs(store, clock, WORKERS)
    import hermes_cron.store.file as store_module

    writes: List[int] = []
    real = store_module.atomic_write
    monkeypatch.setattr(
        store_module,
        "atomic_write",
        lambda path, data, **kw: (writes.append(1), real(path, data, **kw))[1],
    )
    results = _finish_together(store, paths, clock, ids)
    assert all(isinstance(r, dict) and r["last_status"] == "ok" for r in results), results
    assert len(writes) <= 2, f"{len(writes)} writes for {WORKERS} finishes"
    # Every change is on disk, as read by another process's view.
    fresh = new_store(paths, clock)
    for job_id in ids:
        record = fresh.get(job_id)
        assert record["fire_claim"] is None and record["last_status"] == "ok"


def test_a_failed_shared_write_fails_every_request_in_it(
    paths: HomePaths, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = new_store(paths, clock)
    ids = _running_jobs(store, clock, WORKERS)
    before = paths.jobs.read_bytes()
    fault = DiskFault(monkeypatch, named("jobs.json"), errno.ENOSPC, calls=("write",))
    results = _finish_together(store, paths, clock, ids)
    assert all(isinstance(r, StoreError) and "No space left" in str(r) for r in results), results
    assert paths.jobs.read_bytes() == before
    fault.off()
    # Nothing was half-applied: each run can still be recorded by its owner.
    for job_id in ids:
        assert store.finish_run(
            job_id, f"owner-{job_id}", status="ok", error=None, started_at=clock.now()
        )


def test_a_request_that_raises_does_not_fail_the_others(paths: HomePaths, clock: FakeClock) -> None:
    store = new_store(paths, clock)
    ids = _running_jobs(store, clock, 3)
    blocker = FileLock(paths.jobs_lock, timeout=10)
    outcomes: List[Any] = []

    def bad(txn: Any) -> None:
        raise ValueError("a bug in one request")

    def call(fn: Any) -> None:
        try:
            outcomes.append(store._mutate_grouped(fn))
        except Exception as exc:
            outcomes.append(exc)

    blocker.acquire()
    try:
        leader = threading.Thread(target=call, args=(lambda txn: "lead",))
        leader.start()
        # Not just "the group is empty": that is true before the leader has queued.
        wait_until(
            lambda: store._group_leader.locked() and not store._group,
            what="the leader to take its request",
        )
        threads = [threading.Thread(target=call, args=(bad,))]
        threads += [
            threading.Thread(
                target=lambda j=j: outcomes.append(
                    store.finish_run(
                        j, f"owner-{j}", status="ok", error=None, started_at=clock.now()
                    )
                )
            )
            for j in ids
        ]
        for thread in threads:
            thread.start()
        wait_until(lambda: len(store._group) == len(threads), what="the requests to queue")
    finally:
        blocker.release()
    for thread in [leader, *threads]:
        thread.join(30)
    errors = [o for o in outcomes if isinstance(o, Exception)]
    assert len(errors) == 1 and isinstance(errors[0], ValueError)
    assert all(store.get(j)["last_status"] == "ok" for j in ids)
