"""Real ``hermes-cron`` processes: the daemon, cross-process adds, signals, tick."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import httpx
import pytest
from helpers.servicekit import (
    cli_cmd,
    ledger_rows,
    run_cli,
    running_daemon,
    wait_for,
    write_config,
    write_user_plugin,
)
from prometheus_client.parser import text_string_to_metric_families

from hermes_cron.paths import HomePaths
from hermes_cron.status_file import read_status


@pytest.fixture
def job_timeout() -> int:
    return 600


@pytest.fixture
def daemon(home: Path, job_timeout: int) -> Iterator[subprocess.Popen]:
    """A ``hermes-cron daemon`` on ``home``, ready (heartbeat written); killed if left."""
    write_config(home, {"cron": {"job_timeout": job_timeout}})
    with running_daemon(home) as proc:
        yield proc


def test_daemon_runs_a_job_added_by_another_process_and_stops_on_sigterm(
    home: Path, daemon: subprocess.Popen
) -> None:
    marker = home / "fired.txt"
    added = run_cli(
        home,
        "add",
        "every",
        "1s",
        "--",
        "sh",
        "-c",
        f'echo "$HERMES_CRON_JOB_ID $HERMES_CRON_FIRE_AT" >> {marker}',
    )
    assert added.returncode == 0, added.stderr
    job_id = added.stdout.strip()
    wait_for(lambda: len([r for r in ledger_rows(home) if r["status"] == "ok"]) >= 2, timeout=30)
    rows = [r for r in ledger_rows(home) if r["job_id"] == job_id]
    # Read after the rows: a recorded run wrote its line before its row was appended.
    ran = [tuple(line.split()) for line in marker.read_text().splitlines()]
    assert ran and all(j == job_id for j, _ in ran)
    # Each recorded run ran with its fire time in HERMES_CRON_FIRE_AT. (Not "the first
    # line is the first row": on a loaded machine a run may outlast the 1 s interval,
    # and the next fire's skip row then comes before the run's own row.)
    assert {r["fire_at"] for r in rows if r["status"] == "ok"} <= {f for _, f in ran}
    fires = [r["fire_at"] for r in rows]
    assert len(set(fires)) == len(fires)  # no fire time twice
    status = run_cli(home, "status", "--json")
    assert json.loads(status.stdout)["heartbeat_at"] is not None

    daemon.send_signal(signal.SIGTERM)
    out, err = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, err
    assert "SIGTERM received" in err
    assert read_status(HomePaths.at(home))["stopped_at"] is not None


@pytest.mark.parametrize("job_timeout", [3])
def test_a_failing_and_a_hanging_job_do_not_stop_the_others(
    home: Path, job_timeout: int, daemon: subprocess.Popen
) -> None:
    hang = run_cli(home, "add", "every", "1s", "--", "sleep", "30").stdout.strip()
    fail = run_cli(home, "add", "every", "1s", "--", "sh", "-c", "exit 7").stdout.strip()
    ok = run_cli(home, "add", "every", "1s", "--", "true").stdout.strip()
    assert hang and fail and ok

    def count(job_id: str, status: str) -> int:
        return sum(1 for r in ledger_rows(home) if r["job_id"] == job_id and r["status"] == status)

    wait_for(
        lambda: count(ok, "ok") >= 3 and count(fail, "error") >= 2 and count(hang, "skipped"),
        timeout=40,
    )
    assert count(hang, "ok") == 0
    daemon.send_signal(signal.SIGINT)
    daemon.communicate(timeout=60)  # waits at most job_timeout for the hung job
    assert daemon.returncode == 0
    wait_for(lambda: count(hang, "timeout"), timeout=10)


def test_eight_concurrent_adds_make_eight_jobs(home: Path) -> None:
    env = dict(os.environ, HERMES_HOME=str(home))
    procs = [
        subprocess.Popen(
            cli_cmd("add", "every", f"{i + 1}h", "--", "echo", str(i)),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(8)
    ]
    ids = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        ids.append(out.strip())
    assert len(set(ids)) == 8
    listed = json.loads(run_cli(home, "list", "--json").stdout)
    assert sorted(j["id"] for j in listed) == sorted(ids)
    assert sorted(j["command"][1] for j in listed) == [str(i) for i in range(8)]


#: An extension whose import waits for the test's word: the daemon is still loading it.
SLOW_TO_LOAD = """
import os, time
from pathlib import Path
from hermes_cron import hookimpl

home = Path(os.environ["HERMES_HOME"])
(home / "loading").touch()
deadline = time.monotonic() + 60
while not (home / "go").exists() and time.monotonic() < deadline:
    time.sleep(0.01)

@hookimpl
def run_finished(ctx, job, result):
    pass
