"""What only the PostgreSQL store has: a versioned schema, row locks and fences, the
database's clock, notifications, the ledger and outputs in tables, an unreachable
server. (Everything the stores share is in the contract tests, run on both.)"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import psycopg
import pytest
from helpers.storekit import fire_time, hand_edit, new_store, sched, wait_until

from hermes_cron.clock import FakeClock, SystemClock
from hermes_cron.errors import StoreError, StoreUnavailableError, UsageError
from hermes_cron.paths import HomePaths
from hermes_cron.store import INTERRUPTED, LOST, SKIPPED, WON
from hermes_cron.store.postgres import LISTENER_NAME, SCHEMA_VERSION, PostgresStore, redact
from hermes_cron.timeutil import UTC, parse_iso


@pytest.fixture
def stores(paths: HomePaths, pg_url: str) -> Iterator[Callable[..., PostgresStore]]:
    """``stores(clock=..., **kwargs)``: PostgreSQL stores on one fresh database, on the
    database's clock unless ``now_from="clock"``; closed at teardown."""
    made: List[PostgresStore] = []

    def make(clock: Any = None, **kwargs: Any) -> PostgresStore:
        kwargs.setdefault("now_from", "database")
        store = new_store(paths, clock or SystemClock(), url=pg_url, **kwargs)
        made.append(store)
        return store  # type: ignore[no-any-return]

    yield make
    for store in made:
        store.close()


def _sql(url: str, query: str, params: Any = None) -> List[Any]:
    """A statement from a session of our own, as a person at psql would run it."""
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port that refuses connections for the whole test: bound (so no other
    process, such as a server of a test running in parallel, can take it) and never
    listened on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


class SkewedClock(SystemClock):
    """The system clock, off by ``seconds`` (a host whose clock drifted)."""

    def __init__(self, seconds: float) -> None:
        self.offset = timedelta(seconds=seconds)

    def now(self) -> datetime:
        return super().now() + self.offset


# -- reaching the database ------------------------------------------------------------------


def test_redact_removes_the_password_wherever_it_is() -> None:
    assert redact("postgresql://cron:s3cret@db:5432/jobs") == "postgresql://cron@db:5432/jobs"
    assert redact("postgres://cron@db/jobs?password=s3cret&sslmode=require") == (
        "postgres://cron@db/jobs?sslmode=require"
    )
    assert redact("postgresql://db/jobs") == "postgresql://db/jobs"
    assert "x:y" not in redact("postgresql://a:x:y@h1:5432,h2:5433/d")


def test_nothing_connects_before_first_use_and_down_is_one_line(
    paths: HomePaths, refused_port: int
) -> None:
    port = refused_port
    url = f"postgresql://cron:s3cret@127.0.0.1:{port}/jobs"
    store = PostgresStore(url, paths, clock=SystemClock(), connect_timeout=2)
    try:
        assert store.describe() == f"postgresql://cron@127.0.0.1:{port}/jobs"
        for call in (store.snapshot, store.next_due_at, lambda: store.get("x"), store.catch_up):
            with pytest.raises(StoreUnavailableError) as info:
                call()
            message = str(info.value)
            assert "\n" not in message and "s3cret" not in message
            assert message.startswith(f"cannot reach the store postgresql://cron@127.0.0.1:{port}")
            assert info.value.exit_code == 1 and isinstance(info.value, StoreError)
        store.heartbeat({"host": "h", "pid": 1})  # never raises
    finally:
        store.close()


