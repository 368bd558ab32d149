"""Shared by the subprocess helper scripts in this folder (run with ``sys.executable``)."""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from hermes_cron.clock import FakeClock, SystemClock
from hermes_cron.paths import HomePaths
from hermes_cron.store import JobStore
from hermes_cron.timeutil import parse_iso


def make_store(home: str, now: str = "") -> Any:
    """A store on ``home`` (or on the database ``$HERMES_CRON_STORE`` names); ``now``
    (ISO) pins a FakeClock that also gives the PostgreSQL store its "now", empty means
    the system clock (and the database's clock)."""
    clock = FakeClock(parse_iso(now)) if now else SystemClock()
    url = os.environ.get("HERMES_CRON_STORE", "")
    if url:
        from hermes_cron.store.postgres import PostgresStore

        now_from = "clock" if now else "database"
        return PostgresStore(url, HomePaths.at(home), clock=clock, now_from=now_from)
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
