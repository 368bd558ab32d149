"""Chaos: several ``hermes-cron daemon`` processes on one home, SIGKILLed and restarted at
random while sub-minute jobs fire and another process edits the store.

Promises checked (SPEC §4): every fire time runs at most once (the jobs' own output and
the run ledger agree: no ``(job_id, fire_at)`` twice), nothing is lost (every job still
in ``jobs.json``, valid; every edit that returned is there), a stale claim of a killed
daemon is taken over after ``cron.claim_ttl``, and the schedule keeps going after the
chaos ends. The chaos phase lasts ``HERMES_CRON_CHAOS_SECONDS`` (see ``reliakit``).
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Dict, List, Set, Tuple

from helpers.servicekit import write_config
from reliakit import (
    Daemon,
    chaos_seconds,
    duplicates,
    fire_lines,
    is_run,
    ledger,
    owner_pid,
    wait_until,
)

from hermes_cron.clock import SystemClock
from hermes_cron.schedules import Schedule
from hermes_cron.service import CronService
from hermes_cron.timeutil import UTC, parse_iso

DAEMONS = 3
CLAIM_TTL = 2


def _command(out: Path, tail: str = "") -> List[str]:
    # The claim's owner token names the daemon that ran the fire (see fire_lines).
    script = f'echo "$HERMES_CRON_JOB_ID $HERMES_CRON_FIRE_AT $HERMES_CRON_OWNER" >> {out}{tail}'
    return ["sh", "-c", script]


def _on_grid(schedule: Schedule, fire_at: str) -> bool:
    when = parse_iso(fire_at)
    return schedule.latest_at_or_before(when) == when


def _owner_pid(home: Path, job_id: str) -> Tuple[int, str]:
    """``(pid, fire_at)`` of the process holding ``job_id``'s claim, or ``(0, "")``."""
    try:
        doc = json.loads((home / "cron" / "jobs.json").read_text())
    except (OSError, ValueError):
        return 0, ""
    for job in doc["jobs"]:
        claim = job.get("fire_claim")
        if job["id"] == job_id and claim and owner_pid(claim["owner"]):
            return owner_pid(claim["owner"]), claim["fire_at"]
    return 0, ""


