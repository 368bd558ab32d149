"""The plugin manager factory, provider validation and hook tracing."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from hermes_cron import hookimpl
from hermes_cron.builtin_provider import BuiltinProvider
from hermes_cron.errors import PluginError
from hermes_cron.executor import DefaultExecutor
from hermes_cron.plugin_manager import (
    BUILTIN_NAME,
    EXECUTOR_NAME,
    get_plugin_manager,
    register_plugin,
    register_provider,
)
from hermes_cron.runner import RunOutcome


class GoodProvider:
    @hookimpl
    def is_available(self, config: Any) -> bool:
        return True

    @hookimpl
    def reconcile(self, ctx: Any) -> Any:
        return {"good": True}


class TrylastProvider:
    @hookimpl(trylast=True)
    def reconcile(self, ctx: Any) -> Any:
        return "mine"


class SpecnameProvider:
    @hookimpl(specname="reconcile")
    def converge(self, ctx: Any) -> Any:
        return "mine"


class RunJobProvider:
    @hookimpl
    def reconcile(self, ctx: Any) -> Any:
        return "x"

    @hookimpl
    def run_job(self, ctx: Any, job: Any) -> Any:
        return None


class TypoProvider:
    @hookimpl
    def reconcil(self, ctx: Any) -> Any:
        return "x"


class NoHooks:
    pass


class BadArgs:
    @hookimpl
    def reconcile(self, ctx: Any, surprise: Any) -> Any:
        return "x"


def test_each_call_builds_a_new_manager_with_the_defaults() -> None:
    a, b = get_plugin_manager(), get_plugin_manager()
    assert a is not b
    for pm in (a, b):
        assert isinstance(pm.get_plugin(BUILTIN_NAME), BuiltinProvider)
        assert isinstance(pm.get_plugin(EXECUTOR_NAME), DefaultExecutor)
    assert a.get_plugin(BUILTIN_NAME) is not b.get_plugin(BUILTIN_NAME)


def test_defaults_are_registered_after_given_plugins() -> None:
    class Agent:
        @hookimpl(trylast=True)
        def run_job(self, ctx: Any, job: Any) -> Any:
            return RunOutcome(status="ok", output="agent")

    pm = get_plugin_manager(plugins=[Agent()])
    names = [pm.get_name(p) for p in pm.get_plugins()]
    assert BUILTIN_NAME in names and EXECUTOR_NAME in names
    # Among trylast run_job implementations the agent's answers before the default executor.
    result = pm.hook.run_job(ctx=None, job={"prompt": "hi", "command": None})
    assert result.output == "agent"


@pytest.mark.parametrize(
    "plugin, fragment",
    [
        (TrylastProvider(), "trylast"),
        (SpecnameProvider(), "specname"),
        (RunJobProvider(), "run_job"),
        (TypoProvider(), "reconcil"),
        (NoHooks(), "no provider hook"),
    ],
)
def test_provider_refused_and_not_left_registered(plugin: Any, fragment: str) -> None:
    pm = get_plugin_manager()
    before = set(pm.get_plugins())
    with pytest.raises(PluginError) as info:
        register_provider(pm, plugin, "bad")
    assert fragment in str(info.value)
    assert "'bad'" in str(info.value)
    assert "\n" not in str(info.value)
    assert set(pm.get_plugins()) == before
    assert not pm.is_registered(plugin)


def test_provider_with_wrong_arguments_is_refused_and_unregistered() -> None:
    pm = get_plugin_manager()
    plugin = BadArgs()
    with pytest.raises(PluginError, match="surprise"):
        register_provider(pm, plugin, "badargs")
    assert not pm.is_registered(plugin)
    assert pm.get_plugin("badargs") is None


def test_reserved_and_duplicate_names() -> None:
    pm = get_plugin_manager()
    with pytest.raises(PluginError, match="reserved"):
        register_provider(pm, GoodProvider(), BUILTIN_NAME)
    good = GoodProvider()
    register_provider(pm, good, "good")
    register_provider(pm, good, "good")  # the same object again: a no-op
    with pytest.raises(PluginError, match="already registered"):
        register_provider(pm, GoodProvider(), "good")
    assert pm.get_plugin("good") is good


def test_misspelled_hook_in_an_agent_plugin_fails_loudly() -> None:
    class Agent:
        @hookimpl
        def run_jobs(self, ctx: Any, job: Any) -> Any:
            return None

    with pytest.raises(PluginError, match="run_jobs"):
        get_plugin_manager(plugins=[Agent()])


def test_register_plugin_keeps_the_defaults_last() -> None:
    pm = get_plugin_manager()

    class LateAgent:
        @hookimpl(trylast=True)
        def run_job(self, ctx: Any, job: Any) -> Any:
            if job.get("prompt") is None:
                return None
            return RunOutcome(status="ok", output="late agent")

    register_plugin(pm, LateAgent())
    result = pm.hook.run_job(ctx=None, job={"prompt": "hi", "command": None})
    assert result.output == "late agent"
    assert pm.get_plugin(BUILTIN_NAME) is not None and pm.get_plugin(EXECUTOR_NAME) is not None


def test_tracing_logs_every_hook_call(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("HERMES_CRON_TRACE_PLUGINS", "1")
    pm = get_plugin_manager()
    with caplog.at_level(logging.DEBUG, logger="hermes_cron.plugins"):
        assert pm.hook.is_available(config={}) is True
    messages = [r.getMessage() for r in caplog.records if r.name == "hermes_cron.plugins"]
    assert any("hook is_available(" in m and "builtin" in m for m in messages)
    assert any("is_available returned True" in m for m in messages)


def test_no_tracing_by_default(caplog: pytest.LogCaptureFixture) -> None:
    pm = get_plugin_manager()
    with caplog.at_level(logging.DEBUG, logger="hermes_cron.plugins"):
        pm.hook.is_available(config={})
    assert not [r for r in caplog.records if r.name == "hermes_cron.plugins"]
