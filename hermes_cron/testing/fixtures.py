"""Building blocks of the pytest plugin and the conformance suite, usable without pytest.

* ``make_service``: a ``CronService`` on a home, with a provider selected either
  the way users select it (``cron.provider`` + discovery) or directly from a
  plugin object that is not installed (``select_provider``).
* ``RecordingRunner``: a ``run_job`` plugin that records every job it runs and
  answers ``ok`` (or fails on request: ``fail_next``), so provider tests need no
  subprocess.
* ``SocketGuard``: refuses every socket connection (loopback included) and
  remembers who tried; ``is_available`` must never touch the network.
* ``wait_for``: poll a condition with a generous bound instead of sleeping.
"""

from __future__ import annotations

import copy
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Union

import yaml

from ..clock import Clock
from ..config import DEFAULTS, Config, deep_merge
from ..hookspec import hookimpl
from ..runner import RunOutcome

__all__ = [
    "RecordingRunner",
    "SocketGuard",
    "make_service",
    "select_provider",
    "wait_for",
    "write_config",
]


def write_config(home: Union[str, Path], data: Mapping[str, Any]) -> Path:
    """Write ``data`` as ``$home/config.yaml`` and return the file's path."""
    path = Path(home) / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(dict(data), sort_keys=False), encoding="utf-8")
    return path


