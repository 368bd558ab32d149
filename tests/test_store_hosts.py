"""Several hosts on one PostgreSQL store: real ``hermes-cron daemon`` processes, each
with a home of its own, killed and restarted at random, the database restarted and the
listening connections cut under them. Every fire runs at most once, none is lost beyond
what the missed-run policy allows, stale claims are taken over, and the work is shared.

``HERMES_CRON_CHAOS_SECONDS`` (default 20) sets how long the chaos lasts.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

import psycopg
import pytest
from helpers.storekit import new_store, pid_gone, wait_until

from hermes_cron.clock import SystemClock
from hermes_cron.schedules import parse_schedule
from hermes_cron.store.postgres import LISTENER_NAME
from hermes_cron.testing.fixtures import write_config
from hermes_cron.timeutil import parse_iso

CLAIM_TTL = 3
CHAOS_SECONDS = float(os.environ.get("HERMES_CRON_CHAOS_SECONDS", "20"))


class Host:
    """One "host": a HERMES_HOME of its own and a daemon process on the shared store."""

    def __init__(self, root: Path, name: str, url: str) -> None:
        self.name = name
        self.home = root / name
        self.home.mkdir()
        write_config(self.home, {"cron": {"claim_ttl": CLAIM_TTL, "max_workers": 4}})
        # faulthandler: a daemon that does not stop is sent SIGABRT, which prints every
        # thread's stack into its log (``stop``).
        self.env = dict(
            os.environ, HERMES_HOME=str(self.home), HERMES_CRON_STORE=url, PYTHONFAULTHANDLER="1"
        )
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.pids: Set[int] = set()
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = open(self.home / f"daemon-{self.starts}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hermes_cron", "daemon"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        self.pids.add(self.proc.pid)

    def wait_ready(self) -> None:
        """Until the daemon runs its loop (its signal handlers are in place by then)."""
        current = self.home / f"daemon-{self.starts}.log"
        wait_until(
            lambda: (
                "scheduler started" in current.read_text(errors="replace")
                or (self.proc is not None and self.proc.poll() is not None)
            ),
            timeout=60,
            what=f"{self.name} to start",
        )
        assert self.proc is not None and self.proc.poll() is None, self.log()[-3000:]

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.wait_ready()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(55)  # past the daemon's own report of a slow stop (45 s)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGABRT)  # its stacks, for the failure
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)

    def log(self) -> str:
        """Its daemons' logs, oldest start first."""
        return "".join(
            (self.home / f"daemon-{n}.log").read_text(errors="replace")
            for n in range(1, self.starts + 1)
        )


def _stop_cleanly(hosts: List[Host]) -> None:
    """SIGTERM each daemon; each must exit 0."""
    for host in hosts:
        host.stop()
        assert host.proc is not None and host.proc.returncode == 0, host.log()[-12000:]


@pytest.fixture
def hosts(tmp_path: Path, pg_url: str) -> Iterator[List[Host]]:
    made = [Host(tmp_path, f"host{n}", pg_url) for n in range(3)]
    yield made
    for host in made:
        host.stop()


def _fires_file_job(
    store: Any,
    out: Path,
    every: str = "every 1s",
    sleep: float = 0,
    anchor: Optional[datetime] = None,
) -> str:
    """A command job that appends ``<job id> <fire time>`` to ``out`` (after ``sleep``);
    an interval counts from ``anchor`` (default: now)."""
    script = f'sleep {sleep}; echo "$HERMES_CRON_JOB_ID $HERMES_CRON_FIRE_AT" >> "$0"'
    schedule = parse_schedule(every, now=anchor or SystemClock().now())
    return str(store.add(schedule, command=["sh", "-c", script, str(out)])["id"])


def _lines(out: Path) -> List[Tuple[str, str]]:
    if not out.exists():
        return []
    return [tuple(line.split()) for line in out.read_text().splitlines() if line.strip()]  # type: ignore[misc]


def _owner_pid(owner: Optional[str]) -> Optional[int]:
    try:
        return int(str(owner).split(":")[-2])
    except (IndexError, ValueError):
        return None


def _check_at_most_once(rows: List[Dict[str, Any]], lines: List[Tuple[str, str]]) -> None:
    """Every fire ran at most once, and the job's own output agrees with the ledger."""
    assert not [k for k, n in Counter(lines).items() if n > 1], "a fire ran twice"
    ran = [(r["job_id"], r["fire_at"]) for r in rows if r["status"] in ("ok", "error", "running")]
    twice = [k for k, n in Counter(ran).items() if n > 1]
    rows_of_twice = [r for r in rows if (r["job_id"], r["fire_at"]) in set(twice)]
    assert not twice, f"the ledger has two runs of one fire: {rows_of_twice}"
    in_ledger = set(ran)
    for job_id, fire_at in lines:
        assert (job_id, fire_at) in in_ledger, f"{job_id} ran at {fire_at} with no ledger row"
    written = set(lines)
    for r in rows:
        if r["status"] == "ok":
            assert (r["job_id"], r["fire_at"]) in written, f"ledger says ok, job never ran: {r}"


