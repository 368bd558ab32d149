"""Shared fixtures: a temp HERMES_HOME, an injectable clock, and network guards."""

from __future__ import annotations

import ipaddress
import os
import socket
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator, List

import pytest

from hermes_cron.clock import FakeClock
from hermes_cron.paths import HomePaths
from hermes_cron.timeutil import UTC

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_loopback(address: object) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX path
        return True
    host = address[0] if isinstance(address, tuple) and address else ""
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _guarded_connect(self: socket.socket, address: object) -> None:
    if not _is_loopback(address):
        raise OSError(f"test tried to reach the network: {address!r} (only loopback is allowed)")
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    if not _is_loopback(address):
        raise OSError(f"test tried to reach the network: {address!r} (only loopback is allowed)")
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach the network beyond loopback."""
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)


@pytest.fixture(autouse=True)
def _default_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``HERMES_CRON_STORE`` in the developer's shell must not redirect the tests (the
    PostgreSQL tests set their own)."""
    monkeypatch.delenv("HERMES_CRON_STORE", raising=False)


@pytest.fixture
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Block every socket, loopback included (for ``is_available``, which must stay offline)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("sockets are blocked in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh HERMES_HOME, also exported in the environment for subprocesses."""
    path = tmp_path / "hermes"
    path.mkdir()
    monkeypatch.setenv("HERMES_HOME", str(path))
    monkeypatch.delenv("HERMES_CRON_TRACE_PLUGINS", raising=False)
    return path


@pytest.fixture
def paths(home: Path) -> HomePaths:
    return HomePaths.at(home)


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock at 2026-03-02 12:00 UTC (a Monday), moved by hand."""
    return FakeClock(datetime(2026, 3, 2, 12, 0, tzinfo=UTC))


# -- the store backends ----------------------------------------------------------------
# The store contract tests run on every backend: ``store_kind`` is "json" or
# "postgresql", and ``make_store`` builds stores of that kind on one home (one
# database), so a second store is "another process" on the same jobs.


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Any]:
    """A PostgreSQL server for the whole session (skipped when there are no server
    binaries, unless ``HERMES_CRON_REQUIRE_POSTGRES`` is set: then it fails)."""
    from hermes_cron.testing.pgcluster import REQUIRE_ENV, PgCluster, PgUnavailable

    try:
        cluster = PgCluster.start()
    except PgUnavailable as exc:
        if os.environ.get(REQUIRE_ENV, "").strip():
            pytest.fail(f"{exc}, and {REQUIRE_ENV} is set", pytrace=False)
        pytest.skip(f"{exc} (apt-get install postgresql)")
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: Any) -> str:
    """The URL of a fresh, empty database."""
    return str(pg_cluster.new_database())


@pytest.fixture(params=["json", "postgresql"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_store(
    store_kind: str, paths: HomePaths, clock: FakeClock, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Any]]:
    """``make_store(**kwargs)``: a store of ``store_kind`` on this test's home (and
    database), driven by ``clock`` unless ``clock=`` is given; closed at teardown."""
    from helpers.storekit import new_store

    url = request.getfixturevalue("pg_url") if store_kind == "postgresql" else None
    made: List[Any] = []

    def make(**kwargs: Any) -> Any:
        store = new_store(paths, kwargs.pop("clock", clock), url=url, **kwargs)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()
