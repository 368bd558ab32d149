"""Fire lateness under load: 10,000 jobs every minute through ``hermes-cron daemon``,
on the file store and on PostgreSQL (one daemon, then two sharing the database), next
to APScheduler 3 (memory, SQLite and PostgreSQL stores) on the same work in the same run.

    python bench/bench_load.py [--jobs 10000] [--duration 40] [--full] [--workers 8]
                               [--store file|postgresql|all] [--daemons 1,2]
                               [--json PATH] [--skip-sqlite] [--hermes-only]
                               [--profile DIR]

Each job is ``every 60s`` with command ``true``; the anchors are spread evenly over
the minute, so the load is ``jobs / 60`` fires a second (167/s for 10,000 jobs).

* hermes-cron, file store: the records are written straight into ``jobs.json``
  (adding 10,000 jobs one write each would take minutes), ``cron.max_workers`` set,
  and a real ``hermes-cron daemon`` runs them for ``--duration`` seconds.
* hermes-cron, PostgreSQL (``--store postgresql``; a throwaway server from
  ``hermes_cron.testing.pgcluster``, a database of its own per run): the same records
  go in through the store's ``import_records`` (what ``store import`` does: one
  transaction), then one daemon, and in a second run two daemons, each with its own
  ``HERMES_HOME`` whose ``cron.store`` names the database, share them.
* Lateness is the ledger row's ``started_at - fire_at`` (``runs.jsonl``, or the
  store's ``runs.read()`` on PostgreSQL, every daemon's rows). Every fire due between
  the first due time and two seconds before the stop must have exactly one ``ok``
  row: the rest are counted as missed (no row, or a ``missed``/``skipped``/error row)
  or doubled.
* APScheduler 3: a ``BackgroundScheduler`` with a ``ThreadPoolExecutor`` of the
  same size, each job ``subprocess.run(["true"])``, the same spread of anchors;
  with the memory job store, then ``SQLAlchemyJobStore`` on a SQLite file (file
  runs), and on the same PostgreSQL server (PostgreSQL runs; its jobs written straight
  into its table, as ours are). Lateness is the call's start minus its scheduled time.

Prints p50/p99/max (ms) and runs per expected fire for each, and the verdicts: file
store, p99 at most 0.8x APScheduler-on-SQLite's, nothing missed or doubled;
PostgreSQL, p99 under 50 ms with one daemon and with two, nothing missed or doubled
(the ratio to APScheduler-on-PostgreSQL's p99 shown too). ``--json PATH`` writes the
figures for ``bench/run_all.py``.
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
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Dict, List, Tuple

UTC = timezone.utc
INTERVAL = 60
#: Fires due this close to the stop are not counted (they may still be running).
TAIL = 2.0
#: The p99 goal: at most this times APScheduler-on-SQLite's in the same run.
GOAL_RATIO = 0.8
#: The p99 goal on PostgreSQL (one daemon, and two sharing the database), in ms.
GOAL_MS = 50.0


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


def _records(firsts: List[datetime]) -> List[Dict[str, Any]]:
    """The job records, one ``every 60s`` job running ``true`` per first fire time."""
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
    return records


def _home(workers: int, store: str = "") -> Path:
    """A fresh ``HERMES_HOME`` with ``cron.max_workers`` (and ``cron.store``) set."""
    home = Path(tempfile.mkdtemp(prefix="hermes-cron-load-"))
    (home / "cron").mkdir()
    config = f"cron:\n  max_workers: {workers}\n"
    if store:
        config += f"  store: {json.dumps(store)}\n"
    (home / "config.yaml").write_text(config, encoding="utf-8")
    return home


def _open_store(home: Path) -> Any:
    """The store ``home``'s config names (``cron.store``), as the daemon opens it."""
    from hermes_cron.clock import SystemClock
    from hermes_cron.config import load_config
    from hermes_cron.paths import HomePaths
    from hermes_cron.store import open_store

    paths = HomePaths.at(home)
    return open_store(paths, load_config(home), clock=SystemClock())