def _largest_gap(rows: List[Dict[str, Any]], job_id: str) -> float:
    """The longest stretch of this job's schedule with no ledger row (a coalesced
    catch-up row covers the times it folded in)."""
    covered = []
    for r in rows:
        if r["job_id"] != job_id:
            continue
        covered.append(parse_iso(r["fire_at"]))
        if r.get("coalesced_from"):
            covered.append(parse_iso(r["coalesced_from"]))
    covered.sort()
    return max(
        ((b - a).total_seconds() for a, b in zip(covered, covered[1:])),
        default=float("inf"),
    )


def test_daemons_on_three_hosts_share_the_work_under_chaos(
    hosts: List[Host], pg_url: str, paths: Any, tmp_path: Path
) -> None:
    store = new_store(paths, SystemClock(), url=pg_url, now_from="database")
    out = tmp_path / "fires.txt"
    try:
        # Fires in two claim rounds a second (a batch claims whatever is due within
        # PRECLAIM of its earliest fire, and a round goes to one host): some 30 rounds
        # through the kills, so a fair draw leaves a host without fires about once in
        # 60,000 runs (one round a second: about once in fifty).
        base = SystemClock().now()
        quick = [
            _fires_file_job(store, out, anchor=base + timedelta(seconds=phase))
            for phase in (0.0, 0.5, 0.0, 0.5)
        ]
        slow = _fires_file_job(store, out, sleep=1.5)  # still running when killed, often
        for host in hosts:
            host.start()
        rng = random.Random(9)
        began = time.monotonic()
        wait_until(lambda: len(_lines(out)) >= 6, timeout=60, what="the first fires")
        kills = 0
        while time.monotonic() - began < CHAOS_SECONDS:
            time.sleep(rng.uniform(1.5, 3.0))
            victim = rng.choice(hosts)
            if kills % 2 == 0:
                # Kill whoever is running the slow job: its claim must be taken over.
                held = store.get(slow).get("fire_claim") or {}
                holder = _owner_pid(held.get("owner"))
                victim = next((h for h in hosts if holder in h.pids), victim)
            victim.kill()
            kills += 1
            victim.start()
            victim.wait_ready()
        stop_at = time.monotonic()
        _stop_cleanly(hosts)
        rows = store.runs.read()
    finally:
        store.close()

    lines = _lines(out)
    _check_at_most_once(rows, lines)
    # None lost: every short stretch of each schedule has its row (run, skip or miss).
    for job_id in quick:
        assert _largest_gap(rows, job_id) <= CLAIM_TTL + 3, job_id
        assert (
            sum(1 for r in rows if r["job_id"] == job_id and r["status"] == "ok")
            >= (stop_at - began) * 0.3  # an every-1s job, through kills on a busy machine
        )
    # Stale claims of killed daemons were taken over (recorded, never run again).
    interrupted = [
        r for r in rows if r["status"] == "error" and "interrupted" in (r["error"] or "")
    ]
    assert interrupted, "no claim was ever taken over"
    # The work is shared: each host ran fires (by the ledger's owner, not by guesswork).
    by_host = Counter(
        next((h.name for h in hosts if _owner_pid(r.get("owner")) in h.pids), "?")
        for r in rows
        if r["status"] == "ok"
    )
    assert all(by_host[h.name] > 0 for h in hosts), by_host
    assert "?" not in by_host, by_host
    assert kills >= 3


def _burst(
    hosts: List[Host], pg_url: str, paths: Any, out: Path, *, workers: int, fires: int
) -> List[Dict[str, Any]]:
    """``fires`` jobs of 3 s due together, run by two daemons of ``workers`` workers each
    once each sees the other: the ledger rows of the burst's fire, with a ``host``."""
    two = hosts[:2]
    for host in two:
        write_config(host.home, {"cron": {"claim_ttl": CLAIM_TTL, "max_workers": workers}})
        host.start()
    for host in two:
        host.wait_ready()
        wait_until(
            lambda host=host: "1 other scheduler(s) share this store" in host.log(),
            timeout=60,
            what=f"{host.name} to see the other daemon",
        )
    store = new_store(paths, SystemClock(), url=pg_url, now_from="database")
    try:
        anchor = SystemClock().now() - timedelta(seconds=5)  # the first fire 5 s from now
        jobs = {
            _fires_file_job(store, out, every="every 10s", sleep=3, anchor=anchor)
            for _ in range(fires)
        }
        wait_until(lambda: len(_lines(out)) >= fires, timeout=60, what="the burst's runs")
        _stop_cleanly(two)
        rows = store.runs.read()
    finally:
        store.close()
    _check_at_most_once(rows, _lines(out))
    first = min(r["fire_at"] for r in rows if r["job_id"] in jobs)
    burst = [r for r in rows if r["fire_at"] == first and r["status"] == "ok"]
    assert sorted(r["job_id"] for r in burst) == sorted(jobs), burst
    for r in burst:
        r["host"] = next((h.name for h in two if _owner_pid(r.get("owner")) in h.pids), "?")
        r["late"] = (parse_iso(r["started_at"]) - parse_iso(r["fire_at"])).total_seconds()
    return burst


