"""Conformance suites: one every trigger provider should pass, one for extensions.

Subclass ``ProviderConformance`` in a test module, under a name pytest collects
(``Test...``), and say which provider to check::

    from hermes_cron.testing.conformance import ProviderConformance

    class TestMyProvider(ProviderConformance):
        provider_name = "myprovider"          # the name users put in cron.provider
        provider_module = "myprovider_pkg"    # optional: import this module directly
        provider_config = {"cron": {"myprovider": {"url": "https://example.com"}}}

Without ``provider_module`` or ``provider_plugin`` the provider is found the way
users find it (``cron.provider`` plus discovery: bundled, user folder, entry
point), which also checks that your entry point works. Override
``prepare_home`` to write files your provider needs (``auth.json``...),
``prepare_service`` to wire a fake remote (an ``httpx.MockTransport``), and
``observe`` to return the provider's outside state (what a remote service has
armed) so the suite can check that ``reconcile`` is idempotent there too.

What is checked (SPEC section 6 and the hook reference):

* the plugin follows the provider rules: no ``run_job``, no ``trylast``, no
  ``specname``, only known hooks, at least one provider hook;
* ``is_available`` answers a ``bool`` with sockets blocked (loopback too), and
  is True for ``provider_config``; selecting the provider never touches the network;
* ``start`` returns a non-None value, and a ``start`` that blocks returns within
  ``stop_timeout`` seconds once ``stop_event`` is set;
* every call a provider handles returns non-None (None would let the built-in
  default run as well);
* ``reconcile`` is idempotent: a second call changes neither ``jobs.json``, the
  ledger, nor what ``observe`` reports;
* ``on_jobs_changed`` tolerates ids of removed and unknown jobs;
* ``fire_due`` goes through the shared claim: a fire for a wrong ``fire_at`` runs
  nothing, a duplicate fire runs once, racing fires from two services run once,
  a paused or removed job does not run, and a won fire is recorded in the ledger
  under the provider's name.

Extensions (plugins that implement only ``run_job`` and/or ``run_finished``)
subclass ``ExtensionConformance`` the same way::

    from hermes_cron.testing.conformance import ExtensionConformance

    class TestMyNotifier(ExtensionConformance):
        extension_name = "notifier"           # its plugin.yaml or entry point name
        extension_module = "notifier_pkg"     # optional: import this module directly

It checks that the plugin implements no provider hook (else it is a provider,
registered only when selected), that it registers as an extension, and that its
``run_finished`` takes every kind of result without raising: ``ok``, ``error``,
``timeout``, ``skipped``, ``missed``, ``cancelled`` and interrupted rows, a
manual run and a retry attempt; and a real run through the service reaches it
with no failure logged. Override ``prepare_service`` to point it at a fake
remote (an ``httpx.MockTransport``) so the suite runs offline.

The suites use the fixtures of ``hermes_cron.testing.pytest_plugin``
(``hermes_home``, ``cron_clock``, ``block_sockets``), active wherever hermes-cron
is installed. Jobs never run a real command: a ``RecordingRunner`` answers
``run_job``.
"""

from __future__ import annotations

import copy
import functools
import importlib
import inspect
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, ClassVar, Dict, List, Mapping, Optional

import pluggy
import pytest

from ..config import DEFAULTS, deep_merge
from ..hookspec import EXECUTION_HOOKS, OBSERVER_HOOKS, PROJECT_NAME, PROVIDER_HOOKS
from ..timeutil import parse_iso, to_iso
from .fixtures import RecordingRunner, SocketGuard, make_service

__all__ = ["ExtensionConformance", "ProviderConformance", "sample_reports"]

BUILTIN = "builtin"


class _Outcome:
    """What a call made on another thread returned or raised."""

    def __init__(self) -> None:
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self.done = threading.Event()


def _in_thread(fn: Callable[[], Any], name: str) -> tuple:
    outcome = _Outcome()

    def run() -> None:
        try:
            outcome.result = fn()
        except BaseException as exc:  # handed to the test thread
            outcome.error = exc
        finally:
            outcome.done.set()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread, outcome