def _tally(
    rows: List[Dict[str, Any]], firsts: List[datetime], begin: datetime, end: datetime
) -> Dict[str, Any]:
    """Lateness of each expected fire's ``ok`` row; the fires with none (missed) and the
    extra ``ok`` rows (doubled); the ``ok`` rows per process (owner ``host:pid:token``)."""
    from hermes_cron.timeutil import parse_iso

    by_fire: Dict[Tuple[str, str], List[Dict[str, Any]]] = {}
    for row in rows:
        fire = _iso(parse_iso(row["fire_at"]))
        by_fire.setdefault((row["job_id"], fire), []).append(row)
    lateness, missed, doubled = [], 0, 0
    per_process: Dict[str, int] = {}
    expected = _expected(firsts, begin, end)
    for i, due in expected:
        got = [r for r in by_fire.get((f"load{i:06d}", _iso(due)), []) if r["status"] == "ok"]
        if not got:
            missed += 1
            continue
        doubled += len(got) - 1
        started = parse_iso(got[0]["started_at"])
        lateness.append((started - due).total_seconds() * 1000)
        for r in got:
            pid = ":".join(str(r.get("owner") or "?").split(":")[:2])
            per_process[pid] = per_process.get(pid, 0) + 1
    return {
        "lateness": lateness,
        "expected": len(expected),
        "missed": missed,
        "doubled": doubled,
        "per_process": per_process,
    }


