"""Real processes racing on one store: one winner per fire, no lost adds (on every store
backend), kill-safe writes of jobs.json."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest
from helpers.storekit import new_store, sched, spawn, wait_until

from hermes_cron.clock import FakeClock
from hermes_cron.paths import HomePaths
from hermes_cron.store import LOST, WON

RACERS = 8


def _start_line(folder: Path, procs: List[subprocess.Popen[str]]) -> None:
    """Wait until every process says it is ready, then let them all go at once."""

    def ready() -> bool:
        for proc in procs:
            if proc.poll() is not None:
                raise AssertionError(f"a helper died early: {proc.stderr.read()}")  # type: ignore[union-attr]
        return len(list(folder.glob("ready-*"))) == len(procs)

    wait_until(ready, timeout=60, what="all helpers to be ready")
    (folder / "go").touch()


def _finish(procs: List[subprocess.Popen[str]]) -> List[str]:
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        outputs.append(out)
    return outputs


def _env(store: Any) -> Dict[str, str]:
    """The helpers' environment: ``HERMES_CRON_STORE`` names the database, if any."""
    env = dict(os.environ)
    url = getattr(store, "url", None)
    if url:
        env["HERMES_CRON_STORE"] = url
    else:
        env.pop("HERMES_CRON_STORE", None)
    return env


@pytest.mark.parametrize(
    "schedule, call", [("every 1m", "claim_many"), ("+1m", "claim")], ids=["batch", "one"]
)
def test_racing_processes_claim_a_fire_exactly_once(
    make_store: Callable[..., Any],
    paths: HomePaths,
    clock: FakeClock,
    tmp_path: Path,
    schedule: str,
    call: str,
) -> None:
    store = make_store()
    job = store.add(sched(schedule, clock), command=["true"])
    fire_at = job["next_run_at"]
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    args = (str(paths.home), fire_at, job["id"], fire_at, str(barrier))
    procs = [spawn("claim_race.py", *args, str(i), call, env=_env(store)) for i in range(RACERS)]
    _start_line(barrier, procs)
    results = [json.loads(out) for out in _finish(procs)]
    outcomes = sorted(r["outcome"] for r in results)
    assert outcomes == [LOST] * (RACERS - 1) + [WON]
    winner = next(r["name"] for r in results if r["outcome"] == WON)
    record = make_store().get(job["id"])
    assert record["fire_claim"]["owner"] == f"racer-{winner}"
    if call == "claim_many":  # the loop's batch claim: a row locked elsewhere is skipped
        assert all(
            r["reason"] == "claimed elsewhere"
            or "not due for" in r["reason"]
            or "no run is pending" in r["reason"]
            for r in results
            if r["outcome"] == LOST
        )


def test_concurrent_adds_from_many_processes_lose_nothing(
    make_store: Callable[..., Any], paths: HomePaths, tmp_path: Path
) -> None:
    store = make_store()
    per_process = 3
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    procs = [
        spawn(
            "add_race.py", str(paths.home), str(barrier), f"p{i}", str(per_process), env=_env(store)
        )
        for i in range(RACERS)
    ]
    _start_line(barrier, procs)
    printed = [line for out in _finish(procs) for line in out.split()]
    assert len(printed) == RACERS * per_process
    jobs = store.list_jobs()
    assert sorted(j["id"] for j in jobs) == sorted(printed)
    assert len({j["id"] for j in jobs}) == RACERS * per_process
    assert sorted(j["name"] for j in jobs) == sorted(
        f"p{i}-{n}" for i in range(RACERS) for n in range(per_process)
    )


def test_sigkilled_writer_never_corrupts_or_loses_a_returned_write(
    paths: HomePaths, clock: FakeClock
) -> None:
    rng = random.Random(1234)
    confirmed: List[str] = []
    for _ in range(30):
        proc = spawn("kill_writer.py", str(paths.home), stderr=subprocess.DEVNULL)
        assert proc.stdout is not None
        first = proc.stdout.readline()  # it is writing now
        assert first.strip(), "the writer died before its first write"
        time.sleep(rng.uniform(0, 0.05))  # ...and dies at a random moment
        proc.send_signal(signal.SIGKILL)
        rest = proc.stdout.read()
        proc.wait(30)
        proc.stdout.close()
        # Only complete lines were printed after add() returned.
        confirmed += [first.strip()] + [ln for ln in rest.split("\n")[:-1] if ln]

        raw = paths.jobs.read_text()
        doc = json.loads(raw)  # always parses
        on_disk = {j["id"] for j in doc["jobs"]}
        missing = set(confirmed) - on_disk
        assert not missing, f"writes that returned were lost: {missing}"
        snap = new_store(paths, clock).snapshot()
        assert snap.quarantined == []
    assert len(confirmed) >= 30, len(confirmed)
    # No claim is left dangling forever: the store still works normally afterwards.
    store = new_store(paths, clock)
    store.add(sched("every 1h", clock), command=["true"])
    leftovers = [p.name for p in paths.cron_dir.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