def wait_for(
    pred: Callable[[], Any], timeout: float = 20.0, interval: float = 0.01, *, what: str = ""
) -> Any:
    """Poll ``pred`` until it returns something truthy and return that; raise
    ``AssertionError`` (naming ``what`` when given) after ``timeout`` seconds. Keep
    ``timeout`` generous: CI is slow."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            if what:
                raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
            raise AssertionError(f"condition not met within {timeout:g} s: {pred!r}")
        time.sleep(interval)


class RecordingRunner:
    """A ``run_job`` plugin that runs nothing: it records the job and answers ``ok``.

    Register it with ``make_service(plugins=[runner])`` (or the ``cron_service``
    fixture); it answers before the default executor, for command and prompt
    jobs alike. ``runs`` lists ``(job_id, fire_at)`` in the order they ran.
    """

    def __init__(self, output: str = "recorded") -> None:
        self.output = output
        self.runs: List[tuple] = []
        self._failures: List[str] = []
        self._cond = threading.Condition()

    def fail_next(self, count: int = 1, status: str = "error") -> None:
        """Answer ``status`` (``error`` or ``timeout``) to the next ``count`` runs, e.g. to
        see a job's retries fire."""
        with self._cond:
            self._failures.extend([status] * count)

    @hookimpl
    def run_job(self, ctx: Any, job: Dict[str, Any]) -> RunOutcome:
        claim = job.get("fire_claim") or {}
        with self._cond:
            self.runs.append((job["id"], claim.get("fire_at")))
            status = self._failures.pop(0) if self._failures else "ok"
            self._cond.notify_all()
        if status != "ok":
            return RunOutcome(status=status, output=self.output, error=f"made to fail ({status})")
        return RunOutcome(status="ok", output=self.output)

    def ran(self, job_id: Optional[str] = None) -> int:
        """How many runs were recorded (of ``job_id`` when given)."""
        with self._cond:
            return sum(1 for jid, _ in self.runs if job_id is None or jid == job_id)

    def wait(self, count: int, timeout: float = 20.0) -> None:
        """Block until at least ``count`` runs were recorded; ``AssertionError`` after
        ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.runs) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"expected {count} run(s) within {timeout:g} s, saw {len(self.runs)}"
                    )
                self._cond.wait(left)


class SocketGuard:
    """While active, every socket connection and name lookup fails with ``OSError``
    and is recorded in ``attempts`` (so a provider that catches the error is still
    caught). Use as a context manager, or ``install(monkeypatch)`` in a fixture."""

    def __init__(self) -> None:
        self.attempts: List[str] = []
        self._saved: List[tuple] = []

    def _refuse(self, what: str, *, method: bool) -> Callable[..., Any]:
        def refuse(*args: Any, **kwargs: Any) -> Any:
            # The address: after ``self`` for socket methods, first for module functions.
            target = args[1:2] if method else args[:1]
            shown = ", ".join(repr(a) for a in target)
            self.attempts.append(f"{what}({shown})")
            raise OSError(f"sockets are blocked: {what}({shown})")

        return refuse

    def _targets(self) -> List[tuple]:
        return [
            (socket.socket, "connect", self._refuse("socket.connect", method=True)),
            (socket.socket, "connect_ex", self._refuse("socket.connect_ex", method=True)),
            (socket, "create_connection", self._refuse("socket.create_connection", method=False)),
            (socket, "getaddrinfo", self._refuse("socket.getaddrinfo", method=False)),
        ]

    def install(self, monkeypatch: Any) -> SocketGuard:
        """Block sockets through a pytest ``monkeypatch`` (undone at teardown)."""
        for owner, name, replacement in self._targets():
            monkeypatch.setattr(owner, name, replacement)
        return self

    def __enter__(self) -> SocketGuard:
        for owner, name, replacement in self._targets():
            self._saved.append((owner, name, getattr(owner, name)))
            setattr(owner, name, replacement)
        return self

    def __exit__(self, *exc: Any) -> None:
        while self._saved:
            owner, name, original = self._saved.pop()
            setattr(owner, name, original)


def select_provider(service: Any, plugin: Any, name: str, *, source: str = "test") -> None:
    """Make ``plugin`` the active provider of ``service`` under ``name``.

    For a provider that is not installed or discoverable (a module under test).
    It goes through the same validation as a discovered provider
    (``register_provider``: no ``trylast``, ``specname`` or ``run_job``) and the
    same subset calling, but skips ``is_available``: test that separately.

    :raises PluginError: when the plugin breaks the provider rules.
    """
    from ..plugin_manager import BUILTIN_NAME, register_provider
    from ..resolver import ActiveScheduler

    if name == BUILTIN_NAME:
        return
    register_provider(service.pm, plugin, name)
    service.scheduler = ActiveScheduler(
        service.pm,
        name=name,
        requested=name,
        plugin=plugin,
        source=source,
        path=getattr(plugin, "__file__", None),
        error_sink=service.scheduler.error_sink,
    )
    service.ctx.provider_name = name
    service.config.setdefault("cron", {})["provider"] = name


def make_service(
    home: Union[str, Path],
    *,
    provider: Optional[str] = None,
    plugin: Any = None,
    config: Optional[Mapping[str, Any]] = None,
    plugins: Iterable[Any] = (),
    clock: Optional[Clock] = None,
    write: bool = True,
) -> Any:
    """A ``CronService`` on ``home`` with ``provider`` active.

    :param provider: the provider's name; None or ``builtin`` is the built-in.
        Without ``plugin`` it is looked up the way users select it
        (``cron.provider`` and discovery: bundled, user folder, entry point).
    :param plugin: a provider plugin object (a module, usually) to select under
        ``provider`` without discovery (see ``select_provider``).
    :param config: merged over the defaults (``cron.provider`` is set for you).
    :param plugins: extra plugins, e.g. a ``RecordingRunner``.
    :param clock: the clock (a ``FakeClock`` in tests).
    :param write: also write the configuration to ``config.yaml``, so that
        ``hermes-cron`` commands run on ``home`` see it.
    :returns: the service. When a discovered provider could not be selected, the
        service runs the built-in: check ``service.provider_name`` and
        ``service.scheduler.fallback_reason``.
    """
    from ..service import CronService

    name = (provider or "").strip()
    merged: Config = deep_merge(DEFAULTS, dict(config or {}))
    merged["cron"]["provider"] = "" if plugin is not None else name
    if write:
        on_disk = copy.deepcopy(merged)
        on_disk["cron"]["provider"] = name
        write_config(home, on_disk)
    service = CronService.from_home(home, config=merged, plugins=list(plugins), clock=clock)
    if plugin is not None and name:
        select_provider(service, plugin, name)
    return service
