"""Helpers for the store, ledger and runner tests (imported as ``helpers.storekit``)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, List, Optional

from hermes_cron.clock import Clock
from hermes_cron.paths import HomePaths
from hermes_cron.schedules import Schedule, parse_schedule
from hermes_cron.store import JobStore
from hermes_cron.testing.fixtures import wait_for

HELPERS = Path(__file__).resolve().parent


def new_store(paths: HomePaths, clock: Clock, **kwargs: Any) -> JobStore:
    kwargs.setdefault("lock_timeout", 30.0)
    return JobStore(paths, clock=clock, **kwargs)


def sched(text: str, clock: Clock, tz: Optional[str] = None) -> Schedule:
    return parse_schedule(text, tz=tz, now=clock.now())


def helper_cmd(script: str, *args: str) -> List[str]:
    return [sys.executable, str(HELPERS / script), *args]


def spawn(script: str, *args: str, **kwargs: Any) -> subprocess.Popen[str]:
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen(helper_cmd(script, *args), text=True, **kwargs)


def wait_until(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    return wait_for(predicate, timeout, 0.005, what=what)


def pid_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
        return state in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return True
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False


def fire_time(store: JobStore, job_id: str) -> datetime:
    from hermes_cron.timeutil import parse_iso

    return parse_iso(store.get(job_id)["next_run_at"])


def make_ctx(
    paths: HomePaths,
    clock: Clock,
    *plugins: object,
    default_executor: bool = True,
    **store_kwargs: Any,
) -> Any:
    """A CronContext on a real store and ledger, with DefaultExecutor and ``plugins``
    registered on a fresh plugin manager (as the service does)."""
    import copy
    import importlib
    import logging

    import pluggy

    from hermes_cron.config import DEFAULTS
    from hermes_cron.context import CronContext
    from hermes_cron.executor import DefaultExecutor
    from hermes_cron.ledger import RunLedger

    pm = pluggy.PluginManager("hermes_cron")
    # hermes_cron.hookspec the attribute is the marker; the module holds the specs.
    pm.add_hookspecs(importlib.import_module("hermes_cron.hookspec"))
    if default_executor:
        pm.register(DefaultExecutor(), name="default-executor")
    for plugin in plugins:
        pm.register(plugin)
    pm.check_pending()
    config = copy.deepcopy(DEFAULTS)
    return CronContext(
        config=config,
        store=new_store(paths, clock, **store_kwargs),
        ledger=RunLedger(paths),
        clock=clock,
        logger=logging.getLogger("hermes_cron.test"),
        paths=paths,
        hook=pm.hook,
    )
