"""Shared by the subprocess helper scripts in this folder (run with ``sys.executable``)."""

from __future__ import annotations

import os
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fake_schedules  # noqa: E402  (temporary, until hermes_cron.schedules lands)

fake_schedules.install_if_needed()

from hermes_cron.clock import FakeClock, SystemClock  # noqa: E402
from hermes_cron.paths import HomePaths  # noqa: E402
from hermes_cron.store import JobStore  # noqa: E402
from hermes_cron.timeutil import parse_iso  # noqa: E402


def make_store(home: str, now: str = "") -> JobStore:
    """A store on ``home``; ``now`` (ISO) pins a FakeClock, empty means the system clock."""
    clock = FakeClock(parse_iso(now)) if now else SystemClock()
    return JobStore(HomePaths.at(home), clock=clock, lock_timeout=60.0)


def barrier(folder: str, name: str, timeout: float = 60.0) -> None:
    """Say ``name`` is ready, then wait until the parent creates ``go``."""
    Path(folder, f"ready-{name}").touch()
    go = Path(folder, "go")
    deadline = time.monotonic() + timeout
    while not go.exists():
        if time.monotonic() > deadline:
            raise SystemExit("barrier: no go signal")
        time.sleep(0.001)


def iso(dt: datetime) -> str:
    return dt.isoformat()
