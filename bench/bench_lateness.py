"""Fire lateness of the built-in provider next to APScheduler 3, on the same work.

    python bench/bench_lateness.py [--duration 60] [--jobs 100] [--interval 2] [--workers 4]

Both schedulers run ``--jobs`` jobs ``every <interval>s`` for ``--duration``
seconds with the same number of worker threads, one after the other in this
process, and the job is the same trivial Python callable. Lateness is "the
callable started" minus "the time it was due":

By default the jobs are added back to back, so all of them fall due within a
fraction of a second every interval (a burst); ``--spread`` spreads their
anchors evenly over one interval instead. ``--command`` makes them command jobs
(``sh -c true``) run by a real ``hermes-cron daemon`` through the default
executor (lateness from its ledger rows), APScheduler's job running the same
command. ``--tmp /dev/shm`` puts HERMES_HOME on
tmpfs to take the disk's fsync latency out of the picture.

* hermes-cron: the job is a ``prompt`` job run by a ``run_job`` plugin; its due
  time is the claim's ``fire_at``. Each run goes through the whole durable path:
  a claim written to ``jobs.json`` (atomic, fsynced) before the run, output file,
  ledger row and ``finish_run`` after it.
* APScheduler: a ``BackgroundScheduler`` with a ``ThreadPoolExecutor`` of the same
  size, in-memory job store; each job uses the same anchor as its hermes-cron
  twin (``IntervalTrigger(start_date=anchor)``), so due times are identical and
  the due time of a call is ``anchor + k * interval`` (k from the call time).

Prints p50/p90/p99/max lateness in milliseconds for each, the number of runs,
and the ratio hermes-cron / APScheduler. Requires ``APScheduler<4`` (the
``bench`` extra).
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Optional

UTC = timezone.utc
#: The p99 goal: at most this times APScheduler's in the same run.
GOAL_RATIO = 0.8


def percentiles(values: List[float]) -> Dict[str, float]:
    if not values:
        return {"p50": math.nan, "p90": math.nan, "p99": math.nan, "max": math.nan}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    return {"p50": pick(0.50), "p90": pick(0.90), "p99": pick(0.99), "max": ordered[-1]}


def bench_hermes(
    jobs: int, interval: int, duration: float, workers: int, tmp: Optional[str], spread: bool
) -> Dict[str, Any]:
    """Run the built-in provider; returns lateness samples (ms) and the jobs' anchors."""
    from hermes_cron import hookimpl
    from hermes_cron.runner import RunOutcome
    from hermes_cron.schedules import parse_schedule
    from hermes_cron.service import CronService
    from hermes_cron.timeutil import parse_iso

    lateness: List[float] = []
    lock = threading.Lock()

    class Runner:
        @hookimpl
        def run_job(self, ctx: Any, job: Dict[str, Any]) -> Optional[RunOutcome]:
            now = datetime.now(UTC)
            due = parse_iso(job["fire_claim"]["fire_at"])
            with lock:
                lateness.append((now - due).total_seconds() * 1000)
            return RunOutcome(status="ok", output="x")

    home = tempfile.mkdtemp(prefix="hermes-cron-bench-", dir=tmp)
    with open(f"{home}/config.yaml", "w", encoding="utf-8") as fh:
        fh.write(f"cron:\n  max_workers: {workers}\n")
    service = CronService.from_home(home, plugins=[Runner()])
    anchors = []
    base = datetime.now(UTC)
    for i in range(jobs):
        if spread:
            # Anchors evenly spread over one interval: the jobs' fires never coincide.
            anchor = base + timedelta(seconds=interval * i / jobs)
            schedule = parse_schedule(f"every {interval}s", tz="UTC", now=anchor)
            job = service.store.add(schedule, prompt=f"job {i}")
        else:
            job = service.add_job(f"every {interval}s", prompt=f"job {i}")
        anchors.append(parse_iso(job["schedule"]["anchor"]))
    handle = service.start_in_thread()
    time.sleep(duration)
    handle.stop(60)
    skipped = sum(1 for r in service.ledger.read() if r["status"] == "skipped")
    return {"lateness": lateness, "anchors": anchors, "skipped": skipped, "home": home}


