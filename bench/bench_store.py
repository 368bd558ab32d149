"""Benchmark the job store at 100, 1,000 and 10,000 jobs (prints a table; not a test).

Measures, for each size N:

* ``create``: ``store.add`` on a store already holding N jobs (ops/s);
* ``claim+finish``: one ``claim`` plus one ``finish_run`` (ops/s);
* ``list``: ``list_jobs()`` with the file unchanged (cached parse, fresh copies; ops/s);
* ``cold read``: the first ``snapshot()`` of a new store: read, parse, validate (s);
* ``recompute``: ``next_after(now)`` for every job's schedule (s) -- the goal is < 1 s at 10k;
* ``catch-up``: ``store.catch_up()`` after a week away, every job overdue (one write; s).

Then the growth ratio of each figure from one size to the next (10x more jobs).

Run: ``.venv/bin/python bench/bench_store.py [--sizes 100,1000,10000] [--with-100k]
[--json PATH]``. ``--with-100k`` adds a 100,000-job store (a 60 MB file: every write
rewrites it, so that size takes a minute); ``--json`` also writes the figures to PATH.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable, Dict, List

from hermes_cron.clock import FakeClock
from hermes_cron.paths import HomePaths
from hermes_cron.schedules import parse_schedule
from hermes_cron.store import JobStore
from hermes_cron.timeutil import UTC, to_iso

ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo", "Australia/Sydney"]


def _schedule_text(i: int) -> str:
    """Varied schedules, so no cache inside the schedule code makes them look cheap."""
    kind = i % 4
    if kind == 0:
        return f"{i % 60} {i % 24} * * *"
    if kind == 1:
        return f"every {30 + i % 997}s"
    if kind == 2:
        return f"*/{1 + i % 29} {i % 12}-{12 + i % 12} * * 1-5"
    return f"{i % 60} {i % 24} {1 + i % 28} * *"


def _rate(fn: Callable[[int], object], count: int) -> float:
    started = time.perf_counter()
    for i in range(count):
        fn(i)
    return count / (time.perf_counter() - started)


def _seconds(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _populate(home: Path, size: int, clock: FakeClock) -> None:
    """Write ``size`` jobs at once (adding them one by one would rewrite the file N times)."""
    seed = JobStore(HomePaths.at(home / "seed"), clock=clock)
    template = seed.add(parse_schedule("every 1h", now=clock.now()), command=["true"])
    records = []
    for i in range(size):
        text = _schedule_text(i)
        schedule = parse_schedule(text, tz=ZONES[i % len(ZONES)], now=clock.now())
        record = dict(template)
        record["id"] = f"bench{i:06d}"
        record["name"] = f"bench job {i}"
        record["command"] = ["true", str(i)]
        record["schedule"] = schedule.to_record()
        record["next_run_at"] = to_iso(schedule.next_after(clock.now()))
        records.append(json.dumps(record))
    paths = HomePaths.at(home)
    paths.cron_dir.mkdir(parents=True, exist_ok=True)
    body = ",\n    ".join(records)
    paths.jobs.write_text('{\n  "version": 1,\n  "jobs": [\n    ' + body + "\n  ]\n}\n")


def measure(size: int, ops: int) -> Dict[str, float]:
    root = Path(tempfile.mkdtemp(prefix="hermes-bench-"))
    try:
        clock = FakeClock(datetime(2026, 3, 2, 12, 0, tzinfo=UTC))
        _populate(root, size, clock)
        paths = HomePaths.at(root)
        cold = JobStore(paths, clock=clock)
        result: Dict[str, float] = {"cold read": _seconds(cold.snapshot)}
        assert len(cold.snapshot().jobs) == size and not cold.snapshot().quarantined

        store = JobStore(paths, clock=clock)
        store.snapshot()
        schedule = parse_schedule("every 1h", now=clock.now())
        result["create"] = _rate(lambda i: store.add(schedule, command=["true", str(i)]), ops)

        ids = [j["id"] for j in store.list_jobs()[:ops]]
        clock.set(clock.now() + timedelta(hours=2))

        def claim_finish(i: int) -> None:
            job_id = ids[i]
            fire = datetime.fromisoformat(store.get(job_id)["next_run_at"])
            if fire <= clock.now():  # due: a scheduled claim (applies the catch-up policy)
                claim = store.claim(job_id, fire, f"bench{i}")
            else:  # not due yet: a manual run, same single write
                claim = store.claim_manual(job_id, f"bench{i}")
            assert claim.won, claim
            store.finish_run(job_id, claim.owner, status="ok", error=None, started_at=clock.now())

        result["claim+finish"] = _rate(claim_finish, ops)
        result["list"] = _rate(lambda i: store.list_jobs(), max(3, ops // 2))

        now = clock.now()
        pairs = store.schedules()
        result["recompute"] = _seconds(lambda: [s.next_after(now) for _, s in pairs])

        clock.set(clock.now() + timedelta(days=7))
        result["catch-up"] = _seconds(store.catch_up)
        result["file MB"] = os.path.getsize(paths.jobs) / 1e6
        return result
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--ops", type=int, default=20, help="operations per timed rate")
    parser.add_argument("--with-100k", action="store_true", help="add a 100,000-job store")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.with_100k and 100_000 not in sizes:
        sizes.append(100_000)
    columns = [
        ("create", "ops/s"),
        ("claim+finish", "ops/s"),
        ("list", "ops/s"),
        ("cold read", "s"),
        ("recompute", "s"),
        ("catch-up", "s"),
        ("file MB", "MB"),
    ]
    print(
        f"hermes-cron store benchmark (python {sys.version.split()[0]}, "
        f"{to_iso(datetime.now(UTC))})"
    )
    results = {size: measure(size, args.ops) for size in sizes}
    header = f"{'jobs':>8} " + " ".join(f"{name + ' (' + unit + ')':>20}" for name, unit in columns)
    print(header)
    print("-" * len(header))
    for size in sizes:
        row = results[size]
        print(f"{size:>8} " + " ".join(f"{row[name]:>20.4g}" for name, _ in columns))
    print()
    print("growth from one size to the next (ops/s: slowdown factor; seconds: time factor)")
    for small, big in zip(sizes, sizes[1:]):
        parts = []
        for name, unit in columns:
            a, b = results[small][name], results[big][name]
            factor = a / b if unit == "ops/s" else b / a
            parts.append(f"{name} x{factor:.1f}")
        print(f"  {small} -> {big}: " + ", ".join(parts))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({str(size): results[size] for size in sizes}, fh, indent=2)
    biggest = max(sizes)
    verdict = "OK" if results[biggest]["recompute"] < 1.0 else "OVER GOAL"
    print(
        f"\nfull next-fire recompute at {biggest} jobs: "
        f"{results[biggest]['recompute']:.3f} s (goal < 1 s: {verdict})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
