"""Bounded disk: outputs kept per job, outputs cut, the ledger rotated; ``logs``."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest
from helpers.servicekit import run_cli, running_daemon, wait_for, write_config

from hermes_cron.clock import FakeClock
from hermes_cron.ledger import RunLedger
from hermes_cron.paths import HomePaths
from hermes_cron.runner import cut_output
from hermes_cron.store.outputs import OutputFiles


def _row(n: int, pad: int = 0) -> dict:
    return {"job_id": "j", "fire_at": f"t{n}", "status": "ok", "n": n, "pad": "x" * pad}


def test_outputs_beyond_retention_are_deleted_as_new_ones_are_written(
    paths: HomePaths, clock: FakeClock
) -> None:
    outputs = OutputFiles(paths, retention=3)
    refs = []
    for n in range(7):
        refs.append(outputs.write("job1", clock.now(), f"run {n}\n"))
        clock.advance(1)
    kept = sorted(p.name for p in (paths.output_dir / "job1").iterdir())
    assert len(kept) == 3
    assert [outputs.read(r) for r in refs[-3:]] == ["run 4\n", "run 5\n", "run 6\n"]
    assert not any(Path(r).exists() for r in refs[:-3])
    # Another job's outputs are its own.
    outputs.write("job2", clock.now(), "other")
    assert len(list((paths.output_dir / "job1").iterdir())) == 3


def test_long_output_is_cut_with_a_marker_line() -> None:
    assert cut_output("short", 100) == "short"
    text = "é" * 1000  # two bytes each: the cut never splits a character
    out = cut_output(text, 101)
    body, marker = out.rstrip("\n").rsplit("\n", 1)
    assert body == "é" * 50
    assert marker == "[hermes-cron: output cut at 101 bytes of 2000 (cron.output_max_bytes)]"


def test_ledger_rotates_past_max_bytes_and_reads_both_files(paths: HomePaths) -> None:
    ledger = RunLedger(paths, max_bytes=1000)
    for n in range(30):
        ledger.append(_row(n, pad=60))
    rotated = paths.runs.with_name("runs.1.jsonl")
    assert rotated.exists()
    assert paths.runs.stat().st_size <= 1000 + 200
    assert rotated.stat().st_size <= 1000 + 200
    rows = ledger.read()
    numbers = [r["n"] for r in rows]
    assert numbers == sorted(numbers, reverse=True)  # newest first across both files
    assert numbers[0] == 29
    # Rows older than the rotated file are gone: that is the bound.
    assert len(numbers) < 30
    assert [r["n"] for r in ledger.read(limit=3)] == [29, 28, 27]


def test_rotation_replaces_the_previous_rotated_file(paths: HomePaths) -> None:
    ledger = RunLedger(paths, max_bytes=500)
    for n in range(100):
        ledger.append(_row(n, pad=40))
    total = paths.runs.stat().st_size + paths.runs.with_name("runs.1.jsonl").stat().st_size
    assert total <= 2 * (500 + 200)
    assert sorted(os.listdir(paths.cron_dir)) == [".runs.lock", "runs.1.jsonl", "runs.jsonl"]


# -- logs ---------------------------------------------------------------------------


def _add(home: Path, *args: str) -> str:
    added = run_cli(home, "add", *args)
    assert added.returncode == 0, added.stderr
    return added.stdout.strip()


def test_logs_prints_the_latest_output_and_the_one_for_a_fire_time(home: Path) -> None:
    job_id = _add(home, "every", "1h", "--", "sh", "-c", 'echo "run at $HERMES_CRON_FIRE_AT"')
    for _ in range(2):
        assert run_cli(home, "run", job_id).returncode == 0
    rows = json.loads(run_cli(home, "runs", job_id, "--json").stdout)
    latest = run_cli(home, "logs", job_id)
    assert latest.returncode == 0, latest.stderr
    assert f"run at {rows[0]['fire_at']}" in latest.stdout
    first = run_cli(home, "logs", job_id, "--fire-at", rows[1]["fire_at"])
    assert first.returncode == 0, first.stderr
    assert f"run at {rows[1]['fire_at']}" in first.stdout
    assert f"run at {rows[0]['fire_at']}" not in first.stdout
    as_json = json.loads(run_cli(home, "logs", job_id, "--json").stdout)
    assert as_json["fire_at"] == rows[0]["fire_at"]
    assert f"run at {rows[0]['fire_at']}" in as_json["text"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["nosuchjob"], "no such job: 'nosuchjob'"),
        (["{id}"], "has not run yet"),
        (["{id}", "--fire-at", "2020-01-01T00:00:00Z"], "has not run yet"),
        (["{id}", "--fire-at", "yesterday-ish"], "--fire-at"),
    ],
)
def test_logs_without_such_a_run_exits_2_with_one_line(
    home: Path, args: list, message: str
) -> None:
    job_id = _add(home, "every", "1h", "--", "true")
    result = run_cli(home, "logs", *[a.format(id=job_id) for a in args])
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_logs_for_a_fire_time_that_never_ran_exits_2(home: Path) -> None:
    job_id = _add(home, "every", "1h", "--", "true")
    assert run_cli(home, "run", job_id).returncode == 0
    result = run_cli(home, "logs", job_id, "--fire-at", "2020-01-01T00:00:00Z")
    assert result.returncode == 2
    assert "has no run for 2020-01-01T00:00:00Z" in result.stderr


# -- a daemon left running ------------------------------------------------------------


@pytest.fixture
def tiny_daemon(home: Path) -> Iterator[subprocess.Popen]:
    write_config(
        home,
        {"cron": {"output_retention": 3, "output_max_bytes": 1024, "ledger_max_bytes": 4096}},
    )
    with running_daemon(home, stdout=subprocess.DEVNULL) as proc:
        yield proc


def test_a_daemon_with_tiny_limits_keeps_disk_bounded(
    home: Path, tiny_daemon: subprocess.Popen
) -> None:
    paths = HomePaths.at(home)
    # Output far past output_max_bytes on every run.
    ids = [
        _add(home, "every", "1s", "--", "sh", "-c", "head -c 5000 /dev/zero | tr '\\0' x")
        for _ in range(3)
    ]
    rotated = paths.runs.with_name("runs.1.jsonl")
    # Enough runs to rotate the ledger several times over (4 KiB holds about a dozen).
    ledger = RunLedger(paths)
    wait_for(lambda: rotated.exists() and len(ledger.read()) >= 20, timeout=120)
    seen_rotated = rotated.stat().st_ino
    wait_for(lambda: rotated.stat().st_ino != seen_rotated, timeout=120)
    tiny_daemon.terminate()
    tiny_daemon.communicate(timeout=30)

    sizes = [p.stat().st_size if p.exists() else 0 for p in (paths.runs, rotated)]
    assert sum(sizes) <= 2 * 4096 + 2048, sizes
    rows = ledger.read()
    for job_id in ids:
        files = list((paths.output_dir / job_id).iterdir())
        assert 1 <= len(files) <= 3, files
        for f in files:
            assert f.stat().st_size <= 1024 + 1024  # the cut body plus the header
            assert "output cut at 1024 bytes" in f.read_text()
        # The newest runs the ledger points to still have their output.
        newest = [r for r in rows if r["job_id"] == job_id and r.get("output")][:3]
        assert newest
        assert all(Path(r["output"]).exists() for r in newest), newest
