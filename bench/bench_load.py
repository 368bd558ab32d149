"""Fire lateness under load: 10,000 jobs every minute through ``hermes-cron daemon``,
next to APScheduler 3 (memory store and SQLite store) on the same work in the same run.

    python bench/bench_load.py [--jobs 10000] [--duration 40] [--full] [--workers 8]
                               [--json PATH] [--skip-sqlite]

Each job is ``every 60s`` with command ``true``; the anchors are spread evenly over
the minute, so the load is ``jobs / 60`` fires a second (167/s for 10,000 jobs).

* hermes-cron: the records are written straight into ``jobs.json`` (adding 10,000
  jobs one write each would take minutes), ``cron.max_workers`` set, and a real
  ``hermes-cron daemon`` runs them for ``--duration`` seconds. Lateness is the
  ledger row's ``started_at - fire_at``. Every fire due between the first due time
  and two seconds before the stop must have exactly one ``ok`` row: the rest are
  counted as missed (no row, or a ``missed``/``skipped``/error row) or doubled.
* APScheduler 3: a ``BackgroundScheduler`` with a ``ThreadPoolExecutor`` of the
  same size, each job ``subprocess.run(["true"])``, the same spread of anchors;
  once with the memory job store, once with ``SQLAlchemyJobStore`` on a SQLite
  file. Lateness is the call's start minus its scheduled time.

Prints p50/p99/max (ms) and runs per expected fire for each, the ratios
hermes-cron / APScheduler-on-SQLite, and the verdict for the goal (p99 at most
0.8x APScheduler-on-SQLite's, nothing missed or doubled). ``--json PATH`` writes
the figures for ``bench/run_all.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Dict, List, Tuple

UTC = timezone.utc
INTERVAL = 60
#: Fires due this close to the stop are not counted (they may still be running).
TAIL = 2.0
#: The p99 goal: at most this times APScheduler-on-SQLite's in the same run.
GOAL_RATIO = 0.8


def percentiles(values: List[float]) -> Dict[str, float]:
    if not values:
        return {"p50": math.nan, "p99": math.nan, "max": math.nan, "n": 0}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    return {"p50": pick(0.5), "p99": pick(0.99), "max": ordered[-1], "n": len(ordered)}


def _iso(t: datetime) -> str:
    return t.isoformat()


def _expected(first: List[datetime], begin: datetime, end: datetime) -> List[Tuple[int, datetime]]:
    """(job index, due time) of every fire due in ``[begin, end)``."""
    out = []
    for i, at in enumerate(first):
        while at < end:
            if at >= begin:
                out.append((i, at))
            at += timedelta(seconds=INTERVAL)
    return out


def bench_hermes(jobs: int, duration: float, workers: int, lead: float) -> Dict[str, Any]:
    from hermes_cron.timeutil import parse_iso

    home = Path(tempfile.mkdtemp(prefix="hermes-cron-load-"))
    (home / "cron").mkdir()
    (home / "config.yaml").write_text(f"cron:\n  max_workers: {workers}\n", encoding="utf-8")
    base = datetime.now(UTC) + timedelta(seconds=lead)
    firsts = [base + timedelta(seconds=INTERVAL * i / jobs) for i in range(jobs)]
    created = _iso(datetime.now(UTC))
    records = []
    for i, first in enumerate(firsts):
        records.append(
            {
                "id": f"load{i:06d}",
                "name": f"load {i}",
                "schedule": {
                    "kind": "interval",
                    "text": "every 60s",
                    "tz": "Etc/UTC",
                    "seconds": INTERVAL,
                    "anchor": _iso(first - timedelta(seconds=INTERVAL)),
                },
                "command": ["true"],
                "prompt": None,
                "enabled": True,
                "state": "scheduled",
                "repeat": {"times": None, "completed": 0},
                "next_run_at": _iso(first),
                "last_run_at": None,
                "last_status": None,
                "last_error": None,
                "fire_claim": None,
                "misfire_grace": None,
                "timeout": None,
                "created_at": created,
                "updated_at": created,
            }
        )
    lines = ",\n    ".join(json.dumps(r, ensure_ascii=False) for r in records)
    (home / "cron" / "jobs.json").write_text(
        '{\n  "version": 1,\n  "jobs": [\n    ' + lines + "\n  ]\n}\n", encoding="utf-8"
    )
    env = dict(os.environ, HERMES_HOME=str(home))
    proc = subprocess.Popen(
        [sys.executable, "-m", "hermes_cron", "daemon"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stop_at = base + timedelta(seconds=duration)
    time.sleep(max(0.0, (stop_at - datetime.now(UTC)).total_seconds()))
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    rows: Dict[Tuple[str, str], List[Dict[str, Any]]] = {}
    ledger = home / "cron" / "runs.jsonl"
    if ledger.exists():
        for line in ledger.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            fire = _iso(parse_iso(row["fire_at"]))
            rows.setdefault((row["job_id"], fire), []).append(row)
    lateness, missed, doubled = [], 0, 0
    expected = _expected(firsts, base, stop_at - timedelta(seconds=TAIL))
    for i, due in expected:
        got = [r for r in rows.get((f"load{i:06d}", _iso(due)), []) if r["status"] == "ok"]
        if not got:
            missed += 1
            continue
        doubled += len(got) - 1
        started = parse_iso(got[0]["started_at"])
        lateness.append((started - due).total_seconds() * 1000)
    return {
        "lateness": lateness,
        "expected": len(expected),
        "missed": missed,
        "doubled": doubled,
        "code": proc.returncode,
        "home": str(home),
    }


_APS_LATENESS: List[float] = []
_APS_LOCK = threading.Lock()


def aps_work(anchor: datetime) -> None:
    """The APScheduler job (module level: the SQLite store keeps a reference to it)."""
    now = datetime.now(UTC)
    k = math.floor((now - anchor).total_seconds() / INTERVAL + 1e-9)
    due = anchor + timedelta(seconds=k * INTERVAL)
    subprocess.run(["true"], stdin=subprocess.DEVNULL)
    with _APS_LOCK:
        _APS_LATENESS.append((now - due).total_seconds() * 1000)


def bench_apscheduler(
    jobs: int, duration: float, workers: int, lead: float, sqlite: bool
) -> Dict[str, Any]:
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.interval import IntervalTrigger

    stores: Dict[str, Any] = {}
    folder = tempfile.mkdtemp(prefix="hermes-cron-load-aps-")
    if sqlite:
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

        stores["default"] = SQLAlchemyJobStore(url=f"sqlite:///{folder}/jobs.sqlite")
    scheduler = BackgroundScheduler(
        jobstores=stores,
        executors={"default": ThreadPoolExecutor(workers)},
        job_defaults={"misfire_grace_time": 3600, "coalesce": True, "max_instances": 1},
        timezone=UTC,
    )
    with _APS_LOCK:
        _APS_LATENESS.clear()
    scheduler.start(paused=True)
    began = time.monotonic()
    # Anchors after the jobs are in (adding 10,000 to SQLite takes a while).
    add_time = 20.0 if sqlite else 3.0
    base = datetime.now(UTC) + timedelta(seconds=lead + add_time)
    for i in range(jobs):
        anchor = base + timedelta(seconds=INTERVAL * i / jobs)
        scheduler.add_job(
            aps_work,
            IntervalTrigger(seconds=INTERVAL, start_date=anchor, timezone=UTC),
            args=[anchor],
            id=f"load{i:06d}",
        )
    added = time.monotonic() - began
    if datetime.now(UTC) > base:
        print(f"warning: adding the jobs took {added:.1f} s, past their first fire")
    scheduler.resume()
    stop_at = base + timedelta(seconds=duration)
    time.sleep(max(0.0, (stop_at - datetime.now(UTC)).total_seconds()))
    scheduler.shutdown(wait=True)
    with _APS_LOCK:
        values = list(_APS_LATENESS)
    firsts = [base + timedelta(seconds=INTERVAL * i / jobs) for i in range(jobs)]
    expected = len(_expected(firsts, base, stop_at - timedelta(seconds=TAIL)))
    return {"lateness": values, "expected": expected, "added_s": added}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--duration", type=float, default=40.0, help="seconds per scheduler")
    parser.add_argument("--full", action="store_true", help="120 s per scheduler")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--json", metavar="PATH", help="write the figures here")
    parser.add_argument(
        "--hermes-only",
        action="store_true",
        help="no APScheduler runs (to profile the daemon: py-spy record --pid)",
    )
    args = parser.parse_args()
    duration = 120.0 if args.full else args.duration
    rate = args.jobs / INTERVAL
    print(
        f"{args.jobs} jobs every {INTERVAL}s spread over the minute ({rate:.0f} fires/s), "
        f"command true, {args.workers} workers, {duration:g} s each"
    )
    mine = bench_hermes(args.jobs, duration, args.workers, 4.0)
    rows = [("hermes-cron daemon", mine)]
    if not args.hermes_only:
        memory = bench_apscheduler(args.jobs, duration, args.workers, 2.0, False)
        rows.append(("APScheduler 3 memory", memory))
    if not args.skip_sqlite and not args.hermes_only:
        rows.append(
            (
                "APScheduler 3 SQLite",
                bench_apscheduler(args.jobs, duration, args.workers, 2.0, True),
            )
        )
    print(f"{'lateness (ms)':22} {'runs':>7} {'expected':>8} {'p50':>8} {'p99':>8} {'max':>9}")
    figures: Dict[str, Any] = {}
    for label, data in rows:
        p = percentiles(data["lateness"])
        figures[label] = {**p, "expected": data["expected"]}
        print(
            f"{label:22} {p['n']:7d} {data['expected']:8d} {p['p50']:8.2f} {p['p99']:8.2f} "
            f"{p['max']:9.2f}"
        )
    print(
        f"hermes-cron: {mine['missed']} missed, {mine['doubled']} doubled of {mine['expected']} "
        f"expected fires (daemon exit code {mine['code']})"
    )
    peer = rows[-1][0]
    a, b = figures["hermes-cron daemon"], figures[peer]
    for key in ("p50", "p99", "max"):
        ratio = a[key] / b[key] if b[key] else math.inf
        print(f"ratio hermes-cron / {peer} {key}: {ratio:.2f}")
    ratio = a["p99"] / b["p99"] if b["p99"] else math.inf
    met = ratio <= GOAL_RATIO and mine["missed"] == 0 and mine["doubled"] == 0
    print(
        f"goal (p99 <= {GOAL_RATIO}x {peer}'s, nothing missed or doubled): "
        f"{'met' if met else 'NOT met'}"
    )
    if args.json:
        out = {
            "figures": figures,
            "peer": peer,
            "ratio_p99": ratio,
            "goal_ratio": GOAL_RATIO,
            "missed": mine["missed"],
            "doubled": mine["doubled"],
            "expected": mine["expected"],
            "met": met,
            "jobs": args.jobs,
            "duration": duration,
        }
        Path(args.json).write_text(json.dumps(out, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