def bench_hermes(
    jobs: int,
    duration: float,
    workers: int,
    lead: float,
    *,
    pg_url: str = "",
    daemons: int = 1,
    profile: str = "",
) -> Dict[str, Any]:
    """``daemons`` real ``hermes-cron daemon`` processes, each with its own home, on the
    file store (one daemon) or all on the PostgreSQL database ``pg_url``."""
    homes = [_home(workers, pg_url) for _ in range(daemons)]
    base = datetime.now(UTC) + timedelta(seconds=lead)
    firsts = [base + timedelta(seconds=INTERVAL * i / jobs) for i in range(jobs)]
    records = _records(firsts)
    began = time.monotonic()
    if pg_url:
        # All in one transaction through the store's own import (``store import``).
        store = _open_store(homes[0])
        try:
            store.import_records(records, replace=True)
        finally:
            store.close()
    else:
        lines = ",\n    ".join(json.dumps(r, ensure_ascii=False) for r in records)
        (homes[0] / "cron" / "jobs.json").write_text(
            '{\n  "version": 1,\n  "jobs": [\n    ' + lines + "\n  ]\n}\n", encoding="utf-8"
        )
    written = time.monotonic() - began
    if datetime.now(UTC) > base - timedelta(seconds=1.5):
        print(f"warning: writing the jobs took {written:.1f} s, too close to their first fire")
    procs = []
    for n, home in enumerate(homes):
        argv = [sys.executable, "-m", "hermes_cron", "daemon"]
        if profile:
            argv[1:1] = ["-m", "cProfile", "-o", str(Path(profile) / f"daemon-{n + 1}.prof")]
        procs.append(
            subprocess.Popen(
                argv,
                env=dict(os.environ, HERMES_HOME=str(home)),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    stop_at = base + timedelta(seconds=duration)
    time.sleep(max(0.0, (stop_at - datetime.now(UTC)).total_seconds()))
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    rows: List[Dict[str, Any]] = []
    if pg_url:
        store = _open_store(homes[0])
        try:
            rows = store.runs.read()
        finally:
            store.close()
    else:
        ledger = homes[0] / "cron" / "runs.jsonl"
        if ledger.exists():
            rows = [json.loads(line) for line in ledger.read_text(encoding="utf-8").splitlines()]
    result = _tally(rows, firsts, base, stop_at - timedelta(seconds=TAIL))
    result.update(
        code=[p.returncode for p in procs],
        homes=[str(h) for h in homes],
        written_s=written,
    )
    return result


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
    jobs: int, duration: float, workers: int, lead: float, url: str = ""
) -> Dict[str, Any]:
    """APScheduler 3 on the same work: its memory store (``url`` empty), or
    ``SQLAlchemyJobStore`` on ``url`` (``sqlite``: a SQLite file; else a PostgreSQL URL)."""
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.interval import IntervalTrigger
    from bench_store_peers import aps_fill, aps_job, aps_url

    stores: Dict[str, Any] = {}
    folder = tempfile.mkdtemp(prefix="hermes-cron-load-aps-")
    if url:
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

        engine = f"sqlite:///{folder}/jobs.sqlite" if url == "sqlite" else aps_url(url)
        stores["default"] = SQLAlchemyJobStore(url=engine)
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
    # Anchors after the jobs are in (a few seconds for 10,000 in a database).
    base = datetime.now(UTC) + timedelta(seconds=lead + (5.0 if url else 3.0))
    anchors = [base + timedelta(seconds=INTERVAL * i / jobs) for i in range(jobs)]

    def trigger(anchor: datetime) -> Any:
        return IntervalTrigger(seconds=INTERVAL, start_date=anchor, timezone=UTC)

    if url:
        # Straight into its table in one transaction, as ours are written straight in.
        made = (
            aps_job(scheduler, f"load{i:06d}", aps_work, trigger(at), at, args=[at])
            for i, at in enumerate(anchors)
        )
        aps_fill(stores["default"], made)
    else:
        for i, anchor in enumerate(anchors):
            scheduler.add_job(aps_work, trigger(anchor), args=[anchor], id=f"load{i:06d}")
    added = time.monotonic() - began
    if datetime.now(UTC) > base:
        print(f"warning: adding the jobs took {added:.1f} s, past their first fire")
    scheduler.resume()
    stop_at = base + timedelta(seconds=duration)
    time.sleep(max(0.0, (stop_at - datetime.now(UTC)).total_seconds()))
    scheduler.shutdown(wait=True)
    with _APS_LOCK:
        values = list(_APS_LATENESS)
    expected = len(_expected(anchors, base, stop_at - timedelta(seconds=TAIL)))
    return {"lateness": values, "expected": expected, "added_s": added}


def _show(label: str, data: Dict[str, Any]) -> Dict[str, Any]:
    p = percentiles(data["lateness"])
    print(
        f"{label:26} {p['n']:7d} {data['expected']:8d} {p['p50']:8.2f} {p['p99']:8.2f} "
        f"{p['max']:9.2f}"
    )
    return {**p, "expected": data["expected"]}


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.inf


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--duration", type=float, default=40.0, help="seconds per scheduler")
    parser.add_argument("--full", action="store_true", help="120 s per scheduler")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument(
        "--store",
        choices=("file", "postgresql", "all"),
        default="all",
        help="hermes-cron's store(s), each next to its APScheduler peers (default: all)",
    )
    parser.add_argument(
        "--daemons",
        default="1,2",
        help="PostgreSQL: how many daemons share the database, one run per count (1,2)",
    )
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--json", metavar="PATH", help="write the figures here")
    parser.add_argument(
        "--hermes-only",
        action="store_true",
        help="no APScheduler runs (to profile the daemon: py-spy record --pid, or --profile)",
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="run each daemon under cProfile, writing DIR/daemon-N.prof (its main thread)",
    )
    args = parser.parse_args()
    duration = 120.0 if args.full else args.duration
    counts = [int(n) for n in args.daemons.split(",") if n.strip()]
    rate = args.jobs / INTERVAL
    print(
        f"{args.jobs} jobs every {INTERVAL}s spread over the minute ({rate:.0f} fires/s), "
        f"command true, {args.workers} workers, {duration:g} s each"
    )
    peers = not args.hermes_only
    runs: List[Tuple[str, Dict[str, Any]]] = []
    with ExitStack() as stack:
        if args.store in ("file", "all"):
            runs.append(
                ("hermes-cron daemon", bench_hermes(args.jobs, duration, args.workers, 4.0))
            )
            if peers:
                memory = bench_apscheduler(args.jobs, duration, args.workers, 2.0)
                runs.append(("APScheduler 3 memory", memory))
            if peers and not args.skip_sqlite:
                sqlite = bench_apscheduler(args.jobs, duration, args.workers, 2.0, "sqlite")
                runs.append(("APScheduler 3 SQLite", sqlite))
        if args.store in ("postgresql", "all"):
            from bench_store_peers import pg_cluster

            from hermes_cron.testing.pgcluster import PgUnavailable

            try:
                cluster = pg_cluster(stack)
            except PgUnavailable as exc:
                if args.store == "postgresql":
                    raise
                print(f"no PostgreSQL runs: {exc}")
                counts, peers = [], False
            for n in counts:
                mine = bench_hermes(
                    args.jobs,
                    duration,
                    args.workers,
                    8.0,
                    pg_url=cluster.new_database(),
                    daemons=n,
                    profile=args.profile or "",
                )
                runs.append((f"hermes-cron PG {n} daemon{'s' if n > 1 else ''}", mine))
            if peers:
                theirs = bench_apscheduler(
                    args.jobs, duration, args.workers, 2.0, cluster.new_database()
                )
                runs.append(("APScheduler 3 PostgreSQL", theirs))
    print(f"{'lateness (ms)':26} {'runs':>7} {'expected':>8} {'p50':>8} {'p99':>8} {'max':>9}")
    figures = {label: _show(label, data) for label, data in runs}
    data = dict(runs)
    out: Dict[str, Any] = {"figures": figures, "jobs": args.jobs, "duration": duration}
    for label, mine in runs:
        if label.startswith("hermes-cron"):
            split = ", ".join(f"{n}" for n in sorted(mine["per_process"].values(), reverse=True))
            print(
                f"{label}: {mine['missed']} missed, {mine['doubled']} doubled of "
                f"{mine['expected']} expected fires (ok runs per daemon: {split or '-'}; "
                f"exit codes {mine['code']}; jobs written in {mine['written_s']:.1f} s)"
            )
    if "hermes-cron daemon" in data:
        mine = data["hermes-cron daemon"]
        peer = next((k for k in ("APScheduler 3 SQLite", "APScheduler 3 memory") if k in data), "")
        a = figures["hermes-cron daemon"]
        b = figures.get(peer, {})
        for key in ("p50", "p99", "max") if peer else ():
            print(f"ratio hermes-cron / {peer} {key}: {_ratio(a[key], b[key]):.2f}")
        ratio = _ratio(a["p99"], b["p99"]) if peer else math.inf
        met = ratio <= GOAL_RATIO and mine["missed"] == 0 and mine["doubled"] == 0
        print(
            f"goal (p99 <= {GOAL_RATIO}x {peer or 'a peer'}'s, nothing missed or doubled): "
            f"{'met' if met else 'NOT met'}"
        )
        out.update(
            peer=peer,
            ratio_p99=ratio,
            goal_ratio=GOAL_RATIO,
            missed=mine["missed"],
            doubled=mine["doubled"],
            expected=mine["expected"],
            met=met,
        )
    pg_peer = "APScheduler 3 PostgreSQL"
    out["postgres"] = []
    for label, mine in runs:
        if not label.startswith("hermes-cron PG"):
            continue
        p99 = figures[label]["p99"]
        peer_p99 = figures.get(pg_peer, {}).get("p99", math.nan)
        met = p99 < GOAL_MS and mine["missed"] == 0 and mine["doubled"] == 0
        print(
            f"{label}: p99 {p99:.2f} ms ({_ratio(p99, peer_p99):.2f}x {pg_peer}'s "
            f"{peer_p99:.2f} ms); goal (p99 < {GOAL_MS:g} ms, nothing missed or doubled): "
            f"{'met' if met else 'NOT met'}"
        )
        out["postgres"].append(
            {
                "label": label,
                "daemons": len(mine["code"]),
                "p99": p99,
                "peer": pg_peer,
                "peer_p99": peer_p99,
                "ratio_p99": _ratio(p99, peer_p99),
                "goal_ms": GOAL_MS,
                "missed": mine["missed"],
                "doubled": mine["doubled"],
                "expected": mine["expected"],
                "per_process": mine["per_process"],
                "met": met,
            }
        )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
