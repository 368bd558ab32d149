"""resolve_cron_scheduler: every fallback path, subset calling, and contained provider failures."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Dict

import pytest
from helpers.servicekit import write_user_plugin

from hermes_cron import hookimpl
from hermes_cron.clock import FakeClock
from hermes_cron.config import DEFAULTS, deep_merge
from hermes_cron.plugin_manager import get_plugin_manager, register_provider
from hermes_cron.resolver import resolve_cron_scheduler
from hermes_cron.service import CronService
from hermes_cron.status_file import read_status

AVAILABLE = """
from hermes_cron import hookimpl

@hookimpl
def is_available(config):
    return True
"""


def cfg(provider: Any, **cron: Any) -> Dict[str, Any]:
    return deep_merge(DEFAULTS, {"cron": {"provider": provider, **cron}})


@pytest.mark.parametrize("value", ["", "builtin", "  ", None])
def test_empty_or_builtin_is_the_builtin_without_a_reason(home: Path, value: Any) -> None:
    s = resolve_cron_scheduler(cfg(value), home=home)
    assert s.name == "builtin" and s.fallback_reason is None and s.plugin is None


def test_config_is_read_from_home_when_not_given(home: Path) -> None:
    write_user_plugin(home, "mine", AVAILABLE)
    (home / "config.yaml").write_text("cron:\n  provider: mine\n", encoding="utf-8")
    s = resolve_cron_scheduler(home=home)
    assert s.name == "mine" and s.source == "user" and s.requested == "mine"


def test_unknown_provider_falls_back_with_the_known_names(
    home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="hermes_cron.resolver"):
        s = resolve_cron_scheduler(cfg("chronoss"), home=home)
    assert s.name == "builtin" and s.requested == "chronoss"
    assert "unknown provider 'chronoss'" in s.fallback_reason
    assert "chronos" in s.fallback_reason  # the hint lists what exists
    assert any("using the built-in provider" in r.getMessage() for r in caplog.records)


def test_non_text_provider_value_falls_back(home: Path) -> None:
    s = resolve_cron_scheduler(cfg(42), home=home)
    assert s.name == "builtin" and "must be a provider name" in s.fallback_reason


def test_import_error_falls_back(home: Path) -> None:
    write_user_plugin(home, "broken", "import hc_definitely_missing_module\n")
    s = resolve_cron_scheduler(cfg("broken"), home=home)
    assert s.name == "builtin"
    assert "failed to load" in s.fallback_reason
    assert "hc_definitely_missing_module" in s.fallback_reason


def test_validation_error_falls_back_and_leaves_nothing_registered(home: Path) -> None:
    write_user_plugin(
        home,
        "sneaky",
        """
        from hermes_cron import hookimpl

        @hookimpl(trylast=True)
        def start(ctx, stop_event):
            return "sneaky"
        """,
    )
    pm = get_plugin_manager()
    before = set(pm.get_plugins())
    s = resolve_cron_scheduler(cfg("sneaky"), home=home, pm=pm)
    assert s.name == "builtin" and "trylast" in s.fallback_reason
    assert set(pm.get_plugins()) == before


def test_unavailable_falls_back(home: Path) -> None:
    write_user_plugin(
        home,
        "off",
        """
        from hermes_cron import hookimpl

        @hookimpl
        def is_available(config):
            return False
        """,
    )
    pm = get_plugin_manager()
    s = resolve_cron_scheduler(cfg("off"), home=home, pm=pm)
    assert s.name == "builtin" and s.requested_available is False
    assert "'off' is not available" in s.fallback_reason
    assert pm.get_plugin("off") is None  # dropped, so it never sees a provider hook


def test_is_available_raising_falls_back(home: Path) -> None:
    write_user_plugin(
        home,
        "raiser",
        """
        from hermes_cron import hookimpl

        @hookimpl
        def is_available(config):
            raise KeyError("portal_url")
        """,
    )
    s = resolve_cron_scheduler(cfg("raiser"), home=home)
    assert s.name == "builtin"
    assert "is_available raised KeyError" in s.fallback_reason and "portal_url" in s.fallback_reason


def test_hanging_is_available_is_bounded(home: Path) -> None:
    write_user_plugin(
        home,
        "hangs",
        """
        import threading
        from hermes_cron import hookimpl

        RELEASE = threading.Event()

        @hookimpl
        def is_available(config):
            RELEASE.wait(30)
            return True
        """,
    )
    s = resolve_cron_scheduler(cfg("hangs"), home=home, timeout=0.2)
    assert s.name == "builtin"
    assert "did not answer within 0.2 s" in s.fallback_reason
    from hermes_cron.discovery import find_provider

    find_provider("hangs", home).module.RELEASE.set()


def test_is_available_runs_with_sockets_blocked(home: Path, no_sockets: None) -> None:
    write_user_plugin(home, "offline", AVAILABLE)
    write_user_plugin(
        home,
        "phones-home",
        """
        import socket
        from hermes_cron import hookimpl

        @hookimpl
        def is_available(config):
            socket.create_connection(("portal.example.com", 443), timeout=1)
            return True
        """,
    )
    assert resolve_cron_scheduler(cfg("offline"), home=home).name == "offline"
    s = resolve_cron_scheduler(cfg("phones-home"), home=home)
    assert s.name == "builtin" and "sockets are blocked" in s.fallback_reason
    # Chronos decides from config and auth.json alone: no socket needed to say "no".
    chronos = resolve_cron_scheduler(cfg("chronos"), home=home)
    assert chronos.name == "builtin" and "not available" in chronos.fallback_reason


class Recorder:
    """A provider that records calls and answers only ``reconcile``."""

    def __init__(self) -> None:
        self.calls: list = []

    @hookimpl
    def reconcile(self, ctx: Any) -> Any:
        self.calls.append("reconcile")
        return {"by": "recorder"}

    @hookimpl
    def on_jobs_changed(self, ctx: Any, job_ids: Any) -> Any:
        self.calls.append(("changed", list(job_ids)))
        return None  # let the built-in wake its loop too


def test_only_the_selected_provider_and_the_builtin_see_provider_hooks(
    home: Path, clock: FakeClock
) -> None:
    write_user_plugin(home, "mine", AVAILABLE)
    (home / "config.yaml").write_text("cron:\n  provider: mine\n", encoding="utf-8")
    service = CronService.from_home(home, clock=clock)
    other = Recorder()
    register_provider(service.pm, other, "other")  # registered, but not the selected one
    assert service.provider_name == "mine"
    # "mine" has no reconcile: the built-in's default answers, not "other".
    assert service.reconcile()["provider"] == "builtin"
    assert service.notify(["x"]) is True
    assert other.calls == []
    # Selected, the recorder is asked first; its None lets the built-in wake its loop.
    service.scheduler.plugin = other
    assert service.reconcile() == {"by": "recorder"}
    assert service.notify(["y"]) is True
    assert other.calls == ["reconcile", ("changed", ["y"])]


def test_provider_without_fire_due_gets_the_builtin_default(home: Path, clock: FakeClock) -> None:
    write_user_plugin(home, "mine", AVAILABLE)
    (home / "config.yaml").write_text("cron:\n  provider: mine\n", encoding="utf-8")
    service = CronService.from_home(home, clock=clock)
    assert service.provider_name == "mine"
    job = service.add_job("every 10s", command=["true"])
    clock.advance(10)
    result = service.fire_due(job["id"], job["next_run_at"])
    assert result.claim == "won" and result.status == "ok"
    assert service.ledger.read(job["id"])[0]["provider"] == "mine"


def test_wrapper_fire_due_runs_after_the_default_and_sees_its_result(
    home: Path, clock: FakeClock
) -> None:
    write_user_plugin(
        home,
        "wraps",
        """
        from hermes_cron import hookimpl

        SEEN = []

        @hookimpl(wrapper=True)
        def fire_due(ctx, job_id, fire_at):
            job = ctx.store.get(job_id)
            SEEN.append(("before", job["fire_claim"]))
            result = yield
            after = ctx.store.get(job_id)["last_status"]
            SEEN.append(("after", result.claim, result.status, after))
            return result
        """,
    )
    (home / "config.yaml").write_text("cron:\n  provider: wraps\n", encoding="utf-8")
    service = CronService.from_home(home, clock=clock)
    job = service.add_job("every 5s", command=["true"])
    clock.advance(5)
    result = service.fire_due(job["id"], job["next_run_at"])
    module = service.scheduler.plugin
    assert module.SEEN == [("before", None), ("after", "won", "ok", "ok")]
    assert result.status == "ok"


def test_start_returning_a_value_keeps_the_builtin_loop_off(home: Path) -> None:
    write_user_plugin(
        home,
        "remote",
        """
        from hermes_cron import hookimpl

        @hookimpl
        def start(ctx, stop_event):
            return {"armed": 3}
        """,
    )
    (home / "config.yaml").write_text("cron:\n  provider: remote\n", encoding="utf-8")
    service = CronService.from_home(home)
    stop = threading.Event()  # never set: a built-in loop would block forever
    done: list = []
    thread = threading.Thread(target=lambda: done.append(service.start(stop)), daemon=True)
    thread.start()
    thread.join(20)
    assert done == [{"armed": 3}]
    assert not (home / "cron" / "status.json").exists()  # no built-in heartbeat


def test_start_raising_falls_back_to_the_builtin_loop(home: Path) -> None:
    write_user_plugin(
        home,
        "crashy",
        """
        from hermes_cron import hookimpl

        @hookimpl
        def start(ctx, stop_event):
            raise ConnectionError("portal down")
        """,
    )
    (home / "config.yaml").write_text("cron:\n  provider: crashy\n", encoding="utf-8")
    service = CronService.from_home(home)
    assert service.provider_name == "crashy"
    handle = service.start_in_thread()
    try:
        from helpers.servicekit import wait_for

        wait_for(lambda: read_status(service.paths).get("heartbeat_at"))
        assert service.provider_name == "builtin"
        assert service.ctx.provider_name == "builtin"
        assert "start raised ConnectionError: portal down" in service.scheduler.fallback_reason
        assert service.pm.get_plugin("crashy") is None
    finally:
        result = handle.stop(20)
    assert result["provider"] == "builtin" and result["stopped"] is True


def test_hook_failures_after_a_mutation_are_recorded_not_raised(
    home: Path, clock: FakeClock
) -> None:
    write_user_plugin(
        home,
        "flaky",
        """
        from hermes_cron import hookimpl

        @hookimpl
        def on_jobs_changed(ctx, job_ids):
            raise RuntimeError("cannot reach the trigger service")

        @hookimpl
        def reconcile(ctx):
            raise RuntimeError("reconcile broke")
        """,
    )
    (home / "config.yaml").write_text("cron:\n  provider: flaky\n", encoding="utf-8")
    service = CronService.from_home(home, clock=clock)
    job = service.add_job("every 1h", command=["true"])  # the store write stands
    assert service.store.get(job["id"])["state"] == "scheduled"
    assert "cannot reach the trigger service" in read_status(service.paths)["last_error"]
    assert service.reconcile() is None
    status = service.status()
    assert "reconcile broke" in status["last_error"] and status["provider"] == "flaky"
    assert [e.hook for e in service.scheduler.errors] == ["on_jobs_changed", "reconcile"]


def test_fire_due_wrapper_failure_is_recorded_and_raised(home: Path, clock: FakeClock) -> None:
    write_user_plugin(
        home,
        "rearm-fails",
        """
        from hermes_cron import hookimpl

        @hookimpl(wrapper=True)
        def fire_due(ctx, job_id, fire_at):
            yield
            raise RuntimeError("re-arm failed")
        """,
    )
    (home / "config.yaml").write_text("cron:\n  provider: rearm-fails\n", encoding="utf-8")
    service = CronService.from_home(home, clock=clock)
    job = service.add_job("every 5s", command=["true"])
    clock.advance(5)
    with pytest.raises(RuntimeError, match="re-arm failed"):
        service.fire_due(job["id"], job["next_run_at"])
    assert service.ledger.read(job["id"])[0]["status"] == "ok"  # the run itself happened
    assert "re-arm failed" in read_status(service.paths)["last_error"]
