"""Tests of the filetick provider: the hermes-cron conformance suite, then its own behaviour.

The fixtures (``hermes_home``, ``cron_clock``, ``cron_service``, ``cron_runner``,
``block_sockets``) come from hermes-cron's pytest plugin, active wherever
hermes-cron is installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import hermes_cron_filetick
import pytest

from hermes_cron.testing.conformance import ProviderConformance
from hermes_cron.testing.fixtures import wait_for


class TestFiletickConformance(ProviderConformance):
    """The contract every provider must meet. No ``provider_module``: the provider
    is found through its entry point, exactly as ``cron.provider: filetick`` finds it."""

    provider_name = "filetick"
    provider_config = {"cron": {"filetick": {"poll": 0.05}}}

    def prepare_home(self, home: Path) -> None:
        (home / "cron").mkdir(exist_ok=True)  # the trigger file's folder must exist


def touch(path: Path) -> None:
    """Change the file's stamp even when two touches land in the same clock tick."""
    path.touch()
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


@pytest.fixture
def filetick(hermes_home: Path, cron_service: Any, cron_runner: Any) -> Any:
    (hermes_home / "cron").mkdir()
    return cron_service(
        "filetick", config={"cron": {"filetick": {"poll": 0.05}}}, plugins=[cron_runner]
    )


def test_is_available_needs_the_trigger_folder(
    hermes_home: Path, block_sockets: Any, tmp_path: Path
) -> None:
    config = {"cron": {"filetick": {"path": str(tmp_path / "missing" / "tick")}}}
    assert hermes_cron_filetick.is_available(config) is False
    config = {"cron": {"filetick": {"path": str(tmp_path / "tick")}}}
    assert hermes_cron_filetick.is_available(config) is True
    assert block_sockets.attempts == []


def test_unavailable_filetick_falls_back_to_the_builtin(
    hermes_home: Path, cron_service: Any, tmp_path: Path
) -> None:
    service = cron_service(
        "filetick", config={"cron": {"filetick": {"path": str(tmp_path / "nope" / "tick")}}}
    )
    assert service.provider_name == "builtin"
    assert "filetick" in service.scheduler.fallback_reason


def test_touching_the_file_fires_due_jobs_once(
    filetick: Any, cron_clock: Any, cron_runner: Any, hermes_home: Path
) -> None:
    trigger = hermes_home / "cron" / "filetick"
    job = filetick.add_job("every 1h", command=["true"])
    other = filetick.add_job("every 2h", command=["true"])
    cron_clock.advance(3600)  # the hourly job is due, the other is not
    handle = filetick.start_in_thread()

    def poke() -> int:
        touch(trigger)
        cron_clock.advance(0.05)  # the fake clock drives the provider's poll
        return cron_runner.ran()

    wait_for(poke, timeout=30)
    summary = handle.stop(timeout=30)
    assert summary["provider"] == "filetick" and summary["fired"] == 1
    assert cron_runner.ran(job["id"]) == 1 and cron_runner.ran(other["id"]) == 0
    [row] = filetick.ledger.read()
    assert (row["job_id"], row["provider"], row["status"]) == (job["id"], "filetick", "ok")


def test_no_touch_no_fire(filetick: Any, cron_clock: Any, cron_runner: Any) -> None:
    filetick.add_job("every 1h", command=["true"])
    handle = filetick.start_in_thread()
    for _ in range(20):
        cron_clock.advance(3600)  # due again and again, but nobody touches the file
    handle.stop(timeout=30)
    assert cron_runner.ran() == 0


def test_hermes_cron_lists_filetick_from_its_entry_point(hermes_home: Path) -> None:
    (hermes_home / "cron").mkdir()
    env = dict(os.environ, HERMES_HOME=str(hermes_home))
    proc = subprocess.run(
        [sys.executable, "-m", "hermes_cron", "providers", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    rows = {row["name"]: row for row in json.loads(proc.stdout)}
    assert rows["filetick"]["source"] == "entrypoint"
    assert rows["filetick"]["available"] is True
    assert rows["filetick"]["error"] is None
    assert rows["filetick"]["path"].endswith("__init__.py")


def test_the_daemon_runs_filetick(hermes_home: Path) -> None:
    """End to end: a real ``hermes-cron daemon`` process fires a due job on a touch."""
    (hermes_home / "cron").mkdir()
    (hermes_home / "config.yaml").write_text(
        "cron:\n  provider: filetick\n  filetick:\n    poll: 0.05\n", encoding="utf-8"
    )
    env = dict(os.environ, HERMES_HOME=str(hermes_home))
    marker = hermes_home / "ran"
    add = subprocess.run(
        [sys.executable, "-m", "hermes_cron", "add", "+1s", "--",
         sys.executable, "-c", f"open({str(marker)!r}, 'w').write('ok')"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert add.returncode == 0, add.stderr
    daemon = subprocess.Popen(
        [sys.executable, "-m", "hermes_cron", "daemon"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        trigger = hermes_home / "cron" / "filetick"

        def poke() -> bool:
            touch(trigger)
            time.sleep(0.1)
            return marker.exists()

        wait_for(poke, timeout=30, interval=0)
    finally:
        daemon.terminate()
        out, err = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, err
    assert "filetick: watching" in err
