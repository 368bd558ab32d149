"""The fixtures hermes-cron's pytest plugin gives plugin authors (``hermes_home``,
``cron_clock``, ``cron_store``, ``cron_runner``, ``cron_service``, ``block_sockets``)
and the helpers behind them. They load in this very session through the ``pytest11``
entry point, next to our own conftest fixtures."""

from __future__ import annotations

import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, List

import pytest

from hermes_cron import hookimpl
from hermes_cron.testing.fixtures import SocketGuard, make_service, wait_for


def test_hermes_home_is_a_fresh_exported_folder(hermes_home: Path) -> None:
    assert hermes_home.is_dir() and list(hermes_home.iterdir()) == []
    assert os.environ["HERMES_HOME"] == str(hermes_home)


def test_cron_clock_starts_on_a_known_monday(cron_clock: Any) -> None:
    assert cron_clock.now() == datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)
    assert cron_clock.now().weekday() == 0
    cron_clock.advance(90)
    assert cron_clock.now() == datetime(2026, 3, 2, 12, 1, 30, tzinfo=timezone.utc)


def test_cron_store_writes_jobs_json_in_hermes_home(
    cron_store: Any, hermes_home: Path, cron_clock: Any
) -> None:
    from hermes_cron.schedules import parse_schedule

    schedule = parse_schedule("every 1h", tz="UTC", now=cron_clock.now())
    job = cron_store.add(schedule, command=["true"])
    assert (hermes_home / "cron" / "jobs.json").is_file()
    assert cron_store.get(job["id"])["next_run_at"] == "2026-03-02T13:00:00+00:00"


def test_cron_service_runs_on_the_fake_clock_and_records_with_the_runner(
    cron_service: Any, cron_runner: Any, cron_clock: Any
) -> None:
    service = cron_service(plugins=[cron_runner])
    assert service.provider_name == "builtin" and service.clock is cron_clock
    job = service.add_job("every 1h", command=["true"])
    handle = service.start_in_thread()
    cron_clock.advance(3600)
    cron_runner.wait(1, timeout=30)
    handle.stop(timeout=30)
    assert cron_runner.runs == [(job["id"], "2026-03-02T13:00:00+00:00")]


def test_cron_service_selects_a_discovered_provider_and_writes_config(
    cron_service: Any, hermes_home: Path, block_sockets: SocketGuard
) -> None:
    service = cron_service("chronos")  # bundled, but not configured: not available
    assert service.provider_name == "builtin"
    assert "chronos" in service.scheduler.fallback_reason
    assert "provider: chronos" in (hermes_home / "config.yaml").read_text(encoding="utf-8")
    assert block_sockets.attempts == []


class _Reconciler:
    """A provider plugin object that is not installed anywhere."""

    @hookimpl
    def reconcile(self, ctx: Any) -> Any:
        return {"by": "plugin"}


def test_cron_service_selects_a_plugin_object(cron_service: Any, cron_clock: Any) -> None:
    service = cron_service("mine", plugin=_Reconciler())
    assert service.provider_name == "mine"
    assert service.reconcile() == {"by": "plugin"}
    assert service.ctx.provider_name == "mine"


@pytest.fixture
def handles() -> Iterator[List[Any]]:
    """Set up before ``cron_service`` (it is requested first), so torn down after it."""
    started: List[Any] = []
    yield started
    assert started and not any(h.running for h in started), "a provider thread outlived the test"


def test_cron_service_stops_started_threads_at_teardown(
    handles: List[Any], cron_service: Any
) -> None:
    handle = cron_service().start_in_thread()
    wait_for(lambda: handle.running, timeout=30)
    handles.append(handle)  # still running: cron_service's teardown must stop it


def test_block_sockets_refuses_and_records_every_attempt(block_sockets: SocketGuard) -> None:
    with pytest.raises(OSError, match="blocked"):
        socket.create_connection(("127.0.0.1", 9), timeout=1)
    with pytest.raises(OSError, match="blocked"):
        socket.getaddrinfo("example.com", 443)
    sock = socket.socket()
    try:
        with pytest.raises(OSError, match="blocked"):
            sock.connect(("127.0.0.1", 9))
    finally:
        sock.close()
    assert len(block_sockets.attempts) == 3


def test_socket_guard_as_a_context_manager_restores_sockets() -> None:
    before = socket.socket.connect
    with SocketGuard() as guard:
        with pytest.raises(OSError):
            socket.getaddrinfo("localhost", 80)
    assert socket.socket.connect is before
    assert guard.attempts == ["socket.getaddrinfo('localhost')"]


def test_make_service_without_pytest(tmp_path: Path, cron_clock: Any) -> None:
    service = make_service(tmp_path, clock=cron_clock, write=False)
    assert service.provider_name == "builtin"
    assert not (tmp_path / "config.yaml").exists()
