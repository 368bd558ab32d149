"""``serve``: real HTTP, clean stops on SIGINT/SIGTERM, a clear error for a busy port, and a
Chronos start that could not reach NAS healing by itself."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict

import httpx
from helpers.chronoskit import wait_for, write_auth, write_config

from hermes_cron.clock import FakeClock
from hermes_cron.schedules import parse_schedule
from hermes_cron.service import CronService
from hermes_cron.testing.nas_standin import NASStandin
from hermes_cron.webhook import serve


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def healthz(url: str) -> Dict[str, Any]:
    try:
        response = httpx.get(url + "/healthz", timeout=2)
    except httpx.HTTPError:
        return {}
    return response.json() if response.status_code == 200 else {}


def spawn(home: Path, *args: str, **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "hermes_cron", *args],
        env={**os.environ, "HERMES_HOME": str(home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def test_serve_with_the_builtin_stops_cleanly_on_sigint_and_sigterm(home: Path) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        url = f"http://127.0.0.1:{free_port()}"
        proc = spawn(home, "serve", "--port", url.rsplit(":", 1)[1])
        try:
            health = wait_for(lambda url=url: healthz(url), 30, "serve")
            assert health == {"status": "ok", "provider": "builtin"}
        finally:
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "Traceback" not in err


def test_serve_on_a_busy_port_is_a_one_line_error(home: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        proc = spawn(home, "serve", "--port", str(port))
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert err.strip().count("\n") == 0 and f"cannot listen on 127.0.0.1:{port}" in err


def test_a_chronos_start_that_missed_nas_is_retried_until_it_heals(home: Path) -> None:
    with NASStandin(audience="a") as nas:
        config = {
            "cron": {
                "provider": "chronos",
                "chronos": {
                    "portal_url": nas.base_url,
                    "callback_url": "http://127.0.0.1:9",
                    "expected_audience": "a",
                    "nas_jwks_url": nas.jwks_url,
                    "retries": 0,
                    "backoff": 0,
                },
            }
        }
        write_config(home, config)
        write_auth(home, access_token="dev-access-token")
        clock = FakeClock(datetime.now(timezone.utc))
        service = CronService.from_home(home, clock=clock)
        assert service.provider_name == "chronos"
        job = service.store.add(parse_schedule("every 1h", now=clock.now()), command=["true"])
        nas.fail_next(2)  # the start's list fails, and the first retry's list too
        stop = threading.Event()
        port = free_port()
        result: Dict[str, Any] = {}
        thread = threading.Thread(
            target=lambda: result.setdefault(
                "code",
                serve(service, port=port, stop_event=stop, heal_delay=0.1, log_level="warning"),
            ),
            daemon=True,
        )
        thread.start()
        try:
            wait_for(lambda: healthz(f"http://127.0.0.1:{port}"), 30, "serve")
            wait_for(lambda: job["id"] in nas.armed(), 30, "the arm after NAS came back")
            statuses = [r["status"] for r in nas.requests_to("/api/agent-cron/list")]
            assert statuses[:2] == [503, 503] and statuses[2] == 200
        finally:
            stop.set()
            thread.join(60)
        assert result == {"code": 0}
        state = service.ctx.state["chronos"]
        state.client.close()


def test_daemon_with_chronos_reconciles_says_what_it_armed_and_exits(home: Path) -> None:
    with NASStandin(audience="a") as nas:
        write_config(
            home,
            {
                "cron": {
                    "provider": "chronos",
                    "chronos": {"portal_url": nas.base_url, "callback_url": "http://127.0.0.1:9"},
                }
            },
        )
        write_auth(home, access_token="dev-access-token")
        for _ in range(2):
            proc = spawn(home, "add", "every 1h", "--", "true")
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
        nas.requests.clear()
        proc = spawn(home, "daemon")
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "chronos" in (out + err)
        assert [r["path"] for r in nas.requests] == ["/api/agent-cron/list"]  # all armed already
        assert len(nas.armed()) == 2
