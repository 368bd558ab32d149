"""The run ledger: O_APPEND rows, newest first, torn lines skipped."""

from __future__ import annotations

import json
import stat
import subprocess
import sys

import pytest

from hermes_cron.errors import StoreError
from hermes_cron.ledger import RunLedger
from hermes_cron.paths import HomePaths


def _row(job_id: str, n: int) -> dict:
    return {
        "job_id": job_id,
        "fire_at": f"2026-03-02T12:{n % 60:02d}:00+00:00",
        "provider": "builtin",
        "started_at": "2026-03-02T12:00:00+00:00",
        "finished_at": "2026-03-02T12:00:01+00:00",
        "status": "ok",
        "output": None,
        "error": None,
        "owner": "me",
        "n": n,
    }


def test_missing_ledger_is_empty(paths: HomePaths) -> None:
    assert RunLedger(paths).read() == []


def test_rows_newest_first_filtered_and_limited(paths: HomePaths) -> None:
    ledger = RunLedger(paths)
    for n in range(10):
        ledger.append(_row("a" if n % 2 else "b", n))
    assert [r["n"] for r in ledger.read()] == list(range(9, -1, -1))
    assert [r["n"] for r in ledger.read("a")] == [9, 7, 5, 3, 1]
    assert [r["n"] for r in ledger.read("b", limit=2)] == [8, 6]
    assert ledger.read(limit=0) == []
    assert stat.S_IMODE(paths.runs.stat().st_mode) == 0o600
    assert all(json.loads(line) for line in paths.runs.read_text().splitlines())


def test_torn_and_bad_lines_are_skipped_and_do_not_swallow_the_next_row(
    paths: HomePaths,
) -> None:
    ledger = RunLedger(paths)
    ledger.append(_row("a", 1))
    with open(paths.runs, "ab") as fh:
        fh.write(b'["not a row"]\nnot json at all\n{"job_id": "a", "fire_')  # torn by a crash
    ledger.append(_row("a", 2))
    assert [r["n"] for r in ledger.read("a")] == [2, 1]


def test_many_rows_read_backwards_across_blocks(paths: HomePaths) -> None:
    ledger = RunLedger(paths)
    big = "x" * 5000  # rows bigger than a few per block: lines cross block boundaries
    for n in range(60):
        ledger.append({**_row("a", n), "error": big})
    rows = ledger.read("a")
    assert [r["n"] for r in rows] == list(range(59, -1, -1))
    assert all(r["error"] == big for r in rows)
    assert [r["n"] for r in ledger.read(limit=3)] == [59, 58, 57]


def test_text_with_newlines_and_unicode_stays_one_line(paths: HomePaths) -> None:
    ledger = RunLedger(paths)
    ledger.append({**_row("a", 1), "error": "line one\nline two \u2028 ünï"})
    assert len(paths.runs.read_bytes().split(b"\n")) == 2
    assert ledger.read()[0]["error"] == "line one\nline two \u2028 ünï"


def test_concurrent_processes_never_interleave(paths: HomePaths) -> None:
    code = (
        "import sys; from hermes_cron.ledger import RunLedger; "
        "from hermes_cron.paths import HomePaths; "
        "L = RunLedger(HomePaths.at(sys.argv[1])); w = sys.argv[2]\n"
        "for n in range(200): L.append({'job_id': w, 'n': n, 'pad': 'y' * 3000})"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(paths.home), f"w{i}"]) for i in range(4)
    ]
    for proc in procs:
        assert proc.wait(60) == 0
    ledger = RunLedger(paths)
    assert len(ledger.read()) == 800
    for i in range(4):
        assert [r["n"] for r in ledger.read(f"w{i}")] == list(range(199, -1, -1))


def test_unwritable_ledger_raises_a_store_error(paths: HomePaths) -> None:
    paths.runs.mkdir(parents=True)
    with pytest.raises(StoreError, match="runs.jsonl: cannot append"):
        RunLedger(paths).append(_row("a", 1))


def test_unreadable_ledger_raises_a_store_error(paths: HomePaths) -> None:
    paths.runs.mkdir(parents=True)
    with pytest.raises(StoreError, match="runs.jsonl: cannot read"):
        RunLedger(paths).read()
