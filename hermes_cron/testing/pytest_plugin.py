"""pytest plugin (entry point ``pytest11``): fixtures for hermes-cron plugin authors.

Installed with hermes-cron, so it is active in any pytest session of a project
that has hermes-cron installed. Fixtures (all function-scoped):

``hermes_home``
    A fresh temporary ``HERMES_HOME`` (also exported in the environment, so
    subprocesses and code that reads ``$HERMES_HOME`` see it).
``cron_clock``
    A ``FakeClock`` at 2026-03-02 12:00 UTC (a Monday); move it with
    ``advance(seconds)`` or ``set(datetime)``.
``cron_store``
    A ``JobStore`` on ``hermes_home`` driven by ``cron_clock``.
``cron_runner``
    A ``RecordingRunner``: a ``run_job`` plugin that records runs and answers ``ok``.
``cron_service``
    A factory: ``cron_service(provider=None, *, plugin=None, config=None,
    plugins=(), clock=None)`` returns a ``CronService`` on ``hermes_home`` with
    that provider active (see ``hermes_cron.testing.fixtures.make_service``).
    ``clock`` defaults to ``cron_clock``. Threads started with
    ``service.start_in_thread()`` are stopped at teardown.
``block_sockets``
    Every socket connection and name lookup fails (loopback included) while the
    test runs; returns the ``SocketGuard`` whose ``attempts`` lists who tried.
    Use it around ``is_available``, which must never touch the network.

The fixture names are prefixed so they do not clash with a project's own
``home`` or ``clock`` fixtures. Heavy imports happen inside the fixtures, so
this plugin costs nothing in sessions that do not use it.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, List

import pytest

# The conformance suite's asserts should explain themselves like test code's.
pytest.register_assert_rewrite("hermes_cron.testing.conformance")

#: Where ``cron_clock`` starts: a Monday, mid-day, far from any DST change.
CLOCK_START = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def hermes_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh HERMES_HOME, exported as ``$HERMES_HOME``."""
    path = tmp_path_factory.mktemp("hermes_home")
    monkeypatch.setenv("HERMES_HOME", str(path))
    monkeypatch.delenv("HERMES_CRON_TRACE_PLUGINS", raising=False)
    return path


@pytest.fixture
def cron_clock() -> Any:
    """A ``FakeClock`` at 2026-03-02 12:00 UTC, moved by hand."""
    from hermes_cron.clock import FakeClock

    return FakeClock(CLOCK_START)


@pytest.fixture
def cron_store(hermes_home: Path, cron_clock: Any) -> Any:
    """A ``JobStore`` on ``hermes_home`` with the default claim TTL and misfire grace."""
    from hermes_cron.paths import HomePaths
    from hermes_cron.store import JobStore

    return JobStore(HomePaths.at(hermes_home), clock=cron_clock, default_tz="UTC")


@pytest.fixture
def cron_runner() -> Any:
    """A ``RecordingRunner``: pass it in ``plugins=[...]`` to record runs instead of
    running commands."""
    from hermes_cron.testing.fixtures import RecordingRunner

    return RecordingRunner()


@pytest.fixture
def cron_service(hermes_home: Path, cron_clock: Any) -> Iterator[Callable[..., Any]]:
    """A factory of ``CronService`` objects on ``hermes_home`` (see the module docstring)."""
    from hermes_cron.testing.fixtures import make_service

    services: List[Any] = []

    def factory(provider: Any = None, **kwargs: Any) -> Any:
        kwargs.setdefault("clock", cron_clock)
        service = make_service(hermes_home, provider=provider, **kwargs)
        _track_threads(service)
        services.append(service)
        return service

    yield factory
    for service in services:
        for handle in getattr(service, "_testing_threads", ()):
            handle.stop(timeout=30)


def _track_threads(service: Any) -> None:
    """Remember every ``start_in_thread`` handle so teardown can stop it."""
    handles: List[Any] = []
    original = service.start_in_thread

    def start_in_thread() -> Any:
        handle = original()
        handles.append(handle)
        return handle

    service._testing_threads = handles
    service.start_in_thread = start_in_thread


@pytest.fixture
def block_sockets(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Refuse every socket connection and lookup; returns the guard (``.attempts``)."""
    from hermes_cron.testing.fixtures import SocketGuard

    return SocketGuard().install(monkeypatch)