"""


def test_sigterm_while_the_daemon_loads_its_plugins_is_a_clean_stop(home: Path) -> None:
    write_user_plugin(home, "slow", SLOW_TO_LOAD)
    env = dict(os.environ, HERMES_HOME=str(home))
    proc = subprocess.Popen(
        cli_cmd("daemon"), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(lambda: (home / "loading").exists() or proc.poll() is not None, timeout=60)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGTERM)
        (home / "go").touch()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "scheduler started" not in err, err  # stopped before it scheduled anything


def test_daemon_with_an_external_provider_prints_its_summary_and_exits_0(home: Path) -> None:
    write_user_plugin(
        home,
        "remote",
        """
        from hermes_cron import hookimpl

        @hookimpl
        def start(ctx, stop_event):
            return {"armed": [j["id"] for j in ctx.store.list_jobs()], "cancelled": []}
        """,
    )
    write_config(home, {"cron": {"provider": "remote"}})
    job_id = run_cli(home, "add", "every", "1h", "--", "true").stdout.strip()
    proc = run_cli(home, "daemon", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"armed": [job_id], "cancelled": []}
    human = run_cli(home, "daemon")
    assert human.returncode == 0 and f'armed: ["{job_id}"]' in human.stdout


def test_tick_runs_what_is_due_once(home: Path) -> None:
    job_id = run_cli(home, "add", "every", "1s", "--", "true").stdout.strip()
    wait_for(
        lambda: (
            json.loads(run_cli(home, "show", job_id, "--json").stdout)["next_run_at"] <= _now_iso()
        ),
        timeout=10,
    )
    proc = run_cli(home, "tick")
    assert proc.returncode == 0, proc.stderr
    assert f"{job_id}: ok" in proc.stdout
    assert [r["status"] for r in ledger_rows(home)] == ["ok"]


def _now_iso() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat()


def test_console_script_entry_point(home: Path) -> None:
    script = Path(sys.executable).with_name("hermes-cron")
    if not script.exists():
        pytest.skip("the console script is not installed next to this interpreter")
    proc = subprocess.run(
        [str(script), "status", "--json"],
        env=dict(os.environ, HERMES_HOME=str(home)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["provider"] == "builtin"


#: A folder extension: appends every report it hears to ``heard.jsonl`` in the home.
HEARING_EXTENSION = """
import json
from pathlib import Path
from hermes_cron import hookimpl

@hookimpl
def run_finished(ctx, job, result):
    with open(Path(ctx.home) / "heard.jsonl", "a") as out:
        out.write(json.dumps({"job": job["id"], "row": dict(result.row),
                              "output": result.output}) + "\\n")
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _fires_total(url: str) -> Optional[float]:
    """``hermes_cron_fires_total{status="ok"}`` scraped from ``url``; None while unreachable."""
    try:
        response = httpx.get(url, timeout=5)
    except httpx.TransportError:
        return None
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "hermes_cron_fires_total" and sample.labels == {"status": "ok"}:
                return sample.value
    return 0.0


def test_daemon_metrics_and_an_extension_see_every_ledger_row(home: Path) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    write_config(home, {"cron": {"metrics_port": port}})
    write_user_plugin(home, "hearing", HEARING_EXTENSION)
    added = run_cli(home, "add", "every 1s", "--repeat", "3", "--", "echo", "tick")
    assert added.returncode == 0, added.stderr
    job_id = added.stdout.strip()
    env = dict(os.environ, HERMES_HOME=str(home))
    proc = subprocess.Popen(
        cli_cmd("daemon"), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        # A repeat-3 job stops firing after its third run, so the counts cannot race on.
        # (On a loaded machine a run may outlast the 1 s interval: the next fire is then a
        # skip row, which does not count toward the repeat.)
        def ok_rows() -> List[Dict[str, Any]]:
            return [r for r in ledger_rows(home) if r["status"] == "ok"]

        wait_for(lambda: proc.poll() is not None or len(ok_rows()) >= 3, timeout=60)
        assert proc.poll() is None, proc.communicate()
        wait_for(lambda: _fires_total(url) == 3, timeout=30, what="fires_total == 3")
        rows = ledger_rows(home)
        assert len(ok_rows()) == 3
        assert {(r["job_id"], r["status"]) for r in rows} <= {(job_id, "ok"), (job_id, "skipped")}
        heard = home / "heard.jsonl"
        wait_for(
            lambda: heard.exists() and len(heard.read_text().splitlines()) == len(rows),
            timeout=30,
        )
        reports = [json.loads(line) for line in heard.read_text().splitlines()]

        # A skip row and the run row it skipped for are written by different threads, so
        # the observer may hear them in either order.
        def in_order(found: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
            return sorted(found, key=lambda row: (row["fire_at"], row["status"]))

        assert in_order([r["row"] for r in reports]) == in_order(rows)
        assert {r["output"] for r in reports if r["row"]["status"] == "ok"} == {"tick\n"}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert f"metrics on http://127.0.0.1:{port}/metrics" in err
    assert _fires_total(url) is None  # the metrics server stopped with the daemon
