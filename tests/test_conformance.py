"""The provider conformance suite, run against the built-in provider and the bundled
Chronos provider (NAS mocked with an ``httpx.MockTransport``), and the suite's own
teeth: a provider that breaks a rule must fail it."""

from __future__ import annotations

import json
import threading
import types
from pathlib import Path
from typing import Any, Dict, List, Tuple

import httpx
import pytest

from hermes_cron import hookimpl
from hermes_cron.auth import NOUS, save_provider_auth_state
from hermes_cron.testing.conformance import ExtensionConformance, ProviderConformance

pytest_plugins = ["pytester"]

PORTAL = "https://nas.example.test"
TOKEN = "conformance-access-token"


class TestBuiltinConformance(ProviderConformance):
    provider_name = "builtin"


class FakeNAS:
    """NAS's agent-cron API in memory (SPEC section 7), checking the Bearer token and
    the request shapes."""

    def __init__(self) -> None:
        self.armed: Dict[str, Dict[str, str]] = {}
        self.calls: List[Tuple[str, Any]] = []
        self._lock = threading.Lock()

    def handle(self, request: httpx.Request) -> httpx.Response:
        assert request.headers.get("authorization") == f"Bearer {TOKEN}"
        path = request.url.path
        body = json.loads(request.content) if request.content else None
        with self._lock:
            self.calls.append((path, body))
            if path == "/api/agent-cron/provision" and request.method == "POST":
                assert set(body) == {"job_id", "fire_at", "agent_callback_url", "dedup_key"}
                assert body["dedup_key"] == f"{body['job_id']}:{body['fire_at']}"
                assert body["agent_callback_url"] == "https://agent.example.test"
                arm = {"fire_at": body["fire_at"], "schedule_id": f"s-{len(self.calls)}"}
                current = self.armed.get(body["job_id"])
                if current is None or current["fire_at"] != body["fire_at"]:
                    self.armed[body["job_id"]] = arm
                return httpx.Response(
                    200, json={"schedule_id": self.armed[body["job_id"]]["schedule_id"]}
                )
            if path == "/api/agent-cron/cancel" and request.method == "POST":
                self.armed.pop(body["job_id"], None)
                return httpx.Response(200, json={"ok": True})
            if path == "/api/agent-cron/list" and request.method == "GET":
                armed = [{"job_id": k, **v} for k, v in sorted(self.armed.items())]
                return httpx.Response(200, json={"armed": armed})
        return httpx.Response(404, json={"error": "not found"})

    def mutations(self) -> int:
        with self._lock:
            return sum(1 for path, _ in self.calls if not path.endswith("/list"))


class TestChronosConformance(ProviderConformance):
    provider_name = "chronos"
    provider_config = {
        "cron": {
            "chronos": {
                "portal_url": PORTAL,
                "callback_url": "https://agent.example.test",
                "expected_audience": "conformance-agent",
                "nas_jwks_url": f"{PORTAL}/.well-known/jwks.json",
                "retries": 0,
            }
        }
    }

    @pytest.fixture(autouse=True)
    def nas(self) -> FakeNAS:
        self.fake_nas = FakeNAS()
        return self.fake_nas

    def prepare_home(self, home: Path) -> None:
        save_provider_auth_state(
            NOUS,
            {
                "access_token": TOKEN,
                "refresh_token": "conformance-refresh",
                "expires_at": "2099-01-01T00:00:00+00:00",
            },
            home,
        )

    def prepare_service(self, service: Any) -> None:
        from hermes_cron_builtin_plugins.chronos import chronos_state

        chronos_state(service.ctx, transport=httpx.MockTransport(self.fake_nas.handle))

    def observe(self, service: Any) -> Any:
        return (json.dumps(self.fake_nas.armed, sort_keys=True), self.fake_nas.mutations())

    def armed_at(self, service: Any, job_id: str) -> Any:
        return self.fake_nas.armed.get(job_id, {}).get("fire_at")

    def test_nas_holds_one_arm_per_armable_job(self, service: Any) -> None:
        """Not part of the generic suite: a check that the fake NAS is really used."""
        ids = self._populate(service)
        self._call(service, "reconcile", ctx=service.ctx)
        assert set(self.fake_nas.armed) == {ids["hourly"], ids["daily"], ids["once"]}


# -- the suite has teeth ------------------------------------------------------------------

BROKEN_PROVIDERS = {
    "run_job": """
        from hermes_cron import hookimpl
        @hookimpl
        def is_available(config):
            return True
        @hookimpl
        def run_job(ctx, job):
            return None
    """,
    "returns_none": """
        from hermes_cron import hookimpl
        @hookimpl
        def is_available(config):
            return True
        @hookimpl
        def reconcile(ctx):
            return None
    """,
    "not_a_bool": """
        from hermes_cron import hookimpl
        @hookimpl
        def is_available(config):
            return "yes"
    """,
    "online": """
        import socket
        from hermes_cron import hookimpl
        @hookimpl
        def is_available(config):
            try:
                socket.create_connection(("127.0.0.1", 9), timeout=1).close()
            except OSError:
                pass
            return True
    """,
    "ignores_stop": """
        import threading
        from hermes_cron import hookimpl
        forever = threading.Event()
        @hookimpl
        def is_available(config):
            return True
        @hookimpl
        def start(ctx, stop_event):
            forever.wait(20)  # well past stop_timeout, however slow the machine
            return {"started": True}
    """,
    "runs_without_claim": """
        from hermes_cron import hookimpl
        from hermes_cron.runner import RunResult
        @hookimpl
        def is_available(config):
            return True
        @hookimpl
        def fire_due(ctx, job_id, fire_at):
            job = ctx.store.get(job_id)
            ctx.hook.run_job(ctx=ctx, job=job)
            return RunResult(job_id, fire_at, "won", "ok")
    """,
}