class ProviderConformance:
    """Contract tests for one provider; subclass it as ``Test<Something>``.

    :cvar provider_name: the provider's name (``cron.provider``); ``builtin`` checks
        the built-in provider.
    :cvar provider_module: import path of the plugin module, to select it without
        discovery (a provider under development, not installed).
    :cvar provider_plugin: the plugin object itself (instead of ``provider_module``).
    :cvar provider_config: merged over the defaults; must make the provider available.
    :cvar stop_timeout: seconds a blocking ``start`` may take to return once stopped.
    """

    provider_name: ClassVar[str] = ""
    provider_module: ClassVar[Optional[str]] = None
    provider_plugin: ClassVar[Any] = None
    provider_config: ClassVar[Mapping[str, Any]] = {}
    stop_timeout: ClassVar[float] = 15.0

    # -- what a subclass may override ------------------------------------------------

    def prepare_home(self, home: Path) -> None:
        """Write what the provider needs in ``home`` before it is selected."""

    def prepare_service(self, service: Any) -> None:
        """Adjust a freshly built service (e.g. inject a fake remote transport)."""

    def observe(self, service: Any) -> Any:
        """The provider's state outside ``jobs.json`` (e.g. what a remote service holds
        armed), compared before and after a second ``reconcile``. None: nothing to see."""
        return None

    # -- plumbing ----------------------------------------------------------------------

    def config(self) -> Dict[str, Any]:
        """The configuration the provider is tested with."""
        merged = deep_merge(DEFAULTS, copy.deepcopy(dict(self.provider_config)))
        merged["cron"]["provider"] = self.provider_name
        return merged

    def plugin_object(self) -> Any:
        """The plugin given by ``provider_plugin`` or ``provider_module``; None means
        "discover it by name"."""
        if self.provider_plugin is not None:
            return self.provider_plugin
        if self.provider_module:
            return importlib.import_module(self.provider_module)
        return None

    @pytest.fixture
    def conformance_runner(self) -> RecordingRunner:
        return RecordingRunner()

    @pytest.fixture
    def build_service(
        self, hermes_home: Path, cron_clock: Any, conformance_runner: RecordingRunner
    ) -> Callable[[], Any]:
        """A factory of services on the same home with the provider active (call it
        twice to get two "processes")."""
        assert self.provider_name, f"{type(self).__name__} must set provider_name"
        self.prepare_home(hermes_home)

        def build() -> Any:
            with SocketGuard() as guard:
                service = make_service(
                    hermes_home,
                    provider=self.provider_name,
                    plugin=self.plugin_object(),
                    config=self.config(),
                    plugins=[conformance_runner],
                    clock=cron_clock,
                )
            assert not guard.attempts, f"selecting the provider used the network: {guard.attempts}"
            assert service.provider_name == (self.provider_name or BUILTIN), (
                f"provider {self.provider_name!r} was not selected: "
                f"{service.scheduler.fallback_reason}"
            )
            self.prepare_service(service)
            return service

        return build

    @pytest.fixture
    def service(self, build_service: Callable[[], Any]) -> Any:
        return build_service()

    def _plugin(self, service: Any) -> Any:
        return service.scheduler.plugin or service.scheduler.builtin

    def _impls(self, service: Any, hook: str) -> List[Any]:
        plugin = self._plugin(service)
        caller = getattr(service.pm.hook, hook)
        return [impl for impl in caller.get_hookimpls() if impl.plugin is plugin]

    def _call(self, service: Any, hook: str, **kwargs: Any) -> Any:
        """Call a provider hook the way the service does (subset calling), but let
        exceptions through: ``ActiveScheduler`` would contain them."""
        return service.scheduler.hook_caller(hook)(**kwargs)

    def _hourly_job(self, service: Any, **kwargs: Any) -> Dict[str, Any]:
        return service.add_job("every 1h", command=["true"], name="conformance hourly", **kwargs)

    def _due(self, service: Any, clock: Any, job: Dict[str, Any]) -> str:
        """Move the clock to the job's due time; return that time as ISO 8601."""
        due = parse_iso(service.store.get(job["id"])["next_run_at"])
        clock.set(due)
        return to_iso(due)

    def _populate(self, service: Any) -> Dict[str, str]:
        """A mix of jobs: recurring, cron, paused, one-shot, and one removed."""
        hourly = self._hourly_job(service)
        daily = service.add_job("30 9 * * *", prompt="conformance daily", tz="Europe/Paris")
        paused = service.add_job("every 10m", command=["true"], name="conformance paused")
        service.pause_job(paused["id"])
        once = service.add_job("+2h", command=["true"], name="conformance once")
        gone = service.add_job("every 5m", command=["true"], name="conformance removed")
        service.remove_job(gone["id"])
        return {
            "hourly": hourly["id"],
            "daily": daily["id"],
            "paused": paused["id"],
            "once": once["id"],
            "removed": gone["id"],
        }

    # -- the rules ---------------------------------------------------------------------

    @pytest.fixture
    def plugin_under_test(self, hermes_home: Path) -> Any:
        """The provider plugin object, found without registering it anywhere."""
        plugin = self.plugin_object()
        if plugin is not None:
            return plugin
        if self.provider_name == BUILTIN:
            from ..builtin_provider import BuiltinProvider

            return BuiltinProvider()
        from ..discovery import find_provider

        self.prepare_home(hermes_home)
        record = find_provider(self.provider_name, hermes_home)
        assert record is not None, f"no provider named {self.provider_name!r} was discovered"
        assert record.error is None, f"provider {self.provider_name!r}: {record.error}"
        return record.module

    def test_plugin_follows_the_provider_rules(self, plugin_under_test: Any) -> None:
        plugin = plugin_under_test
        pm = pluggy.PluginManager(PROJECT_NAME)
        found: Dict[str, Dict[str, Any]] = {}
        for attr in dir(plugin):
            try:
                opts = pm.parse_hookimpl_opts(plugin, attr)
            except Exception:
                continue
            if opts is not None:
                found[attr] = dict(opts)
        assert not set(found) & set(EXECUTION_HOOKS), "a provider never implements run_job"
        unknown = set(found) - set(PROVIDER_HOOKS) - set(OBSERVER_HOOKS)
        assert not unknown, f"not provider hooks of hermes_cron: {sorted(unknown)}"
        assert not [a for a, o in found.items() if o.get("specname")], "specname is not allowed"
        if self.provider_name == BUILTIN:
            assert set(found) == set(PROVIDER_HOOKS), "the built-in answers every provider hook"
            assert all(o.get("trylast") for o in found.values()), "the built-in is trylast"
            return
        assert found, f"implements no provider hook (expected some of {PROVIDER_HOOKS})"
        trylast = sorted(a for a, o in found.items() if o.get("trylast"))
        assert not trylast, f"trylast is reserved for the built-in default: {trylast}"
        for attr in found:
            params = inspect.signature(getattr(plugin, attr)).parameters.values()
            assert all(
                p.default is inspect.Parameter.empty
                and p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
                for p in params
            ), f"{attr}: hook parameters must be plain (pluggy never passes defaults)"

    # -- is_available --------------------------------------------------------------------

    def test_is_available_is_offline_and_answers_a_bool(
        self, service: Any, block_sockets: SocketGuard
    ) -> None:
        impls = self._impls(service, "is_available")
        assert len(impls) <= 1
        for config in (self.config(), deep_merge(DEFAULTS, {"cron": {}})):
            if impls:
                answer = impls[0].function(
                    **{name: config for name in impls[0].argnames if name == "config"}
                )
            else:
                answer = self._call(service, "is_available", config=config)
            assert isinstance(answer, bool), f"is_available returned {answer!r}, not a bool"
        assert self._call(service, "is_available", config=self.config()) is True, (
            "provider_config must make the provider available"
        )
        assert block_sockets.attempts == [], (
            f"is_available touched the network: {block_sockets.attempts}"
        )

    # -- start ---------------------------------------------------------------------------

    def _start(self, service: Any, stop: threading.Event) -> tuple:
        return _in_thread(
            lambda: self._call(service, "start", ctx=service.ctx, stop_event=stop),
            f"conformance-start-{self.provider_name}",
        )

    def test_start_returns_promptly_when_already_stopped(self, service: Any) -> None:
        stop = threading.Event()
        stop.set()
        thread, outcome = self._start(service, stop)
        assert outcome.done.wait(self.stop_timeout), (
            f"start did not return within {self.stop_timeout:g} s of stop_event being set"
        )
        if outcome.error is not None:
            raise outcome.error
        assert outcome.result is not None, "start must return a non-None summary"

    def test_start_honours_stop_event(self, service: Any) -> None:
        self._populate(service)
        stop = threading.Event()
        thread, outcome = self._start(service, stop)
        try:
            # An external provider returns by itself; a loop is still running now.
            outcome.done.wait(0.5)
        finally:
            stop.set()
        assert outcome.done.wait(self.stop_timeout), (
            f"start kept running {self.stop_timeout:g} s after stop_event was set"
        )
        thread.join(self.stop_timeout)
        if outcome.error is not None:
            raise outcome.error
        assert outcome.result is not None, "start must return a non-None summary"

    # -- non-None answers ------------------------------------------------------------------

    def test_handled_calls_return_non_none(self, service: Any) -> None:
        ids = self._populate(service)
        stop = threading.Event()
        stop.set()
        kwargs = {
            "config": self.config(),
            "ctx": service.ctx,
            "stop_event": stop,
            "job_ids": [ids["hourly"]],
            "job_id": "conformance-no-such-job",
            "fire_at": to_iso(service.clock.now()),
        }
        checked = []
        for hook in PROVIDER_HOOKS:
            for impl in self._impls(service, hook):
                if getattr(impl, "wrapper", False) or getattr(impl, "hookwrapper", False):
                    continue  # a wrapper returns what the wrapped call returned
                result = impl.function(**{name: kwargs[name] for name in impl.argnames})
                assert result is not None, (
                    f"{hook} returned None: the built-in default would run as well"
                )
                checked.append(hook)
        if self.provider_name == BUILTIN:
            assert sorted(checked) == sorted(PROVIDER_HOOKS)

    # -- reconcile / on_jobs_changed ---------------------------------------------------------

    def test_reconcile_is_idempotent(self, service: Any) -> None:
        self._populate(service)
        first = self._call(service, "reconcile", ctx=service.ctx)
        assert first is not None
        jobs = service.paths.jobs.read_bytes()
        rows = service.ledger.read()
        seen = self.observe(service)
        second = self._call(service, "reconcile", ctx=service.ctx)
        assert second is not None
        assert service.paths.jobs.read_bytes() == jobs, "a second reconcile changed jobs.json"
        assert service.ledger.read() == rows, "a second reconcile wrote to the ledger"
        assert self.observe(service) == seen, "a second reconcile changed the provider's state"

    def test_on_jobs_changed_tolerates_removed_and_unknown_ids(self, service: Any) -> None:
        ids = self._populate(service)
        for job_ids in (
            [ids["removed"]],
            ["conformance-never-existed"],
            [ids["hourly"], ids["removed"], "conformance-never-existed", ids["paused"]],
            [],
        ):
            result = self._call(service, "on_jobs_changed", ctx=service.ctx, job_ids=job_ids)
            assert result is not None

    # -- fire_due and the shared claim -----------------------------------------------------

    def test_fire_for_a_wrong_time_runs_nothing(
        self, service: Any, cron_clock: Any, conformance_runner: RecordingRunner
    ) -> None:
        job = self._hourly_job(service)
        due = self._due(service, cron_clock, job)
        for wrong in (
            parse_iso(due) + timedelta(minutes=1),
            parse_iso(due) - timedelta(hours=1),
            parse_iso(due) + timedelta(hours=1),
        ):
            result = service.fire_due(job["id"], to_iso(wrong))
            assert result is not None and not result.ran, f"a fire for {wrong} ran"
        assert conformance_runner.ran() == 0
        assert service.ledger.read() == []
        assert service.store.get(job["id"])["next_run_at"] == due

    def test_duplicate_fire_runs_once(
        self, service: Any, cron_clock: Any, conformance_runner: RecordingRunner
    ) -> None:
        job = self._hourly_job(service)
        due = self._due(service, cron_clock, job)
        first = service.fire_due(job["id"], due)
        second = service.fire_due(job["id"], due)
        assert first.ran and first.status == "ok", first
        assert not second.ran, "the same fire ran twice"
        assert conformance_runner.runs == [(job["id"], due)]

    def test_racing_fires_from_two_services_run_once(
        self,
        build_service: Callable[[], Any],
        cron_clock: Any,
        conformance_runner: RecordingRunner,
    ) -> None:
        one, two = build_service(), build_service()
        job = self._hourly_job(one)
        due = self._due(one, cron_clock, job)
        start = threading.Barrier(4)

        def fire(service: Any) -> Any:
            start.wait(timeout=30)
            return service.fire_due(job["id"], due)

        racers = [
            _in_thread(functools.partial(fire, s), "conformance-race") for s in (one, two) * 2
        ]
        for _thread, outcome in racers:
            assert outcome.done.wait(60), "a fire did not finish within 60 s"
            if outcome.error is not None:
                raise outcome.error
        won = [o.result for _, o in racers if o.result is not None and o.result.ran]
        assert len(won) == 1, f"{len(won)} of 4 racing fires ran"
        assert conformance_runner.ran(job["id"]) == 1

    def test_paused_or_removed_job_does_not_fire(
        self, service: Any, cron_clock: Any, conformance_runner: RecordingRunner
    ) -> None:
        paused = self._hourly_job(service)
        removed = self._hourly_job(service)
        due = self._due(service, cron_clock, paused)
        service.pause_job(paused["id"])
        service.remove_job(removed["id"])
        assert not service.fire_due(paused["id"], due).ran
        assert not service.fire_due(removed["id"], due).ran
        assert conformance_runner.ran() == 0

    def test_won_fire_is_run_and_recorded_by_the_shared_body(
        self, service: Any, cron_clock: Any, conformance_runner: RecordingRunner
    ) -> None:
        job = self._hourly_job(service)
        due = self._due(service, cron_clock, job)
        result = service.fire_due(job["id"], due)
        assert result.ran and result.status == "ok"
        after = service.store.get(job["id"])
        assert after["fire_claim"] is None, "the claim was not released"
        assert after["last_status"] == "ok"
        assert parse_iso(after["next_run_at"]) == parse_iso(due) + timedelta(hours=1)
        rows = service.ledger.read(job_id=job["id"])
        assert [(r["fire_at"], r["status"], r["provider"]) for r in rows] == [
            (due, "ok", service.provider_name)
        ]
        assert rows[0]["output"] and Path(rows[0]["output"]).is_file()