def bench_hermes_daemon(
    jobs: int,
    interval: int,
    duration: float,
    workers: int,
    tmp: Optional[str],
    spread: bool,
    command: List[str],
) -> Dict[str, Any]:
    """Command jobs through a real ``hermes-cron daemon`` (the default executor);
    lateness from the ledger rows (``started_at - fire_at``)."""
    import json
    import os
    import signal
    import subprocess
    import sys

    from hermes_cron.schedules import parse_schedule
    from hermes_cron.service import CronService
    from hermes_cron.timeutil import parse_iso

    home = tempfile.mkdtemp(prefix="hermes-cron-bench-", dir=tmp)
    with open(f"{home}/config.yaml", "w", encoding="utf-8") as fh:
        fh.write(f"cron:\n  max_workers: {workers}\n")
    service = CronService.from_home(home)
    anchors = []
    # The first fires come after the daemon has started.
    base = datetime.now(UTC) + timedelta(seconds=1.5)
    for i in range(jobs):
        anchor = base + timedelta(seconds=interval * i / jobs if spread else 0)
        schedule = parse_schedule(f"every {interval}s", tz="UTC", now=anchor)
        job = service.store.add(schedule, command=command)
        anchors.append(parse_iso(job["schedule"]["anchor"]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "hermes_cron", "daemon"],
        env=dict(os.environ, HERMES_HOME=home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(duration + 1.5 + interval)
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    lateness: List[float] = []
    skipped = 0
    with open(f"{home}/cron/runs.jsonl", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            if row["status"] != "ok":
                skipped += 1
                continue
            late = parse_iso(row["started_at"]) - parse_iso(row["fire_at"])
            lateness.append(late.total_seconds() * 1000)
    return {"lateness": lateness, "anchors": anchors, "skipped": skipped, "home": home}


def bench_apscheduler(
    anchors: List[datetime],
    interval: int,
    duration: float,
    workers: int,
    command: Optional[List[str]] = None,
) -> Dict[str, Any]:
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.interval import IntervalTrigger

    lateness: List[float] = []
    lock = threading.Lock()
    # Shift the anchors so the first fires come one interval after this run starts.
    shift = datetime.now(UTC) - min(anchors)
    shifted = [a + shift for a in anchors]

    def work(anchor: datetime) -> None:
        now = datetime.now(UTC)
        k = math.floor((now - anchor).total_seconds() / interval)
        due = anchor + timedelta(seconds=k * interval)
        if command is not None:
            import subprocess

            subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True)
        with lock:
            lateness.append((now - due).total_seconds() * 1000)

    scheduler = BackgroundScheduler(
        executors={"default": ThreadPoolExecutor(workers)},
        job_defaults={"misfire_grace_time": 3600, "coalesce": True, "max_instances": 1},
        timezone=UTC,
    )
    for anchor in shifted:
        scheduler.add_job(
            work, IntervalTrigger(seconds=interval, start_date=anchor, timezone=UTC), args=[anchor]
        )
    scheduler.start()
    time.sleep(duration)
    scheduler.shutdown(wait=True)
    return {"lateness": lateness}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per scheduler")
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--interval", type=int, default=2, help="seconds between fires")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument(
        "--spread",
        action="store_true",
        help="spread the jobs' anchors over one interval (default: added back to back, so "
        "all jobs fall due within a fraction of a second: a burst)",
    )
    parser.add_argument(
        "--command",
        action="store_true",
        help="command jobs (sh -c true) through a real 'hermes-cron daemon'; APScheduler "
        "runs the same command in its job",
    )
    parser.add_argument(
        "--tmp", metavar="DIR", help="create HERMES_HOME under DIR (e.g. /dev/shm; default: TMPDIR)"
    )
    args = parser.parse_args()

    print(
        f"{args.jobs} jobs every {args.interval}s for {args.duration:g}s each, "
        f"{args.workers} workers, {'spread' if args.spread else 'burst'}; "
        f"HERMES_HOME under {args.tmp or tempfile.gettempdir()}"
    )
    command = ["sh", "-c", "true"] if args.command else None
    if command is not None:
        mine = bench_hermes_daemon(
            args.jobs, args.interval, args.duration, args.workers, args.tmp, args.spread, command
        )
    else:
        mine = bench_hermes(
            args.jobs, args.interval, args.duration, args.workers, args.tmp, args.spread
        )
    theirs = bench_apscheduler(mine["anchors"], args.interval, args.duration, args.workers, command)
    expected = int(args.jobs * args.duration / args.interval)
    rows = [("hermes-cron built-in", mine["lateness"]), ("APScheduler 3", theirs["lateness"])]
    print(
        f"{'lateness (ms)':22} {'runs':>6} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8} {'mean':>8}"
    )
    stats = {}
    for label, values in rows:
        p = percentiles(values)
        stats[label] = p
        mean = statistics.fmean(values) if values else math.nan
        print(
            f"{label:22} {len(values):6d} {p['p50']:8.2f} {p['p90']:8.2f} {p['p99']:8.2f} "
            f"{p['max']:8.2f} {mean:8.2f}"
        )
    print(f"(about {expected} runs expected each; hermes-cron skipped {mine['skipped']})")
    a, b = stats["hermes-cron built-in"], stats["APScheduler 3"]
    for key in ("p50", "p99", "max"):
        ratio = a[key] / b[key] if b[key] else math.inf
        print(f"ratio hermes-cron / APScheduler {key}: {ratio:.2f}")
    goal = a["p99"] <= GOAL_RATIO * b["p99"] and a["p99"] < 50
    print(f"goal (p99 <= {GOAL_RATIO}x APScheduler's and < 50 ms): {'met' if goal else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
