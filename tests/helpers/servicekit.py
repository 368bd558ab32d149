"""Helpers for the provider framework, service, CLI and daemon tests (``helpers.servicekit``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import yaml

from hermes_cron import hookimpl
from hermes_cron.clock import FakeClock
from hermes_cron.runner import RunOutcome
from hermes_cron.testing.fixtures import wait_for as wait_for  # shared by the tests

REPO = Path(__file__).resolve().parents[2]

#: The threads of a built-in provider started with ``start_in_thread`` that sleep on its
#: clock between fires: the loop and the dispatcher of claims made ahead of time.
IDLE_SLEEPERS = ("hermes-cron-provider", "hermes-cron-dispatch")


def wait_idle(clock: FakeClock) -> None:
    """Wait (real time, generously) until the built-in loop and its dispatcher sleep on
    ``clock``.

    Move a fake clock only then. The loop reads the time, works out how long to sleep,
    writes its heartbeat and sleeps: a jump in between makes it count its sleep from
    after the jump, and a fake clock that moves no more never wakes it. The heartbeat
    in ``status.json`` is written before that sleep, so it is no sign of it; nor is a
    count of sleepers (a run's claim renewer sleeps on the clock too).
    """
    assert clock.wait_for_sleepers(*IDLE_SLEEPERS, timeout=60), (
        f"the built-in loop never slept on the clock (sleeping: {clock.sleepers()})"
    )


def advance_idle(clock: FakeClock, seconds: float) -> datetime:
    """``clock.advance(seconds)`` once the built-in loop sleeps on it (see ``wait_idle``)."""
    wait_idle(clock)
    return clock.advance(seconds)


def write_config(home: Path, data: Dict[str, Any]) -> None:
    (home / "config.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")


def write_user_plugin(
    home: Path,
    folder: str,
    code: str,
    *,
    name: Optional[str] = None,
    meta: Optional[str] = None,
    init: bool = True,
) -> Path:
    """A user plugin folder ``$HERMES_HOME/plugins/cron/<folder>/``."""
    path = home / "plugins" / "cron" / folder
    path.mkdir(parents=True, exist_ok=True)
    if meta is None:
        meta = f"name: '{name or folder}'\ndescription: test plugin {folder}\nversion: '1.0'\n"
    (path / "plugin.yaml").write_text(meta, encoding="utf-8")
    if init:
        (path / "__init__.py").write_text(textwrap.dedent(code), encoding="utf-8")
    return path


def write_dist(
    base: Path, dist: str, entry_points: Dict[str, str], modules: Dict[str, str]
) -> Path:
    """An installed distribution on a folder of its own: modules plus a ``.dist-info`` with
    ``METADATA`` and ``entry_points.txt`` (group ``hermes_cron``). Returns the folder to put
    on ``sys.path``."""
    site = base / f"site-{dist}"
    site.mkdir(parents=True, exist_ok=True)
    for module, code in modules.items():
        (site / f"{module}.py").write_text(textwrap.dedent(code), encoding="utf-8")
    info = site / f"{dist}-1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n", encoding="utf-8"
    )
    lines = ["[hermes_cron]"] + [f"{k} = {v}" for k, v in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return site


class PromptRunner:
    """A ``run_job`` for prompt jobs whose behaviour the prompt picks.

    ``ok`` succeeds; ``boom`` raises; ``hang`` blocks until ``release`` is set; anything
    else succeeds and echoes the prompt. Every call is recorded with the clock's time.
    """

    def __init__(self) -> None:
        self.calls: List[Dict[str, Any]] = []
        self.release = threading.Event()
        self._lock = threading.Lock()

    @hookimpl
    def run_job(self, ctx: Any, job: Dict[str, Any]) -> Optional[RunOutcome]:
        prompt = job.get("prompt")
        if prompt is None:
            return None
        with self._lock:
            self.calls.append(
                {
                    "job_id": job["id"],
                    "fire_at": job["fire_claim"]["fire_at"],
                    "at": ctx.clock.now(),
                    "prompt": prompt,
                }
            )
        if prompt == "boom":
            raise RuntimeError("boom")
        if prompt == "hang":
            self.release.wait(60)
        return RunOutcome(status="ok", output=f"ran {prompt}")

    def count(self, job_id: str) -> int:
        with self._lock:
            return sum(1 for c in self.calls if c["job_id"] == job_id)

    def fires(self, job_id: str) -> List[str]:
        with self._lock:
            return [c["fire_at"] for c in self.calls if c["job_id"] == job_id]


def cli_cmd(*args: str) -> List[str]:
    return [sys.executable, "-m", "hermes_cron", *args]


def run_cli(
    home: Path, *args: str, timeout: float = 60.0, **kwargs: Any
) -> subprocess.CompletedProcess:
    env = dict(os.environ, HERMES_HOME=str(home))
    env.pop("HERMES_CRON_DEBUG", None)
    return subprocess.run(
        cli_cmd(*args),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(home),
        **kwargs,
    )


def ledger_rows(home: Path) -> List[Dict[str, Any]]:
    path = home / "cron" / "runs.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            rows.append(json.loads(line))
    return rows


@contextmanager
def running_daemon(home: Path, **popen: Any) -> Iterator[subprocess.Popen]:
    """A ``hermes-cron daemon`` on ``home``, ready (heartbeat written); killed if left."""
    from hermes_cron.paths import HomePaths
    from hermes_cron.status_file import read_status

    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.PIPE)
    proc = subprocess.Popen(
        cli_cmd("daemon"),
        env=dict(os.environ, HERMES_HOME=str(home)),
        text=True,
        cwd=str(home),
        **popen,
    )
    try:
        wait_for(
            lambda: proc.poll() is not None or read_status(HomePaths.at(home)).get("heartbeat_at"),
            timeout=30,
        )
        assert proc.poll() is None, proc.communicate()
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