def test_killed_and_restarted_daemons_run_each_fire_at_most_once(home: Path) -> None:
    seconds = chaos_seconds()
    seed = int(os.environ.get("HERMES_CRON_CHAOS_SEED", "0") or 0) or random.randrange(1 << 30)
    rng = random.Random(seed)
    note = f"(chaos seed {seed}; rerun with HERMES_CRON_CHAOS_SEED={seed})"
    write_config(
        home,
        {"cron": {"claim_ttl": CLAIM_TTL, "job_timeout": 20, "max_workers": 4}},
    )
    out = home / "fires.txt"
    service = CronService.from_home(home, clock=SystemClock())
    jobs = {
        "a": service.add_job("every 1s", command=_command(out)),
        "b": service.add_job("every 1s", command=_command(out)),
        "c": service.add_job("every 2s", command=_command(out)),
        # Runs longer than the claim TTL and than its own interval: renewal and overlap.
        "long": service.add_job("every 2s", command=_command(out, "; sleep 3")),
    }
    ids = {job["id"]: key for key, job in jobs.items()}
    long_id = jobs["long"]["id"]
    daemons = [Daemon(home, str(n)).start() for n in range(DAEMONS)]
    killed: Set[int] = set()
    edits = _Editor(service)
    try:
        wait_until(
            lambda: {j for j, _, _ in fire_lines(out)} == set(ids),
            timeout=30,
            what="every job to fire once",
        )

        # A daemon killed in the middle of the long job: its claim goes stale after the
        # TTL and another daemon takes the job over.
        pid, fire_at = wait_until(
            lambda: _running_here(home, long_id, daemons), timeout=30, what="the long job to run"
        )
        victim = next(d for d in daemons if d.alive and d.pid == pid)
        victim.kill()
        killed.add(pid)
        taken = wait_until(
            lambda: [
                (f, p)
                for j, f, p in fire_lines(out)
                if j == long_id and parse_iso(f) > parse_iso(fire_at) and p != pid
            ],
            timeout=6 * CLAIM_TTL + 10,
            what=f"another daemon to take over the long job after the kill {note}",
        )
        assert taken, note
        victim.start()

        # Random kills while the editor writes the store from this process.
        edits.start()
        end = time.monotonic() + seconds
        kills = 0
        while time.monotonic() < end:
            time.sleep(rng.uniform(0.1, 0.8))
            daemon = rng.choice(daemons)
            if daemon.alive:
                killed.add(daemon.pid)
                daemon.kill()
                kills += 1
            if rng.random() < 0.3:
                time.sleep(rng.uniform(0, 0.5))  # all of them may be down for a moment
            for other in daemons:
                if not other.alive and rng.random() < 0.8:
                    other.start()
        for daemon in daemons:
            if not daemon.alive:
                daemon.start()
        edits.stop()
        chaos_end = datetime.now(UTC)
        assert kills >= 3, f"the chaos loop killed only {kills} daemons {note}"

        # The schedule keeps going: every job fires again after the chaos.
        wait_until(
            lambda: (
                {
                    j
                    for j, f, _ in fire_lines(out)
                    if parse_iso(f) > chaos_end + timedelta(seconds=1)
                }
                == set(ids)
            ),
            timeout=30,
            what=f"every job to fire after the chaos {note}",
        )
    finally:
        edits.stop()
        codes = {}
        for daemon in daemons:
            if daemon.alive:
                codes[daemon.name] = daemon.stop()
    assert all(code == 0 for code in codes.values()), (codes, [d.tail() for d in daemons])

    # At most once: the jobs' own record of what ran has no fire twice...
    lines = fire_lines(out)
    assert not duplicates((j, f) for j, f, _ in lines), (
        duplicates((j, f) for j, f, _ in lines),
        note,
    )
    # ...nor does the ledger...
    rows = ledger(home)
    runs = [r for r in rows if is_run(r)]
    assert not duplicates((r["job_id"], r["fire_at"]) for r in runs), note
    # ...and they agree: each recorded run ran, under the claim of the daemon the ledger
    # names, and a run missing from the ledger was cut short by a SIGKILL of the daemon
    # that ran it.
    ran = {(j, f): p for j, f, p in lines}
    for row in runs:
        if row["job_id"] in ids:
            assert (row["job_id"], row["fire_at"]) in ran, (row, note)
            assert owner_pid(row["owner"]) == ran[(row["job_id"], row["fire_at"])], (row, note)
            if row["status"] == "ok":
                assert f"fire time: {row['fire_at']}" in Path(row["output"]).read_text()
    recorded = {(r["job_id"], r["fire_at"]) for r in runs}
    for (job_id, fire), pid in ran.items():
        if (job_id, fire) not in recorded:
            assert pid in killed, (job_id, fire, pid, note)
    # Every fire is one of the job's own fire times (nothing invented by a restart).
    schedules: Dict[str, Schedule] = {j: service.store.get_schedule(j) for j in ids}
    assert all(_on_grid(schedules[j], f) for j, f, _ in lines), note

    # Nothing lost: jobs.json parses, every job is there and valid, every edit stands.
    doc = json.loads((home / "cron" / "jobs.json").read_text())
    on_disk = {job["id"] for job in doc["jobs"]}
    assert set(ids) <= on_disk
    snap = CronService.from_home(home).store.snapshot()
    assert snap.quarantined == []
    edits.check(on_disk)
    assert [p.name for p in (home / "cron").iterdir() if p.name.endswith(".tmp")] == []


def _running_here(home: Path, job_id: str, daemons: List[Daemon]) -> Tuple[int, str]:
    pid, fire_at = _owner_pid(home, job_id)
    if pid and any(d.alive and d.pid == pid for d in daemons):
        return pid, fire_at
    return 0, ""


class _Editor:
    """Edits the store from this process during the chaos: adds jobs and flips one job
    between paused and scheduled, remembering every edit that returned."""

    def __init__(self, service: CronService) -> None:
        self.service = service
        self.added: List[str] = []
        self.flip = service.add_job("every 1h", command=["true"])["id"]
        self.paused = False
        self.errors: List[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(60)

    def _run(self) -> None:
        n = 0
        while not self._stop.wait(0.15):
            n += 1
            try:
                if n % 3 == 0:
                    job = self.service.add_job("+1h", command=["true", str(n)])
                    self.added.append(job["id"])
                elif self.paused:
                    self.service.resume_job(self.flip)
                    self.paused = False
                else:
                    self.service.pause_job(self.flip)
                    self.paused = True
            except Exception as exc:  # a lock timeout would be reported, never hidden
                self.errors.append(f"{type(exc).__name__}: {exc}")

    def check(self, on_disk: Set[str]) -> None:
        assert self.errors == []
        assert len(self.added) >= 3
        assert set(self.added) <= on_disk
        state = self.service.store.get(self.flip)["state"]
        assert state == ("paused" if self.paused else "scheduled")
