"""Per-fire store cost and ``add`` against APScheduler 3's SQLAlchemy job store, one run.

For each size N (jobs already in the store) and each store:

* ``fire``: what one fire costs the store, in fires/s, one fire at a time. Ours:
  ``claim`` of a due job plus ``finish_run`` (the claim advances ``next_run_at``; on
  PostgreSQL it also writes the fire's ledger row). APScheduler's: ``lookup_job``
  plus ``update_job`` with the next run time, what its scheduler does per due job;
* ``fire batched``: ours as the built-in loop fires under load: 25 due fires in one
  ``claim_many`` and their ends in one ``finish_runs``;
* ``add``: one job added to a store holding N, in adds/s;
* ``claim@N / claim@first``: how the fire cost grows with the store (goal: flat on
  PostgreSQL).

Stores: ``file`` (jobs.json), ``postgres`` (our PostgreSQL store), ``aps-sqlite``
(APScheduler's SQLAlchemyJobStore on a SQLite file) and ``aps-postgres`` (the same on
the same PostgreSQL server). PostgreSQL rows need ``--pg-url URL`` (an empty database
each store may fill) or ``--start-pg`` (a throwaway cluster on loopback, run as the
``postgres`` user: see ``hermes_cron.testing.pgcluster``).

Goal (issue 9): per fire on PostgreSQL at 100,000 jobs at least APScheduler-on-SQLite's
rate; a claim costs the same at 100 and at 100,000 jobs.

Run: ``python bench/bench_store_peers.py [--sizes 1000,10000,100000] [--stores ...]
[--pg-url URL | --start-pg] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import json
import pickle
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

from hermes_cron.clock import FakeClock
from hermes_cron.paths import HomePaths
from hermes_cron.schedules import parse_schedule
from hermes_cron.timeutil import UTC

START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def _rate(fn: Callable[[int], object], count: int) -> float:
    started = time.perf_counter()
    for i in range(count):
        fn(i)
    return count / (time.perf_counter() - started)


#: Fires per claim_many / finish_runs in the batched figure.
BATCH = 25


def _ops_for(size: int, store: str) -> int:
    # The file store rewrites the whole file per write: a few ops say enough at 100k.
    if store == "file":
        return max(BATCH, min(200, 2_000_000 // max(size, 1)))
    return 300


# -- ours --------------------------------------------------------------------------


def _records(size: int, clock: FakeClock) -> List[Dict[str, Any]]:
    from hermes_cron.store.rules import new_job

    schedule = parse_schedule("every 1h", now=clock.now())
    out = []
    for i in range(size):
        rec = new_job(
            f"bench{i:06d}",
            schedule,
            clock.now(),
            command=["true", str(i)],
            prompt=None,
            name=None,
            repeat=None,
        )
        out.append(rec.job)
    return out


def measure_ours(kind: str, size: int, url: Optional[str]) -> Dict[str, float]:
    from hermes_cron.config import DEFAULTS, deep_merge
    from hermes_cron.store import open_store

    root = Path(tempfile.mkdtemp(prefix="hermes-bench-"))
    try:
        clock = FakeClock(START)
        config = deep_merge(DEFAULTS, {"cron": {"store": url if kind == "postgres" else ""}})
        store = open_store(HomePaths.at(root), config, clock=clock)
        try:
            store.import_records(_records(size, clock), replace=True)
            ops = _ops_for(size, kind)
            schedule = parse_schedule("every 1h", now=clock.now())
            result = {"add": _rate(lambda i: store.add(schedule, command=["true", str(i)]), ops)}
            clock.set(START + timedelta(hours=1))
            due = store.due(clock.now())[: 2 * ops]
            assert len(due) == 2 * ops, (len(due), ops)

            def fire(i: int) -> None:
                job_id, at = due[i]
                claim = store.claim(job_id, at, f"bench{i}")
                assert claim.won, claim
                store.finish_run(job_id, claim.owner, status="ok", error=None, started_at=at)

            result["fire"] = _rate(fire, ops)
            # As the built-in loop fires under load: every fire due within its claim
            # window in one claim_many, their ends in one finish_runs (group commit).
            batch = BATCH
            rest = due[ops:]

            def fire_batch(i: int) -> None:
                fires = rest[i * batch : (i + 1) * batch]
                claims = store.claim_many(fires, f"batch{i}")
                assert all(c.won for c in claims), claims
                store.finish_runs([(c.job_id, c.owner, "ok", None, c.fire_at) for c in claims])

            result["fire batched"] = _rate(fire_batch, ops // batch) * batch
            return result
        finally:
            store.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- APScheduler 3 ---------------------------------------------------------------------


def _noop() -> None:
    """The job APScheduler stores (never run here)."""


def aps_url(url: str) -> str:
    """The SQLAlchemy URL of a ``postgresql://`` URL (APScheduler's store on psycopg 3)."""
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def aps_job(
    scheduler: Any,
    job_id: str,
    func: Callable[..., Any],
    trigger: Any,
    next_run_time: datetime,
    args: Sequence[Any] = (),
) -> Any:
    """An APScheduler 3 ``Job`` as its ``add_job`` would make it (one default executor;
    coalescing, one instance, an hour of misfire grace)."""
    from apscheduler.job import Job

    return Job(
        scheduler,
        id=job_id,
        func=func,
        trigger=trigger,
        executor="default",
        args=tuple(args),
        kwargs={},
        name=job_id,
        misfire_grace_time=3600,
        coalesce=True,
        max_instances=1,
        next_run_time=next_run_time,
    )