EXPECTED_FAILURES = {
    "run_job": "test_plugin_follows_the_provider_rules",
    "returns_none": "test_handled_calls_return_non_none",
    "not_a_bool": "test_is_available_is_offline_and_answers_a_bool",
    "online": "test_is_available_is_offline_and_answers_a_bool",
    "ignores_stop": "test_start_honours_stop_event",
    "runs_without_claim": "test_duplicate_fire_runs_once",
}


def test_the_suite_catches_broken_providers(pytester: pytest.Pytester) -> None:
    """Each broken provider fails the check written for its fault (one pytest run)."""
    import textwrap

    classes = []
    for kind, code in BROKEN_PROVIDERS.items():
        pytester.makepyfile(**{f"broken_{kind}": textwrap.dedent(code)})
        classes.append(
            f"class TestBroken_{kind}(ProviderConformance):\n"
            f"    provider_name = 'broken-{kind.replace('_', '-')}'\n"
            f"    provider_module = 'broken_{kind}'\n"
            f"    stop_timeout = 1.0\n"
        )
    pytester.makepyfile(
        test_broken="from hermes_cron.testing.conformance import ProviderConformance\n\n\n"
        + "\n\n".join(classes)
    )
    pytester.syspathinsert()
    # Only the check each fault is meant to trip (to keep the run short), plus one
    # check a broken provider still passes: a check must not fail for the wrong reason.
    expected = [f"test_broken.py::TestBroken_{k}::{t}" for k, t in EXPECTED_FAILURES.items()]
    unrelated = "test_broken.py::TestBroken_not_a_bool::test_duplicate_fire_runs_once"
    result = pytester.runpytest_subprocess(
        "-q", "-p", "no:cacheprovider", "-W", "error", "-rf", *expected, unrelated
    )
    report = result.stdout.str()
    for node in expected:
        assert f"FAILED {node}" in report, (node, report)
    result.assert_outcomes(failed=len(expected), passed=1)


def test_select_provider_refuses_a_provider_that_breaks_the_rules(
    hermes_home: Path, cron_clock: Any
) -> None:
    from hermes_cron.errors import PluginError
    from hermes_cron.testing.fixtures import make_service

    bad = types.SimpleNamespace()

    @hookimpl(trylast=True)
    def reconcile(ctx: Any) -> Any:
        return {}

    bad.reconcile = reconcile
    with pytest.raises(PluginError, match="trylast"):
        make_service(hermes_home, provider="bad", plugin=bad, clock=cron_clock)


# -- extensions --------------------------------------------------------------------------


class TestSampleExtensionConformance(ExtensionConformance):
    extension_name = "sample"
    extension_module = "helpers.sample_extension"


class TestDiscoveredExtensionConformance(ExtensionConformance):
    """The same checks on an extension found the way users install one: a user folder."""

    extension_name = "folder-sample"

    def prepare_home(self, home: Path) -> None:
        folder = home / "plugins" / "cron" / "folder-sample"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "plugin.yaml").write_text(
            "name: folder-sample\ndescription: x\nversion: '1'\n", encoding="utf-8"
        )
        source = Path(__file__).parent / "helpers" / "sample_extension.py"
        (folder / "__init__.py").write_text(source.read_text(encoding="utf-8"), encoding="utf-8")


BROKEN_EXTENSIONS = {
    "provider": """
        from hermes_cron import hookimpl

        @hookimpl
        def run_finished(result):
            pass

        @hookimpl
        def reconcile(ctx):
            return {}
    """,
    "fragile": """
        from hermes_cron import hookimpl

        @hookimpl
        def run_finished(result):
            # Assumes every row has an output file: a skip or a miss has none.
            result.row["output"].upper()
    """,
}


def test_the_extension_suite_catches_broken_extensions(pytester: pytest.Pytester) -> None:
    import textwrap

    classes = []
    for kind, code in BROKEN_EXTENSIONS.items():
        pytester.makepyfile(**{f"broken_ext_{kind}": textwrap.dedent(code)})
        classes.append(
            f"class TestBroken_{kind}(ExtensionConformance):\n"
            f"    extension_name = 'broken-{kind}'\n"
            f"    extension_module = 'broken_ext_{kind}'\n"
        )
    pytester.makepyfile(
        test_broken_ext="from hermes_cron.testing.conformance import ExtensionConformance\n\n\n"
        + "\n\n".join(classes)
    )
    pytester.syspathinsert()
    expected = [
        "test_broken_ext.py::TestBroken_provider::test_implements_no_provider_hook",
        "test_broken_ext.py::TestBroken_fragile::test_run_finished_tolerates_every_kind_of_result"
        "[skipped]",
    ]
    fine = expected[1].replace("[skipped]", "[ok]")  # rows with an output it handles
    result = pytester.runpytest_subprocess(
        "-q", "-p", "no:cacheprovider", "-W", "error", "-rf", *expected, fine
    )
    report = result.stdout.str()
    for node in expected:
        assert f"FAILED {node}" in report, (node, report)
    result.assert_outcomes(failed=len(expected), passed=1)
