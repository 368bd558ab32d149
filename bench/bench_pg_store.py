"""Benchmark the PostgreSQL store at 100, 10,000 and 100,000 jobs (prints a table; not a
test). Starts a throwaway server (``hermes_cron.testing.pgcluster``).

For each size N, on a database already holding N jobs (300 of them due):

* ``create``: ``store.add`` (ms per op);
* ``claim+finish``: ``claim`` of a due job, then ``finish_run`` (ms per op);
* ``due``: ``due(now)`` when nothing is due, the built-in loop's call on each wake (ms);
* ``next_due_at``: the loop's other call on each wake (ms);
* ``catch-up``: ``catch_up()`` with nothing to catch up (ms);
* ``snapshot``: every row read and checked, warm cache (ms).

Run: ``.venv/bin/python bench/bench_pg_store.py [--sizes 100,10000,100000]``.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Callable, Dict, List

import psycopg

from hermes_cron.clock import SystemClock
from hermes_cron.paths import HomePaths
from hermes_cron.schedules import parse_schedule
from hermes_cron.store.postgres import PostgresStore
from hermes_cron.testing.pgcluster import PgCluster
from hermes_cron.timeutil import parse_iso, to_iso

#: Jobs due at the start (the same at every size: catch-up follows them, not N).
DUE = 300


def per_op(fn: Callable[[], object], count: int) -> float:
    began = time.perf_counter()
    for _ in range(count):
        fn()
    return (time.perf_counter() - began) / count * 1000


def fill(store: PostgresStore, url: str, size: int) -> List[str]:
    """``size`` hourly jobs written straight into the table (as the store writes them);
    ``DUE`` of them (spread over the table) are due now."""
    clock = SystemClock()
    template = store.add(parse_schedule("every 1h", now=clock.now()), command=["true"])
    store.remove(template["id"])
    due_ids = []
    now = clock.now()
    rows = []
    for n in range(size):
        job = dict(template, id=f"j{n:07d}", name=f"job {n}")
        due = n % max(1, size // DUE) == 0 and len(due_ids) < DUE
        at = now - timedelta(seconds=1) if due else now + timedelta(hours=1)
        job["next_run_at"] = to_iso(at)
        if due:
            due_ids.append(job["id"])
        rows.append((job["id"], json.dumps(job), at))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET hermes_cron.writer = 'on'")
        with conn.cursor() as cur:
            with cur.copy(
                "COPY hermes_cron_jobs (id, record, next_run_at, active) FROM STDIN"
            ) as copy:
                for job_id, record, at in rows:
                    copy.write_row((job_id, record, at, True))
        conn.execute("ANALYZE hermes_cron_jobs")
    return due_ids


def measure(cluster: PgCluster, size: int) -> Dict[str, float]:
    url = cluster.new_database()
    store = PostgresStore(url, HomePaths.at("/nonexistent"), clock=SystemClock())
    try:
        due_ids = iter(fill(store, url, size))
        clock = SystemClock()
        sched = parse_schedule("every 1h", now=clock.now())
        far = clock.now() - timedelta(days=1)

        def claim_finish() -> None:
            job_id = next(due_ids)
            claim = store.claim(job_id, parse_iso(store.get(job_id)["next_run_at"]), "bench")
            assert claim.won, claim
            store.finish_run(job_id, "bench", status="ok", error=None, started_at=clock.now())

        return {
            "create": per_op(lambda: store.add(sched, command=["true"]), 200),
            "claim+finish": per_op(claim_finish, min(200, size)),
            "due": per_op(lambda: store.due(far), 500),
            "next_due_at": per_op(store.next_due_at, 500),
            "catch-up": per_op(store.catch_up, 5),
            "snapshot": per_op(store.snapshot, 3 if size > 10000 else 10),
        }
    finally:
        store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,10000,100000")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    cluster = PgCluster.start()
    results: Dict[str, Dict[str, float]] = {}
    try:
        for size in [int(s) for s in args.sizes.split(",")]:
            results[str(size)] = measure(cluster, size)
            shown = {k: round(v, 3) for k, v in results[str(size)].items()}
            print(f"{size:>7} jobs (ms per call): {shown}", flush=True)
    finally:
        cluster.stop()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
