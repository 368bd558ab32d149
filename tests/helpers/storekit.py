"""Helpers for the store, ledger and runner tests (imported as ``helpers.storekit``)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional

from hermes_cron.clock import Clock
from hermes_cron.paths import HomePaths
from hermes_cron.schedules import Schedule, parse_schedule
from hermes_cron.store import JobStore
from hermes_cron.testing.fixtures import wait_for

HELPERS = Path(__file__).resolve().parent


def new_store(paths: HomePaths, clock: Clock, *, url: Optional[str] = None, **kwargs: Any) -> Any:
    """A store on ``paths``: the file store, or with ``url`` the PostgreSQL store (its
    "now" from ``clock`` unless ``now_from="database"``, so fake clocks drive both)."""
    if url is not None:
        from hermes_cron.store.postgres import PostgresStore

        kwargs.pop("lock_timeout", None)
        kwargs.setdefault("now_from", "clock")
        return PostgresStore(url, paths, clock=clock, **kwargs)
    kwargs.setdefault("lock_timeout", 30.0)
    return JobStore(paths, clock=clock, **kwargs)


@contextlib.contextmanager
def counting_writes(store: Any) -> Iterator[List[int]]:
    """Count the store's writes while the block runs: file rewrites of ``jobs.json``, or
    PostgreSQL transactions."""
    writes: List[int] = []
    if isinstance(store, JobStore):
        real = store._mutate

        def mutate(fn: Any) -> Any:
            writes.append(1)
            return real(fn)

        store._mutate = mutate  # type: ignore[method-assign]
        try:
            yield writes
        finally:
            del store._mutate
        return
    real_run = store._run

    def run(body: Any, *, write: bool) -> Any:
        if write:
            writes.append(1)
        return real_run(body, write=write)

    store._run = run
    try:
        yield writes
    finally:
        del store._run


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
    url: Optional[str] = None,
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

    pm = pluggy.PluginManager("hermes_cron")
    # hermes_cron.hookspec the attribute is the marker; the module holds the specs.
    pm.add_hookspecs(importlib.import_module("hermes_cron.hookspec"))
    if default_executor:
        pm.register(DefaultExecutor(), name="default-executor")
    for plugin in plugins:
        pm.register(plugin)
    pm.check_pending()
    config = copy.deepcopy(DEFAULTS)
    store = new_store(paths, clock, url=url, **store_kwargs)
    return CronContext(
        config=config,
        store=store,
        ledger=store.runs,
        clock=clock,
        logger=logging.getLogger("hermes_cron.test"),
        paths=paths,
        hook=pm.hook,
    )


def hand_edit(store: Any, job_id: str, value: Any) -> None:
    """Replace the record of ``job_id`` by ``value`` the way a person would: editing
    ``jobs.json`` in place, or ``UPDATE`` on the row from a session of their own."""
    import json

    if isinstance(store, JobStore):
        doc = json.loads(store.path.read_text())
        doc["jobs"] = [value if r.get("id") == job_id else r for r in doc["jobs"]]
        _write_jobs(store.path, doc["jobs"])
        return
    import psycopg

    with psycopg.connect(store.url, autocommit=True) as conn:
        conn.execute(
            "UPDATE hermes_cron_jobs SET record = %s::jsonb WHERE id = %s",
            (json.dumps(value), job_id),
        )


def hand_insert(store: Any, value: Any, row_id: Optional[str] = None) -> None:
    """Add a record by hand (at the end of ``jobs.json``, or ``INSERT`` of a row)."""
    import json

    if isinstance(store, JobStore):
        records = json.loads(store.path.read_text())["jobs"] if store.path.exists() else []
        _write_jobs(store.path, [*records, value])
        return
    import psycopg

    with psycopg.connect(store.url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO hermes_cron_jobs (id, record) VALUES (%s, %s::jsonb)",
            (row_id or value["id"], json.dumps(value)),
        )


def _write_jobs(path: Path, records: list) -> None:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    body = ",\n    ".join(json.dumps(r) for r in records)
    path.write_text('{"version": 1, "jobs": [\n    ' + body + "\n]}\n")