# ---------------------------------------------------------------------------------------
# Extensions


def sample_reports(job: Mapping[str, Any], now: str) -> Dict[str, Any]:
    """One ``RunReport`` of every kind a ``run_finished`` observer may get, by kind, for
    ``job`` at the ISO time ``now``: the rows are shaped as the runner writes them."""
    from ..observers import RunReport

    base = {
        "job_id": job["id"],
        "fire_at": now,
        "provider": "builtin",
        "started_at": now,
        "finished_at": now,
        "output": None,
        "error": None,
        "owner": "conformance:1:abcd",
    }
    output = f"/tmp/hermes-cron-conformance/{job['id']}/run.md"

    def report(ran: bool, text: str = "", **fields: Any) -> Any:
        return RunReport(row={**base, **fields}, output=text, ran=ran)

    return {
        "ok": report(True, "all good\n", status="ok", output=output, exit_code=0),
        "error": report(
            True, "Traceback ...\n", status="error", output=output, error="exit 1", exit_code=1
        ),
        "timeout": report(True, "", status="timeout", output=output, error="timed out after 600 s"),
        "skipped": report(
            False, status="skipped", error="overlap: the previous run is still going"
        ),
        "missed": report(
            False, status="missed", error="missed: due 2h 30m ago (grace 1h)", note="resumes"
        ),
        "cancelled": report(True, "partial", status="cancelled", output=output, error="replaced"),
        "interrupted": report(
            False, status="error", error="interrupted: the run claimed by host:1:x never finished"
        ),
        "manual": report(True, "by hand\n", status="ok", output=output, manual=True),
        "retry": report(True, "again\n", status="ok", output=output, attempt=2),
        "empty_output": report(True, "", status="ok", output=None),
    }


