"""SIGKILL in the middle of writes: the status file and the run ledger (the job store has its
own kill test in ``tests/test_store_procs.py``; the chaos test kills whole daemons).

Promises: a reader never sees a torn status file, the ledger stays readable (a row torn
by a kill is skipped, the next row starts on a fresh line), and what a killed writer left
behind (temp files) is cleaned up by the next writer.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from reliakit import chaos_seconds, wait_until

from hermes_cron.ledger import RunLedger
from hermes_cron.paths import HomePaths
from hermes_cron.status_file import read_status, update_status

WRITER = textwrap.dedent(
    """
    import sys
    from hermes_cron.ledger import RunLedger
    from hermes_cron.paths import HomePaths
    from hermes_cron.status_file import update_status

    paths = HomePaths.at(sys.argv[1])
    ledger = RunLedger(paths)
    n = 0
    while True:
        n += 1
        # A status body large enough that its write is not instant.
        update_status(paths, n=n, pad="x" * 20000, last_error=f"error {n}")
        ledger.append({"job_id": "j", "fire_at": str(n), "status": "ok", "pad": "y" * 3000})
        if n == 1:
            print("writing", flush=True)
    """
)


def test_status_and_ledger_survive_writers_killed_mid_write(paths: HomePaths) -> None:
    rng = random.Random(7)
    rounds = max(10, int(chaos_seconds() * 2))
    for _ in range(rounds):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(paths.home)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "writing", proc.stderr.read()  # type: ignore[union-attr]
        wait_until(lambda: rng.random() < 0.3, timeout=5, what="a random moment", interval=0.01)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        # Never torn: the status file parses as a whole, whatever moment the kill hit.
        status = json.loads(paths.status.read_text())
        assert status["last_error"] == f"error {status['n']}"
        rows = RunLedger(paths).read()
        assert rows and all(r["job_id"] == "j" for r in rows)
    before = len(RunLedger(paths).read())
    # The next writers clean up what the killed ones left, and append on a fresh line.
    assert update_status(paths, last_error="after")
    RunLedger(paths).append({"job_id": "after", "fire_at": "x", "status": "ok"})
    assert [p.name for p in paths.cron_dir.iterdir() if p.name.endswith(".tmp")] == []
    rows = RunLedger(paths).read()
    assert rows[0]["job_id"] == "after" and len(rows) == before + 1
    assert read_status(paths)["last_error"] == "after"


def test_a_dead_writers_temp_status_file_is_removed_by_the_next_write(paths: HomePaths) -> None:
    paths.cron_dir.mkdir(parents=True)
    dead = paths.cron_dir / ".status.json.k1ll3d.tmp"
    dead.write_text('{"half": ')
    other = paths.cron_dir / ".jobs.json.a1b2c3.tmp"  # not the status file's: left alone
    other.write_text("x")
    assert update_status(paths, heartbeat_at="2026-03-02T12:00:00+00:00")
    assert not dead.exists() and other.exists()
    assert read_status(paths)["heartbeat_at"] == "2026-03-02T12:00:00+00:00"


def test_a_torn_ledger_row_is_skipped_and_the_next_one_starts_fresh(tmp_path: Path) -> None:
    paths = HomePaths.at(tmp_path)
    ledger = RunLedger(paths)
    ledger.append({"job_id": "a", "fire_at": "1", "status": "ok"})
    with open(paths.runs, "ab") as fh:
        fh.write(b'{"job_id": "torn", "fire_at": "2", "sta')  # the kill hit here
    ledger.append({"job_id": "b", "fire_at": "3", "status": "ok"})
    assert [r["job_id"] for r in ledger.read()] == ["b", "a"]