def aps_fill(store: Any, jobs: Iterable[Any]) -> None:
    """Write ``jobs`` into an APScheduler ``SQLAlchemyJobStore`` in one transaction, as the
    store's own rows (its ``add_job`` commits one by one, which only makes a fill slow:
    what is measured afterwards is the same)."""
    with store.engine.begin() as conn:
        rows = []
        for job in jobs:
            rows.append(
                {
                    "id": job.id,
                    "next_run_time": job.next_run_time.timestamp(),
                    "job_state": pickle.dumps(job.__getstate__(), store.pickle_protocol),
                }
            )
            if len(rows) >= 5000:
                conn.execute(store.jobs_t.insert(), rows)
                rows = []
        if rows:
            conn.execute(store.jobs_t.insert(), rows)


def pg_cluster(stack: ExitStack) -> Any:
    """A throwaway PostgreSQL cluster (``hermes_cron.testing.pgcluster``), stopped and
    deleted when ``stack`` closes."""
    from hermes_cron.testing.pgcluster import PgCluster

    cluster = PgCluster.start()
    stack.callback(cluster.remove)
    stack.callback(cluster.stop)
    return cluster


def measure_aps(kind: str, size: int, url: Optional[str]) -> Dict[str, float]:
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.interval import IntervalTrigger

    root = Path(tempfile.mkdtemp(prefix="hermes-bench-aps-"))
    try:
        if kind == "aps-sqlite":
            engine_url = f"sqlite:///{root / 'jobs.sqlite'}"
        else:
            assert url is not None
            engine_url = aps_url(url)
        table = f"aps_jobs_{size}"
        store = SQLAlchemyJobStore(url=engine_url, tablename=table)
        scheduler = BackgroundScheduler(timezone="UTC")
        store.start(scheduler, "default")
        trigger = IntervalTrigger(hours=1, start_date=START, timezone="UTC")

        def job(i: int, prefix: str) -> Any:
            return aps_job(
                scheduler, f"{prefix}{i:06d}", _noop, trigger, START + timedelta(hours=1)
            )

        try:
            aps_fill(store, (job(i, "bench") for i in range(size)))
            ops = _ops_for(size, kind)
            result = {"add": _rate(lambda i: store.add_job(job(i, "new")), ops)}
            ids = [f"bench{i:06d}" for i in range(ops)]

            def fire(i: int) -> None:
                found = store.lookup_job(ids[i])
                found._modify(next_run_time=found.next_run_time + timedelta(hours=1))
                store.update_job(found)

            result["fire"] = _rate(fire, ops)
            return result
        finally:
            store.shutdown()
    finally:
        shutil.rmtree(root, ignore_errors=True)


MEASURES = {
    "file": measure_ours,
    "postgres": measure_ours,
    "aps-sqlite": measure_aps,
    "aps-postgres": measure_aps,
}


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--stores", default="file,postgres,aps-sqlite,aps-postgres")
    parser.add_argument("--pg-url", help="an empty PostgreSQL database for the pg rows")
    parser.add_argument("--start-pg", action="store_true", help="start a throwaway cluster")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    stores = [s for s in args.stores.split(",") if s]
    with ExitStack() as stack:
        url = args.pg_url
        cluster = None
        if args.start_pg and url is None:
            cluster = pg_cluster(stack)
            url = cluster.url()
        if url is None:
            stores = [s for s in stores if "postgres" not in s]
        figures: Dict[str, Dict[str, Dict[str, float]]] = {}
        for size in sizes:
            for name in stores:
                # A database of its own for each PostgreSQL row (with --pg-url: the one given).
                db_url = url
                if cluster is not None and "postgres" in name:
                    db_url = cluster.new_database()
                got = MEASURES[name](name, size, db_url)
                figures.setdefault(str(size), {})[name] = got
                print(
                    f"{size:>7} jobs  {name:<13} fire {got['fire']:>9.1f}/s"
                    f"  add {got['add']:>9.1f}/s",
                    flush=True,
                )
    print()
    print(
        "| jobs | store | fires/s one by one | fires/s batched | adds/s | best fire vs aps-sqlite |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for size, row in figures.items():
        peer = row.get("aps-sqlite", {}).get("fire")
        for name, got in row.items():
            best = max(got["fire"], got.get("fire batched", 0.0))
            ratio = f"{best / peer:.2f}x" if peer else "-"
            batched = f"{got['fire batched']:.1f}" if "fire batched" in got else "-"
            print(
                f"| {size} | {name} | {got['fire']:.1f} | {batched} | {got['add']:.1f} | {ratio} |"
            )
    if "postgres" in stores and len(sizes) > 1:
        first, last = figures[str(sizes[0])]["postgres"], figures[str(sizes[-1])]["postgres"]
        flat = last["fire"] / first["fire"]
        last_best = max(last["fire"], last["fire batched"])
        print(
            f"\npostgres fire rate at {sizes[-1]} vs {sizes[0]} jobs: {flat:.2f}x "
            f"(goal: about 1x) {'ok' if flat >= 0.7 else 'MISSED'}"
        )
        peer = figures[str(sizes[-1])].get("aps-sqlite", {}).get("fire")
        if peer:
            for label, ours in (("one by one", last["fire"]), ("batched", last_best)):
                ratio = ours / peer
                print(
                    f"postgres ({label}) vs aps-sqlite per fire at {sizes[-1]} jobs: "
                    f"{ratio:.2f}x (goal >= 1x) {'ok' if ratio >= 1 else 'MISSED'}"
                )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