class ExtensionConformance:
    """Contract tests for one extension plugin; subclass it as ``Test<Something>``.

    :cvar extension_name: the plugin's name (``plugin.yaml`` ``name`` or the entry
        point's name); without a module or plugin it is discovered by this name.
    :cvar extension_module: import path of the plugin module (not installed yet).
    :cvar extension_plugin: the plugin object itself.
    :cvar extension_config: merged over the defaults for the service it is tested in.
    """

    extension_name: ClassVar[str] = ""
    extension_module: ClassVar[Optional[str]] = None
    extension_plugin: ClassVar[Any] = None
    extension_config: ClassVar[Mapping[str, Any]] = {}

    def prepare_home(self, home: Path) -> None:
        """Write what the extension needs in ``home`` before the service is built."""

    def prepare_service(self, service: Any) -> None:
        """Adjust a freshly built service (e.g. point the extension at a fake remote)."""

    def plugin_object(self) -> Any:
        if self.extension_plugin is not None:
            return self.extension_plugin
        if self.extension_module:
            return importlib.import_module(self.extension_module)
        return None

    @pytest.fixture
    def extension_under_test(self, hermes_home: Path) -> Any:
        """The plugin object, found without registering it anywhere."""
        assert self.extension_name, f"{type(self).__name__} must set extension_name"
        plugin = self.plugin_object()
        if plugin is not None:
            return plugin
        from ..discovery import discover_plugins

        self.prepare_home(hermes_home)
        found = [
            r
            for r in discover_plugins(hermes_home)
            if r.name == self.extension_name and r.shadowed_by is None
        ]
        assert found, f"no plugin named {self.extension_name!r} was discovered"
        module = found[0].load()
        assert found[0].error is None, f"{self.extension_name!r}: {found[0].error}"
        return module

    @pytest.fixture
    def extension_service(
        self, hermes_home: Path, cron_clock: Any, extension_under_test: Any
    ) -> Any:
        """A service with the built-in provider and the extension registered (discovered
        like users' extensions, or registered from ``plugin_object``)."""
        from ..plugin_manager import register_extension

        self.prepare_home(hermes_home)
        service = make_service(
            hermes_home,
            config=dict(self.extension_config),
            plugins=[RecordingRunner()],
            clock=cron_clock,
        )
        if service.pm.get_plugin(self.extension_name) is None:
            register_extension(service.pm, extension_under_test, self.extension_name)
        self.prepare_service(service)
        return service

    def _hooks(self, plugin: Any) -> Dict[str, Dict[str, Any]]:
        pm = pluggy.PluginManager(PROJECT_NAME)
        found: Dict[str, Dict[str, Any]] = {}
        for attr in dir(plugin):
            try:
                opts = pm.parse_hookimpl_opts(plugin, attr)
            except Exception:
                continue
            if opts is not None:
                found[attr] = dict(opts)
        return found

    def test_implements_no_provider_hook(self, extension_under_test: Any) -> None:
        found = self._hooks(extension_under_test)
        provider = sorted(set(found) & set(PROVIDER_HOOKS))
        assert not provider, (
            f"implements provider hooks {provider}: that makes it a provider, registered "
            "only when cron.provider selects it"
        )
        allowed = set(EXECUTION_HOOKS) | set(OBSERVER_HOOKS)
        assert found, f"implements no hook (an extension implements {sorted(allowed)})"
        unknown = sorted(set(found) - allowed)
        assert not unknown, f"not hooks of hermes_cron: {unknown}"
        assert not [a for a, o in found.items() if o.get("specname")], "name functions after hooks"
        wrapping = [a for a, o in found.items() if o.get("wrapper") or o.get("hookwrapper")]
        assert "run_finished" not in wrapping, "run_finished cannot be a wrapper"
        for attr in found:
            params = inspect.signature(getattr(extension_under_test, attr)).parameters.values()
            assert all(
                p.default is inspect.Parameter.empty
                and p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
                for p in params
            ), f"{attr}: hook parameters must be plain (pluggy never passes defaults)"

    def test_registers_as_an_extension(self, extension_service: Any) -> None:
        plugin = extension_service.pm.get_plugin(self.extension_name)
        assert plugin is not None, f"{self.extension_name!r} is not registered"
        assert extension_service.provider_name == BUILTIN

    def _observers(self, service: Any) -> List[Any]:
        plugin = service.pm.get_plugin(self.extension_name)
        return [i for i in service.pm.hook.run_finished.get_hookimpls() if i.plugin is plugin]

    @pytest.mark.parametrize("kind", sorted(sample_reports({"id": "x"}, "now")))
    def test_run_finished_tolerates_every_kind_of_result(
        self, extension_service: Any, kind: str
    ) -> None:
        impls = self._observers(extension_service)
        if not impls:
            pytest.skip("implements no run_finished")
        for job in (
            extension_service.add_job("every 1h", command=["true"], name="conformance command"),
            extension_service.add_job("every 1h", prompt="conformance prompt"),
        ):
            report = sample_reports(job, to_iso(extension_service.clock.now()))[kind]
            kwargs = {"ctx": extension_service.ctx, "job": copy.deepcopy(job), "result": report}
            for impl in impls:
                try:
                    impl.function(**{name: kwargs[name] for name in impl.argnames})
                except Exception as exc:
                    raise AssertionError(
                        f"run_finished raised {type(exc).__name__} for a {kind!r} result of a "
                        f"{'prompt' if job.get('prompt') else 'command'} job: {exc}"
                    ) from exc

    def test_a_real_run_reaches_it_without_failure(self, extension_service: Any) -> None:
        if not self._observers(extension_service):
            pytest.skip("implements no run_finished")
        job = extension_service.add_job("every 1h", command=["true"], name="conformance run")
        result = extension_service.run_now(job["id"])
        assert result.ran, result
        assert extension_service.ctx.observers.flush(30), "run_finished did not return in 30 s"
        counts = extension_service.ctx.observers.counts()
        assert counts["delivered"] >= 1
        assert counts["failures"] == {}, f"run_finished raised: {counts['failures']}"
