"""The job options over time, under a real ``hermes-cron daemon``: jittered fire times,
retries, ``overlap: queue`` (also across a crash of the daemon) and ``replace`` (the
running run is in another process), ``until``. Short schedules; every wait is on a
condition with a generous bound."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
from helpers.servicekit import cli_cmd, ledger_rows, run_cli, wait_for, write_config

from hermes_cron.paths import HomePaths
from hermes_cron.status_file import read_status
from hermes_cron.store.rules import jitter_offset
from hermes_cron.timeutil import parse_iso, to_iso


class Daemons:
    """Starts ``hermes-cron daemon`` processes on one home; kills what is left."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.procs: List[subprocess.Popen] = []

    def start(self) -> subprocess.Popen:
        status = HomePaths.at(self.home).home / "cron" / "status.json"
        status.unlink(missing_ok=True)
        proc = subprocess.Popen(
            cli_cmd("daemon"),
            env=dict(os.environ, HERMES_HOME=str(self.home)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=str(self.home),
        )
        self.procs.append(proc)
        wait_for(
            lambda: proc.poll() is not None or read_status(HomePaths.at(self.home)).get("pid"),
            timeout=30,
        )
        assert proc.poll() is None, proc.communicate()
        return proc

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


@pytest.fixture
def daemons(home: Path) -> Iterator[Daemons]:
    write_config(home, {"cron": {"job_timeout": 60}})
    started = Daemons(home)
    try:
        yield started
    finally:
        started.close()


def add(home: Path, *args: str) -> str:
    proc = run_cli(home, "add", *args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def job(home: Path, job_id: str) -> Dict[str, Any]:
    return json.loads(run_cli(home, "show", job_id, "--json").stdout)


def rows_of(home: Path, job_id: str, *statuses: str) -> List[Dict[str, Any]]:
    return [
        r
        for r in ledger_rows(home)
        if r["job_id"] == job_id and (not statuses or r["status"] in statuses)
    ]


def py(code: str) -> List[str]:
    return [sys.executable, "-c", code]


def test_a_jittered_job_fires_at_its_delayed_times(home: Path, daemons: Daemons) -> None:
    daemons.start()
    job_id = add(home, "every 2s", "--jitter", "1.5", "--", "true")
    anchor = parse_iso(job(home, job_id)["schedule"]["anchor"])
    wait_for(lambda: len(rows_of(home, job_id, "ok")) >= 3, timeout=60)
    for row in rows_of(home, job_id, "ok"):
        fire_at = parse_iso(row["fire_at"])
        k = round((fire_at - anchor).total_seconds() // 2)
        scheduled = anchor + timedelta(seconds=2 * k)
        assert fire_at == scheduled + jitter_offset(job_id, scheduled, 1.5)
        assert parse_iso(row["started_at"]) >= fire_at  # never before its delayed time
    fires = [r["fire_at"] for r in rows_of(home, job_id)]
    assert len(set(fires)) == len(fires)


def test_a_failing_run_is_retried_after_its_delay(home: Path, daemons: Daemons) -> None:
    daemons.start()
    code = "import os, sys; sys.exit(0 if os.environ['HERMES_CRON_ATTEMPT'] == '3' else 4)"
    job_id = add(home, "+1s", "--retries", "2", "--retry-delay", "1", "--", *py(code))
    wait_for(lambda: job(home, job_id)["state"] == "completed", timeout=60)
    rows = sorted(rows_of(home, job_id), key=lambda r: r["started_at"])
    assert [(r["attempt"], r["status"]) for r in rows] == [(1, "error"), (2, "error"), (3, "ok")]
    assert len({r["fire_at"] for r in rows}) == 1  # three attempts of one fire
    for before, after, delay in ((rows[0], rows[1], 1), (rows[1], rows[2], 2)):
        gap = (parse_iso(after["started_at"]) - parse_iso(before["finished_at"])).total_seconds()
        assert delay - 0.05 <= gap < delay + 5, (delay, gap)  # 1 s, then doubled
    assert job(home, job_id)["repeat"] == {"times": 1, "completed": 1}


def test_queue_runs_the_waiting_fire_as_soon_as_the_run_ends(home: Path, daemons: Daemons) -> None:
    daemons.start()
    job_id = add(home, "every 2s", "--overlap", "queue", "--", *py("import time; time.sleep(3)"))
    wait_for(lambda: len(rows_of(home, job_id, "ok")) >= 3, timeout=90)
    runs = sorted(rows_of(home, job_id, "ok"), key=lambda r: r["started_at"])
    for before, after in zip(runs, runs[1:]):
        # Never two runs at once...
        assert parse_iso(after["started_at"]) >= parse_iso(before["finished_at"])
    # ...and a fire that waited starts right when the run before it ends.
    waited = [
        (before, after)
        for before, after in zip(runs, runs[1:])
        if parse_iso(after["fire_at"]) < parse_iso(before["finished_at"])
    ]
    assert waited, runs
    for before, after in waited:
        gap = parse_iso(after["started_at"]) - parse_iso(before["finished_at"])
        assert gap < timedelta(seconds=1), gap


def test_a_queued_fire_survives_a_crash_and_runs_once(home: Path, daemons: Daemons) -> None:
    write_config(home, {"cron": {"job_timeout": 60, "claim_ttl": 2}})
    daemon = daemons.start()
    marker = home / "queued-ran"
    code = (
        "import os, time\n"
        "if os.path.exists('first'):\n"
        f"    open({str(marker)!r}, 'a').write(os.environ['HERMES_CRON_FIRE_AT'] + '\\n')\n"
        "else:\n"
        "    open('first', 'w').close(); time.sleep(60)\n"
    )
    job_id = add(home, "every 2s", "--overlap", "queue", "--cwd", str(home), "--", *py(code))
    wait_for(lambda: job(home, job_id).get("queued_fire"), timeout=30)
    queued = job(home, job_id)["queued_fire"]["fire_at"]
    daemon.send_signal(signal.SIGKILL)  # dies mid-run, with a fire waiting in jobs.json
    daemon.communicate()
    claim = job(home, job_id)["fire_claim"]
    stale_at = parse_iso(claim["claimed_at"]) + timedelta(seconds=2.5)
    wait_for(lambda: _now() > stale_at, timeout=30)  # the dead run's claim is stale
    daemons.start()
    wait_for(lambda: marker.exists() and queued in marker.read_text(), timeout=60)
    wait_for(lambda: len(rows_of(home, job_id, "ok")) >= 3, timeout=60)
    assert marker.read_text().splitlines().count(queued) == 1  # not lost, not run twice
    [interrupted] = [r for r in rows_of(home, job_id, "error") if "interrupted" in r["error"]]
    assert interrupted["fire_at"] != queued


def test_replace_stops_a_run_of_another_process(home: Path, daemons: Daemons) -> None:
    """The run to replace is a ``hermes-cron run ID`` in another process; the daemon's
    fire asks it to stop, that process kills its command and records it cancelled, and
    the daemon then runs the newer fire."""
    daemons.start()
    log = home / "runs.log"
    code = (
        "import os, time\n"
        f"log = open({str(log)!r}, 'a')\n"
        "if os.path.exists('first'):\n"
        "    log.write('second\\n')\n"
        "else:\n"
        "    open('first', 'w').close(); log.write('first\\n'); log.flush(); time.sleep(60)\n"
    )
    # +8s: the manual run must have claimed the job first, on a machine however busy.
    job_id = add(home, "+8s", "--overlap", "replace", "--cwd", str(home), "--", *py(code))
    manual = subprocess.Popen(
        cli_cmd("run", job_id),
        env=dict(os.environ, HERMES_HOME=str(home)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: log.exists() and "first" in log.read_text(), timeout=30)
        out, err = manual.communicate(timeout=45)  # well before its 60 s sleep ends
    finally:
        if manual.poll() is None:
            manual.kill()
            manual.communicate()
    assert manual.returncode == 1 and f"{job_id}: cancelled" in out, (out, err)
    wait_for(lambda: "second" in log.read_text(), timeout=30)
    wait_for(lambda: job(home, job_id)["state"] == "completed", timeout=30)
    rows = sorted(rows_of(home, job_id), key=lambda r: r["started_at"])
    assert [(r["status"], bool(r.get("manual"))) for r in rows] == [
        ("cancelled", True),
        ("ok", False),
    ]
    assert "replaced by the fire due at" in rows[0]["error"]
    assert rows[0]["owner"] != rows[1]["owner"]  # two processes


def test_until_ends_the_job(home: Path, daemons: Daemons) -> None:
    daemons.start()
    # Room for two 1 s fires even when the add command is slow to start (its own time
    # anchors the schedule).
    until = _now() + timedelta(seconds=6)
    job_id = add(home, "every 1s", "--until", to_iso(until), "--", "true")
    wait_for(lambda: job(home, job_id)["state"] == "completed", timeout=30)
    fires = [parse_iso(r["fire_at"]) for r in rows_of(home, job_id)]
    assert fires and all(f <= until for f in fires)
    assert len(fires) >= 2


def _now() -> Any:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)
