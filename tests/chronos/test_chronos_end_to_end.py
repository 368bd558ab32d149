"""End to end over real loopback HTTP: ``hermes-cron serve`` (Chronos) + the NAS stand-in +
``hermes-cron add`` / ``remove`` in their own processes.

add -> provision -> NAS fires with a signed token -> the job runs -> re-armed later
-> remove -> cancel seen by NAS -> serve stops cleanly on SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import httpx
from helpers.chronoskit import wait_for, write_auth, write_config

from hermes_cron.testing.nas_standin import NASStandin
from hermes_cron.timeutil import parse_iso

AUDIENCE = "agent-e2e"
TOKEN = "tok-e2e"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HERMES_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "hermes_cron", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def healthy(url: str) -> Dict[str, Any]:
    try:
        response = httpx.get(url + "/healthz", timeout=2)
    except httpx.HTTPError:
        return {}
    return response.json() if response.status_code == 200 else {}


def provisions_for(nas: NASStandin, job_id: str) -> List[str]:
    return [
        r["json"]["fire_at"]
        for r in nas.requests_to("/api/agent-cron/provision")
        if r["status"] == 200 and r["json"]["job_id"] == job_id
    ]


def test_serve_with_chronos_and_the_nas_stand_in(home: Path, tmp_path: Path) -> None:
    port = free_port()
    agent_url = f"http://127.0.0.1:{port}"
    with NASStandin(audience=AUDIENCE, token=TOKEN, fire_retry_delay=0.5) as nas:
        write_config(
            home,
            {
                "cron": {
                    "provider": "chronos",
                    "chronos": {
                        "portal_url": nas.base_url,
                        "callback_url": agent_url,
                        "expected_audience": AUDIENCE,
                        "nas_jwks_url": nas.jwks_url,
                    },
                }
            },
        )
        write_auth(home, access_token=TOKEN, refresh_token="dev-refresh-token")
        log_path = tmp_path / "serve.log"
        log = open(log_path, "w")  # noqa: SIM115 - closed in finally
        serve = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hermes_cron",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env={**os.environ, "HERMES_HOME": str(home)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            health = wait_for(lambda: healthy(agent_url), 30, "serve to answer /healthz")
            assert health == {"status": "ok", "provider": "chronos"}, log_path.read_text()
            # serve started Chronos: a cold reconcile asked NAS what is armed.
            wait_for(lambda: nas.requests_to("/api/agent-cron/list"), 30, "the start reconcile")

            ran = tmp_path / "ran.txt"
            command = [
                sys.executable,
                "-c",
                f"import os; open({str(ran)!r}, 'a')"
                ".write(os.environ['HERMES_CRON_FIRE_AT'] + '\\n')",
            ]
            added = cli(home, "add", "every 3s", "--json", "--", *command)
            assert added.returncode == 0, added.stderr
            job = json.loads(added.stdout)
            job_id = job["id"]

            # The CLI process armed the first one-shot at NAS.
            first = wait_for(lambda: provisions_for(nas, job_id), 30, "the first provision")[0]
            assert parse_iso(first) == parse_iso(job["next_run_at"])

            # NAS fires it; serve verifies the token and runs the job.
            wait_for(ran.exists, 30, "the job to run (file written)")
            fired_for = ran.read_text().splitlines()[0]
            assert parse_iso(fired_for) == parse_iso(first)
            delivery = wait_for(lambda: list(nas.fires), 30, "the delivery record")[0]
            assert delivery["status"] == 202

            # serve re-armed the next one-shot, later than the first.
            later = wait_for(
                lambda: [t for t in provisions_for(nas, job_id) if parse_iso(t) > parse_iso(first)],
                30,
                "the re-arm",
            )
            step = (parse_iso(later[0]) - parse_iso(first)).total_seconds()
            assert step > 0 and step % 3 == 0  # fixed-rate: a later slot of 'every 3s'
            assert job_id in nas.armed()

            removed = cli(home, "remove", job_id)
            assert removed.returncode == 0, removed.stderr
            wait_for(
                lambda: [
                    r
                    for r in nas.requests_to("/api/agent-cron/cancel")
                    if r["json"] == {"job_id": job_id} and r["status"] == 200
                ],
                30,
                "the cancel",
            )
            assert job_id not in nas.armed()
        finally:
            serve.send_signal(signal.SIGTERM)
            try:
                code = serve.wait(60)
            finally:
                log.close()
        assert code == 0, log_path.read_text()
    text = log_path.read_text()
    assert "Traceback" not in text, text
