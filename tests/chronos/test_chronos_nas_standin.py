"""The NAS stand-in, over real loopback HTTP: the wire contract, fires with real tokens,
fault injection, and Chronos against a slow or failing NAS."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, List, Tuple

import hermes_cron_builtin_plugins.chronos as chronos
import httpx
import pytest
from helpers.chronoskit import ThreadedServer, make_ctx, wait_for, write_auth, write_config
from hermes_cron_builtin_plugins.chronos._nas_client import NASClient

from hermes_cron.clock import FakeClock
from hermes_cron.errors import NASError
from hermes_cron.jwt_verify import JWKSVerifier
from hermes_cron.schedules import parse_schedule
from hermes_cron.testing.nas_standin import NASStandin
from hermes_cron.webhook import create_app

TOKEN = "dev-access-token"


@pytest.fixture
def nas() -> Any:
    with NASStandin(audience="agent-x", fire_retries=1, fire_retry_delay=0.2) as server:
        yield server


def soon(seconds: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds)).isoformat()


def test_provision_upserts_by_job_and_dedups(nas: NASStandin) -> None:
    with NASClient(nas.base_url, lambda force: TOKEN) as client:
        later = soon(3600)
        first = client.provision("j1", later, "http://127.0.0.1:9")
        assert client.provision("j1", later, "http://127.0.0.1:9") == first  # same fire: no-op
        moved = soon(7200)
        assert client.provision("j1", moved, "http://127.0.0.1:9") != first
        assert [(a["job_id"], a["fire_at"]) for a in client.list()] == [("j1", moved)]
        client.cancel("j1")
        client.cancel("j1")  # idempotent
        assert client.list() == []
    provisions = nas.requests_to("/api/agent-cron/provision")
    assert provisions[0]["json"]["dedup_key"] == f"j1:{later}"
    assert all(r["token"] == TOKEN for r in provisions)


def test_it_checks_the_bearer_token_and_the_body(nas: NASStandin) -> None:
    url = nas.base_url + "/api/agent-cron/provision"
    body = {"job_id": "j", "fire_at": soon(60), "agent_callback_url": "http://127.0.0.1:9"}
    assert httpx.post(url, json={**body, "dedup_key": f"j:{body['fire_at']}"}).status_code == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.post(url, json={**body, "dedup_key": "wrong"}, headers=auth).status_code == 400
    bad_time = {**body, "fire_at": "noon", "dedup_key": "j:noon"}
    assert httpx.post(url, json=bad_time, headers=auth).status_code == 400


def test_the_token_endpoint_rotates_tokens(nas: NASStandin) -> None:
    url = nas.base_url + "/api/oauth/token"
    grant = {"grant_type": "refresh_token", "refresh_token": "dev-refresh-token"}
    answer = httpx.post(url, data=grant)
    assert answer.status_code == 200
    tokens = answer.json()
    assert tokens["expires_in"] > 0 and tokens["access_token"] in nas.valid_tokens
    assert httpx.post(url, data=grant).json() == {"error": "invalid_grant"}  # rotated away
    again = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    assert httpx.post(url, data=again).status_code == 200


def test_fault_injection_over_http(nas: NASStandin) -> None:
    faults = httpx.post(nas.base_url + "/_debug/faults", json={"fail_next": 2, "status": 502})
    assert faults.json() == {"ok": True}
    with NASClient(nas.base_url, lambda force: TOKEN, retries=0) as client:
        for _ in range(2):
            with pytest.raises(NASError, match="HTTP 502"):
                client.list()
        assert client.list() == []
    statuses = [r["status"] for r in httpx.get(nas.base_url + "/_debug/requests").json()]
    assert statuses[-3:] == [502, 502, 200]


class Recorder:
    def __init__(self) -> None:
        self.fired: List[Tuple[str, str]] = []
        self.ctx = SimpleNamespace(config={}, store=None, provider_name="test")

    def fire_due(self, job_id: str, fire_at: str) -> str:
        self.fired.append((job_id, fire_at))
        return "won"


def test_it_fires_with_a_token_the_webhook_accepts(nas: NASStandin) -> None:
    service = Recorder()
    verifier = JWKSVerifier(nas.jwks_url, nas.base_url, nas.audience)
    app = create_app(service, verifier)
    try:
        with ThreadedServer(app) as agent, NASClient(nas.base_url, lambda f: TOKEN) as client:
            fire_at = (datetime.now(timezone.utc) + timedelta(seconds=1)).isoformat()
            client.provision("job-a", fire_at, agent.url)
            wait_for(lambda: service.fired, what="the fire to reach the agent")
            assert service.fired == [("job-a", datetime.fromisoformat(fire_at).isoformat())]
            (delivery,) = wait_for(lambda: list(nas.fires), what="the delivery record")
            assert delivery["status"] == 202 and delivery["attempts"] == 1
            assert nas.armed() == {}  # a one-shot is spent once delivered
    finally:
        app.state.fire_runner.shutdown(5)
        verifier.close()


def test_a_refused_fire_is_retried_then_recorded(nas: NASStandin) -> None:
    service = Recorder()
    # The agent expects another audience: every fire is refused with 401 (not retried: 4xx).
    verifier = JWKSVerifier(nas.jwks_url, nas.base_url, "someone-else")
    app = create_app(service, verifier)
    try:
        with ThreadedServer(app) as agent, NASClient(nas.base_url, lambda f: TOKEN) as client:
            client.provision("job-b", soon(0), agent.url)
            (delivery,) = wait_for(lambda: list(nas.fires), what="the delivery record")
            assert delivery["status"] == 401
        # An agent that is down: retried, then given up on.
        client2 = NASClient(nas.base_url, lambda f: TOKEN)
        client2.provision("job-c", soon(0), "http://127.0.0.1:9")
        client2.close()
        wait_for(lambda: len(nas.fires) == 2, what="the failed delivery")
        assert nas.fires[1]["attempts"] == 2 and nas.fires[1]["error"]
        assert service.fired == []
    finally:
        app.state.fire_runner.shutdown(5)
        verifier.close()


def test_chronos_start_is_bounded_when_nas_is_slow_and_heals(nas: NASStandin, home: Path) -> None:
    config = {
        "cron": {
            "provider": "chronos",
            "chronos": {
                "portal_url": nas.base_url,
                "callback_url": "http://127.0.0.1:9",
                "timeout": 0.3,
                "retries": 1,
                "backoff": 0.05,
            },
        }
    }
    write_config(home, config)
    write_auth(home, access_token=TOKEN)
    clock = FakeClock(datetime.now(timezone.utc))
    ctx = make_ctx(home, clock, config)
    jobs = [
        ctx.store.add(parse_schedule("every 1h", now=clock.now()), command=["true"])
        for _ in range(5)
    ]
    nas.set_delay(2.0)
    began = time.monotonic()
    summary = chronos.start(ctx, threading.Event())
    elapsed = time.monotonic() - began
    # One list, tried twice at 0.3 s each (+ backoff), then the pass stops: no per-job waits.
    assert elapsed < 5, elapsed
    assert summary["deferred"] is True and "ReadTimeout" in summary["errors"][0]
    nas.set_delay(0)
    healed = chronos.reconcile(ctx)
    assert healed["errors"] == [] and healed["armed"] == 5
    assert set(nas.armed()) == {j["id"] for j in jobs}
    chronos.chronos_state(ctx).client.close()


def test_chronos_heals_after_5xx_from_a_real_nas(nas: NASStandin, home: Path) -> None:
    config = {
        "cron": {
            "provider": "chronos",
            "chronos": {"portal_url": nas.base_url, "callback_url": "http://127.0.0.1:9"},
        }
    }
    config["cron"]["chronos"].update({"retries": 1, "backoff": 0})
    write_auth(home, access_token=TOKEN)
    clock = FakeClock(datetime.now(timezone.utc))
    ctx = make_ctx(home, clock, config)
    for _ in range(3):
        ctx.store.add(parse_schedule("every 1h", now=clock.now()), command=["true"])
    nas.fail_next(3)  # the list passes on its retry; the first provision fails twice
    first = chronos.reconcile(ctx)
    assert first["deferred"] is True and "HTTP 503" in first["errors"][0]
    second = chronos.reconcile(ctx)
    assert second["errors"] == [] and len(nas.armed()) == 3
    chronos.chronos_state(ctx).client.close()


def test_the_command_prints_how_to_configure_and_stops_on_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hermes_cron.testing.nas_standin",
            "--port",
            "0",
            "--audience",
            "agent-q",
            "--token",
            "tok-q",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines: List[str] = []
        assert proc.stdout is not None
        while not any(line.startswith("Then run") for line in lines):
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else "no output"
            lines.append(line)
        text = "".join(lines)
        base = text.split("NAS stand-in on ", 1)[1].split()[0]
        assert "provider: chronos" in text and f"portal_url: {base}" in text
        assert f"nas_jwks_url: {base}/.well-known/jwks.json" in text
        assert "expected_audience: agent-q" in text and '"access_token": "tok-q"' in text
        keys = wait_for(
            lambda: _get_json(base + "/.well-known/jwks.json"), what="the stand-in to answer"
        )
        assert keys["keys"][0]["kty"] == "RSA"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()


def _get_json(url: str) -> Dict[str, Any]:
    try:
        return httpx.get(url, timeout=2).json()
    except httpx.HTTPError:
        return {}


def test_the_console_script_is_declared() -> None:
    from importlib.metadata import entry_points

    scripts = entry_points(group="console_scripts") if sys.version_info >= (3, 10) else None
    if scripts is None:  # Python 3.9: the dict form
        scripts = entry_points().get("console_scripts", [])  # type: ignore[attr-defined]
    names = {ep.name: ep.value for ep in scripts}
    assert names.get("hermes-cron-nas-standin") == "hermes_cron.testing.nas_standin:main"
    assert json.loads(json.dumps(names))  # plain data


def test_a_slow_but_working_nas_cannot_hold_start_beyond_its_budget(
    nas: NASStandin, home: Path
) -> None:
    config = {
        "cron": {
            "provider": "chronos",
            "chronos": {
                "portal_url": nas.base_url,
                "callback_url": "http://127.0.0.1:9",
                "timeout": 5,
                "reconcile_budget": 0.5,
            },
        }
    }
    write_auth(home, access_token=TOKEN)
    clock = FakeClock(datetime.now(timezone.utc))
    ctx = make_ctx(home, clock, config)
    for _ in range(20):
        ctx.store.add(parse_schedule("every 1h", now=clock.now()), command=["true"])
    nas.set_delay(0.2)  # every answer takes 0.2 s: 21 requests would take 4 s
    began = time.monotonic()
    summary = chronos.start(ctx, threading.Event())
    assert time.monotonic() - began < 3
    assert summary["deferred"] is True and "budget" in summary["errors"][-1]
    assert 0 < summary["armed"] < 20
    nas.set_delay(0)
    state = chronos.chronos_state(ctx)
    state.budget = 60
    rest = chronos.reconcile(ctx)
    assert rest["errors"] == [] and rest["armed"] == 20 - summary["armed"]
    assert len(nas.armed()) == 20
    state.client.close()