def test_replicas_split_a_burst_by_their_free_workers(
    hosts: List[Host], pg_url: str, paths: Any, tmp_path: Path
) -> None:
    """Four fires due together, two daemons of two workers each: each claims the two it
    can start at once (one that claimed all four would start two of them only when its
    first runs ended, while the other daemon sat idle)."""
    burst = _burst(hosts, pg_url, paths, tmp_path / "fires.txt", workers=2, fires=4)
    assert Counter(r["host"] for r in burst) == {"host0": 2, "host1": 2}, burst
    # None waited for a run to end (each runs 3 s).
    assert max(r["late"] for r in burst) < 2.0, burst


def test_a_fire_no_replica_has_a_worker_for_runs_when_one_frees_up(
    hosts: List[Host], pg_url: str, paths: Any, tmp_path: Path
) -> None:
    """Three fires due together, two daemons of one worker each: two start at once, the
    third stays in the store unclaimed until a worker frees up, then runs once."""
    burst = _burst(hosts, pg_url, paths, tmp_path / "fires.txt", workers=1, fires=3)
    burst.sort(key=lambda r: r["late"])
    assert sorted(Counter(r["host"] for r in burst).values()) == [1, 2], burst
    assert burst[1]["late"] < 2.0, burst
    # The third waited for the first run to end (3 s), and not much longer.
    ended = min(parse_iso(r["finished_at"]) for r in burst[:2])
    waited = (parse_iso(burst[2]["started_at"]) - ended).total_seconds()
    assert burst[2]["late"] >= 2.5 and waited < 2.0, burst


def test_daemons_ride_out_a_database_restart_and_cut_listeners(
    hosts: List[Host], pg_cluster: Any, pg_url: str, paths: Any, tmp_path: Path
) -> None:
    store = new_store(paths, SystemClock(), url=pg_url, now_from="database")
    out = tmp_path / "fires.txt"
    two = hosts[:2]
    try:
        job = _fires_file_job(store, out)
        for host in two:
            host.start()
        wait_until(lambda: len(_lines(out)) >= 3, timeout=60, what="the first fires")
        store.close()

        pg_cluster.restart(down_for=4)  # every connection is cut; calls fail meanwhile
        seen = len(_lines(out))
        wait_until(lambda: len(_lines(out)) >= seen + 3, timeout=60, what="fires after restart")
        for host in two:
            assert host.proc is not None and host.proc.poll() is None, host.log()[-3000:]

        # Each listener is back from the restart before its connection is cut (one
        # still waiting out its reconnect backoff would have nothing to cut).
        for host in two:
            wait_until(
                lambda host=host: host.log().count("listening for store changes again") >= 1,
                timeout=60,
                what=f"{host.name} to listen after the restart",
            )
        with psycopg.connect(pg_url, autocommit=True) as conn:
            cut = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s AND datname = current_database()",
                (LISTENER_NAME,),
            ).fetchall()
        assert len(cut) >= 2, cut
        for host in two:
            wait_until(
                lambda host=host: host.log().count("listening for store changes again") >= 2,
                timeout=60,
                what=f"{host.name} to listen again",
            )
        # A change after recovery reaches them: a new job fires within seconds.
        store = new_store(paths, SystemClock(), url=pg_url, now_from="database")
        late = _fires_file_job(store, out, every="+1s")
        wait_until(lambda: any(j == late for j, _ in _lines(out)), timeout=20, what="the new job")
        _stop_cleanly(two)
        rows = store.runs.read()
        assert store.get(late)["state"] == "completed"
    finally:
        store.close()
    _check_at_most_once(rows, _lines(out))
    assert _largest_gap(rows, job) <= 30  # the restart's outage, then the schedule resumed
    # They saw it (the log says so) and kept running.
    assert all("lost the store's notification connection" in h.log() for h in two)
    assert all(pid_gone(pid) for h in two for pid in h.pids)


def test_a_daemon_started_while_the_database_is_down_waits_for_it(
    hosts: List[Host], pg_cluster: Any, pg_url: str, paths: Any, tmp_path: Path
) -> None:
    store = new_store(paths, SystemClock(), url=pg_url, now_from="database")
    out = tmp_path / "fires.txt"
    try:
        job = _fires_file_job(store, out)
    finally:
        store.close()
    host = hosts[0]
    with pg_cluster.down():
        host.start()
        wait_until(lambda: "waiting for it" in host.log(), timeout=60, what="the daemon to wait")
        assert host.proc is not None and host.proc.poll() is None, host.log()[-3000:]
    wait_until(lambda: len(_lines(out)) >= 2, timeout=60, what="fires once the database is up")
    assert "the store answers: starting" in host.log()
    _stop_cleanly([host])
    assert {j for j, _ in _lines(out)} == {job}