def test_cli_exits_1_with_one_line_when_the_database_is_down(home: Path, refused_port: int) -> None:
    port = refused_port
    env = dict(os.environ, HERMES_CRON_STORE=f"postgresql://cron:s3cret@127.0.0.1:{port}/jobs")
    for args in (["list"], ["status"], ["store", "init"], ["add", "every 1h", "--", "true"]):
        proc = subprocess.run(
            [sys.executable, "-m", "hermes_cron", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 1, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert f"postgresql://cron@127.0.0.1:{port}/jobs" in lines[0]
        assert "s3cret" not in proc.stderr + proc.stdout


# -- the schema --------------------------------------------------------------------------


def test_schema_is_created_once_with_its_version(
    stores: Callable[..., PostgresStore], pg_url: str
) -> None:
    store = stores()
    assert store.init_schema() == f"created schema version {SCHEMA_VERSION}"
    assert store.init_schema() == f"schema version {SCHEMA_VERSION} is up to date"
    rows = _sql(pg_url, "SELECT value FROM hermes_cron_meta WHERE key = 'schema_version'")
    assert rows == [(str(SCHEMA_VERSION),)]


def test_a_newer_schema_is_refused_and_never_altered(
    stores: Callable[..., PostgresStore], pg_url: str, clock: FakeClock
) -> None:
    stores().add(sched("every 1h", clock), command=["a"])
    _sql(pg_url, "UPDATE hermes_cron_meta SET value = '99' WHERE key = 'schema_version'")
    before = _sql(pg_url, "SELECT id, record::text FROM hermes_cron_jobs")
    late = stores()
    for call in (late.snapshot, late.init_schema):
        with pytest.raises(StoreError, match="schema version 99, newer than") as info:
            call()
        assert "\n" not in str(info.value)
    assert _sql(pg_url, "SELECT value FROM hermes_cron_meta") == [("99",)]
    assert _sql(pg_url, "SELECT id, record::text FROM hermes_cron_jobs") == before


def test_processes_starting_together_create_the_schema_once(home: Path, pg_url: str) -> None:
    env = dict(os.environ, HERMES_CRON_STORE=pg_url)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "hermes_cron", "store", "init"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outputs
    said = sorted(out.strip().split(": ", 1)[1] for out, _ in outputs)
    assert (
        said
        == [f"created schema version {SCHEMA_VERSION}"]
        + [f"schema version {SCHEMA_VERSION} is up to date"] * 3
    )


# -- claims: fences, row locks, the database's clock ------------------------------------------


def test_every_new_claim_bumps_the_fence_and_writes_its_ledger_row(
    stores: Callable[..., PostgresStore], pg_url: str, clock: FakeClock
) -> None:
    store = stores(clock, now_from="clock")
    job = store.add(sched("every 1m", clock), command=["a"])
    fences = []
    for n in range(3):
        due = fire_time(store, job["id"])
        clock.set(due)
        claim = store.claim(job["id"], due, f"run{n}")
        assert claim.won
        fences.append(claim.fence)
        # The claim's own transaction wrote the fire's ledger row.
        [row] = store.runs.read(job["id"], limit=1)
        assert (row["status"], row["owner"], row["fire_at"]) == (
            "running",
            f"run{n}",
            claim.job["fire_claim"]["fire_at"],
        )
        assert store.renew_claim(job["id"], f"run{n}")
        assert store.finish_run(job["id"], f"run{n}", status="ok", error=None, started_at=due)
        store.runs.append({**row, "status": "ok", "finished_at": row["started_at"]})
    assert fences == [1, 2, 3]
    column = _sql(pg_url, "SELECT fence FROM hermes_cron_jobs WHERE id = %s", (job["id"],))
    assert column == [(3,)]
    assert [r["status"] for r in store.runs.read(job["id"])] == ["ok"] * 3
    assert "fence" not in store.get(job["id"])  # the record keeps the file store's shape


def test_a_run_end_written_again_after_a_lost_commit_answer_is_one_row(
    stores: Callable[..., PostgresStore], clock: FakeClock
) -> None:
    # The outage cut the answer to the commit of a run's final row: the runner writes
    # it again once the database is back. That must not make a second row of the fire.
    store = stores(clock, now_from="clock")
    job = store.add(sched("every 1m", clock), command=["a"])
    due = fire_time(store, job["id"])
    clock.set(due)
    assert store.claim(job["id"], due, "run").won
    [running] = store.runs.read(job["id"])
    end = {**running, "status": "ok", "finished_at": running["started_at"]}
    store.runs.append(end)
    store.runs.append(end)  # the retry
    assert [r["status"] for r in store.runs.read(job["id"])] == ["ok"]
    # Skips and misses are rows of their own, never merged into a run's.
    skip = {**end, "status": "skipped", "error": "overlap"}
    store.runs.append(skip)
    assert [r["status"] for r in store.runs.read(job["id"])] == ["skipped", "ok"]


def test_a_row_locked_elsewhere_is_skipped_by_the_batch_claim_and_waited_for_by_one(
    stores: Callable[..., PostgresStore], pg_url: str, clock: FakeClock
) -> None:
    store = stores(clock, now_from="clock")
    job = store.add(sched("every 1m", clock), command=["a"])
    due = fire_time(store, job["id"])
    clock.set(due)
    with psycopg.connect(pg_url) as other:  # another replica, mid-claim
        other.execute("SELECT 1 FROM hermes_cron_jobs WHERE id = %s FOR UPDATE", (job["id"],))
        [busy] = store.claim_many([(job["id"], due)], "loop")
        assert busy.outcome == LOST and busy.reason == "claimed elsewhere"
        result: Dict[str, Any] = {}
        waiter = threading.Thread(
            target=lambda: result.update(claim=store.claim(job["id"], due, "webhook"))
        )
        waiter.start()
        waiter.join(0.5)
        assert waiter.is_alive()  # a delivered fire waits for the lock instead
        other.rollback()
    waiter.join(30)
    assert result["claim"].outcome == WON


@pytest.mark.parametrize("skew", [600, -600], ids=["ahead", "behind"])
def test_a_skewed_host_never_takes_over_a_live_claim(
    stores: Callable[..., PostgresStore], skew: int
) -> None:
    honest = stores(claim_ttl=300)
    skewed = stores(SkewedClock(skew), claim_ttl=300)
    now = SystemClock().now()
    job = honest.add(sched("every 1s", SystemClock()), command=["a"])
    due = wait_until(lambda: (d := honest.due(SystemClock().now())) and d[0][1], what="due")
    claim = honest.claim(job["id"], due, "honest")
    assert claim.won
    # By its own clock the claim is 10 minutes old (or from the future): stale. By the
    # database's clock it is fresh, and that is the clock that decides.
    assert not honest.policy.fresh(claim.job["fire_claim"], now + timedelta(seconds=skew))
    nxt = wait_until(lambda: (d := skewed.due(SystemClock().now())) and d[0][1], what="next")
    [late] = skewed.claim_many([(job["id"], nxt)], "skewed")
    assert late.outcome in (SKIPPED, LOST)
    assert [c for c in skewed.catch_up() if c.outcome == INTERRUPTED] == []
    assert skewed.get(job["id"])["fire_claim"]["owner"] == "honest"
    assert honest.renew_claim(job["id"], "honest")
    assert honest.finish_run(job["id"], "honest", status="ok", error=None, started_at=due)


# -- rows changed by hand --------------------------------------------------------------------


def test_a_row_changed_by_hand_is_out_of_service_until_checked(
    stores: Callable[..., PostgresStore], pg_url: str, clock: FakeClock
) -> None:
    store = stores(clock, now_from="clock")
    job = store.add(sched("every 1h", clock), command=["a"])
    moved = {**job, "next_run_at": (clock.now() + timedelta(minutes=5)).isoformat()}
    hand_edit(store, job["id"], moved)
    # The index columns were not updated by whoever edited it: it must not fire on them.
    assert store.due(clock.now() + timedelta(days=1)) == []
    assert store.get(job["id"])["next_run_at"] == moved["next_run_at"]  # valid: shown
    assert store.catch_up() == []  # checked: valid, back in service at its new time
    assert store.due(clock.now() + timedelta(minutes=5)) == [
        (job["id"], parse_iso(moved["next_run_at"]))
    ]
    hand_edit(store, job["id"], {**job, "state": "sleeping"})
    store.catch_up()
    why = _sql(pg_url, "SELECT quarantine FROM hermes_cron_jobs WHERE id = %s", (job["id"],))
    assert why[0][0].startswith("state:")
    assert store.snapshot().quarantined[0].record["state"] == "sleeping"  # never rewritten


def test_the_census_counts_in_the_database_and_agrees_with_every_record(
    stores: Callable[..., PostgresStore], clock: FakeClock
) -> None:
    store = stores(clock, now_from="clock")
    jobs = [store.add(sched("every 1h", clock), command=["true"]) for _ in range(5)]
    store.pause(jobs[0]["id"])
    store.add(sched("+1m", clock), command=["true"], name="once")
    hand_edit(store, jobs[1]["id"], {**jobs[1], "name": "renamed by hand"})  # still valid
    hand_edit(store, jobs[2]["id"], {**jobs[2], "state": "sleeping"})  # not a job
    census = store.census()
    snap = store.snapshot()
    states: Dict[str, int] = {}
    for job in snap.jobs:
        states[job["state"]] = states.get(job["state"], 0) + 1
    assert census.states == states == {"scheduled": 4, "paused": 1}
    assert census.jobs == len(snap.jobs) == 5
    assert [(q.index, q.job_id, q.error) for q in census.quarantined] == [
        (q.index, q.job_id, q.error) for q in snap.quarantined
    ]
    assert [q.job_id for q in census.quarantined] == [jobs[2]["id"]]


def test_a_nul_character_is_refused_not_stored(
    stores: Callable[..., PostgresStore], clock: FakeClock
) -> None:
    store = stores(clock, now_from="clock")
    with pytest.raises(UsageError, match="NUL"):
        store.add(sched("every 1h", clock), prompt="a\x00b")
    assert store.export_records() == []


# -- notifications ----------------------------------------------------------------------------


def test_a_change_anywhere_wakes_the_listeners_and_survives_a_cut_connection(
    stores: Callable[..., PostgresStore], pg_url: str, clock: FakeClock
) -> None:
    here, there = stores(), stores()
    woken = threading.Event()
    here.add_listener(woken.set)
    wait_until(lambda: here._listener is not None and here._listener.live, what="listening")
    woken.clear()
    token = here.change_token()
    there.add(sched("every 1h", clock), command=["a"])
    assert woken.wait(5), "a change on another host did not wake the listener"
    wait_until(lambda: here.change_token() != token, timeout=5, what="a new change token")
    # The listening connection is cut: it reconnects and asks for a full rescan.
    woken.clear()
    killed = _sql(
        pg_url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = %s AND datname = current_database()",
        (LISTENER_NAME,),
    )
    assert killed == [(True,)]
    assert woken.wait(15), "no rescan after the listening connection was cut"
    wait_until(lambda: here._listener is not None and here._listener.live, what="listening")
    woken.clear()
    there.add(sched("every 1h", clock), command=["b"])
    assert woken.wait(5), "changes after the reconnect do not wake the listener"


# -- the ledger, outputs and heartbeats -----------------------------------------------------------


def test_only_the_newest_outputs_are_kept(stores: Callable[..., PostgresStore]) -> None:
    store = stores(output_retention=2)
    started = datetime(2026, 3, 2, tzinfo=UTC)
    refs = [store.outputs.write("job1", started, f"run {n}") for n in range(3)]
    other = store.outputs.write("job2", started, "a\x00b")
    with pytest.raises(StoreError, match="no longer kept"):
        store.outputs.read(refs[0])
    assert [store.outputs.read(r) for r in refs[1:]] == ["run 1", "run 2"]
    assert store.outputs.read(other) == "a\ufffdb"  # PostgreSQL text holds no NUL


def test_the_ledger_stays_bounded(stores: Callable[..., PostgresStore], pg_url: str) -> None:
    store = stores()
    store.ledger_rows = 50  # what cron.ledger_max_bytes sets (at least 1000 in real use)
    for n in range(400):
        store.runs.append({"job_id": f"j{n % 3}", "status": "ok", "fire_at": str(n)})
    count = _sql(pg_url, "SELECT count(*) FROM hermes_cron_runs")[0][0]
    assert count <= 50 + 100
    assert store.runs.read(limit=1)[0]["fire_at"] == "399"  # the newest are the ones kept
    assert [r["fire_at"] for r in store.runs.read("j1", limit=2)] == ["397", "394"]


def test_heartbeats_list_recent_schedulers_of_every_host(
    stores: Callable[..., PostgresStore], pg_url: str
) -> None:
    a, b = stores(), stores()
    a.heartbeat({"host": "web-1", "pid": 10, "provider": "builtin", "heartbeat_at": "t1"})
    b.heartbeat({"host": "web-2", "pid": 10, "provider": "builtin", "heartbeat_at": "t2"})
    a.heartbeat({"host": "web-1", "pid": 10, "provider": "builtin", "heartbeat_at": "t3"})
    assert sorted((s["host"], s["heartbeat_at"]) for s in b.schedulers()) == [
        ("web-1", "t3"),
        ("web-2", "t2"),
    ]
    _sql(pg_url, "UPDATE hermes_cron_schedulers SET seen_at = now() - interval '1 hour' "
         "WHERE host = 'web-2'")  # fmt: skip
    assert [s["host"] for s in a.schedulers()] == ["web-1"]


# -- moving between stores (CLI) ---------------------------------------------------------------


def _cli(home: Path, *args: str, store: str = "", check: bool = True) -> Any:
    env = dict(os.environ, HERMES_HOME=str(home))
    env.pop("HERMES_CRON_STORE", None)
    if store:
        env["HERMES_CRON_STORE"] = store
    proc = subprocess.run(
        [sys.executable, "-m", "hermes_cron", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_export_and_import_round_trip_between_the_stores(tmp_path: Path, pg_url: str) -> None:
    old, new, back = tmp_path / "old", tmp_path / "new", tmp_path / "back"
    for folder in (old, new, back):
        folder.mkdir()
    _cli(old, "add", "every 5m", "--name", "five", "--", "echo", "hi")
    _cli(old, "add", "0 9 * * 1-5", "--tz", "Europe/Paris", "--repeat", "3", "--prompt", "news")
    paused = json.loads(_cli(old, "--json", "add", "+2h", "--", "true").stdout)
    _cli(old, "pause", paused["id"])
    exported = tmp_path / "jobs.json"
    _cli(old, "store", "export", "--output", str(exported))
    original = json.loads(exported.read_text())["jobs"]
    assert len(original) == 3

    imported = _cli(new, "--json", "store", "import", str(exported), store=pg_url)
    assert sorted(json.loads(imported.stdout)["imported"]) == sorted(j["id"] for j in original)
    again = _cli(new, "store", "import", str(exported), store=pg_url)
    assert "left alone 3" in again.stdout  # ids already there are kept, and said so
    on_pg = json.loads(_cli(new, "store", "export", store=pg_url).stdout)["jobs"]
    assert on_pg == original  # ids, schedules, options, state, next run times
    assert (
        json.loads(_cli(new, "--json", "show", paused["id"], store=pg_url).stdout)["state"]
        == "paused"
    )

    _cli(back, "store", "import", str(exported))
    assert json.loads((back / "cron" / "jobs.json").read_text())["jobs"] == original

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"version": 1, "jobs": [*original, {"id": "x"}]}))
    refused = _cli(tmp_path, "store", "import", str(bad), "--replace", store=pg_url, check=False)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "record #4" in refused.stderr and "nothing was imported" in refused.stderr
    init = _cli(new, "store", "init", store=pg_url)
    assert "up to date" in init.stdout and "nothing to create" in _cli(old, "store", "init").stdout


def test_a_daemon_started_while_the_database_is_down_stays_up_and_says_so(
    home: Path, refused_port: int
) -> None:
    port = refused_port
    env = dict(os.environ, HERMES_CRON_STORE=f"postgresql://cron:s3cret@127.0.0.1:{port}/jobs")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hermes_cron", "daemon"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    watchdog = threading.Timer(60, proc.kill)  # a daemon that never says it waits
    watchdog.start()
    try:
        assert proc.stdout is not None
        seen = []
        for line in iter(proc.stdout.readline, ""):
            seen.append(line)
            if "waiting for it" in line:
                break
        assert f"postgresql://cron@127.0.0.1:{port}/jobs" in seen[-1], seen
        assert "waiting for it" in seen[-1] and "s3cret" not in "".join(seen)
        assert proc.poll() is None  # it did not exit 1: it waits
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_waiting_for_the_database_ends_when_the_daemon_is_told_to_stop(
    home: Path, refused_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What SIGTERM does to a daemon waiting for its database (the handler sets the
    # event): the wait ends, and the daemon exits 0 without starting.
    from hermes_cron.cli import _first_read
    from hermes_cron.service import CronService

    monkeypatch.setenv("HERMES_CRON_STORE", f"postgresql://cron@127.0.0.1:{refused_port}/jobs")
    service = CronService.from_home(home)
    stop = threading.Event()
    answers: List[bool] = []
    waiter = threading.Thread(target=lambda: answers.append(_first_read(service, stop)))
    try:
        waiter.start()
        time.sleep(0.3)  # into its wait (any moment would do: the wait checks the event)
        assert waiter.is_alive() and answers == []
        stop.set()
        waiter.join(15)
        assert answers == [False]
    finally:
        stop.set()
        waiter.join(15)
        service.close()


def test_a_throwaway_server_whose_port_was_taken_meanwhile_starts_on_another(
    pg_cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The port is picked before initdb, seconds before the server binds it: the other
    tox environment, running at the same time, may have taken it by then."""
    from hermes_cron.testing import pgcluster

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        held = taken.getsockname()[1]
        ports = iter([held])
        picked: List[int] = []

        def pick() -> int:
            port = next(ports, None) or _real_free_port()
            picked.append(port)
            return port

        _real_free_port = pgcluster._free_port
        monkeypatch.setattr(pgcluster, "_free_port", pick)
        cluster = pgcluster.PgCluster.start(pg_cluster.bindir)
        try:
            assert picked[0] == held and cluster.port == picked[-1] != held
            assert cluster.psql("SELECT 1").strip() == "1"
        finally:
            cluster.stop()
