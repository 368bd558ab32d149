"""NAS faults, over real loopback HTTP: the NAS stand-in fires real tokens at this
process's fire webhook, which runs the jobs through Chronos.

Faults: 5xx bursts, a NAS slower than the client timeout, a NAS that is gone
(connection refused) and comes back empty, duplicate deliveries and out-of-order
(stale) deliveries. Promises (SPEC §7): no fire runs twice, a NAS failure never
crashes anything, and a reconcile heals (NAS converges to ``jobs.json`` again, and
the jobs fire again).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import hermes_cron_builtin_plugins.chronos as chronos
import httpx
import pytest
from helpers.chronoskit import ThreadedServer, write_auth, write_config
from helpers.servicekit import PromptRunner
from reliakit import duplicates, wait_until

from hermes_cron.service import CronService
from hermes_cron.testing.nas_standin import NASStandin
from hermes_cron.timeutil import parse_iso
from hermes_cron.webhook import FIRE_PATH, FireRunner, create_app

AUDIENCE = "agent-rel"
TOKEN = "tok-rel"


class _LateApp:
    """An ASGI app bound after the server's port is known (the config needs the URL)."""

    app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


class Rig:
    """The stand-in NAS, a Chronos service on ``home`` and its fire webhook."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.nas = NASStandin(
            audience=AUDIENCE, token=TOKEN, fire_retries=2, fire_retry_delay=0.2
        ).start()
        self.late = _LateApp()
        self.agent = ThreadedServer(self.late)
        write_config(
            home,
            {
                "cron": {
                    "provider": "chronos",
                    "chronos": {
                        "portal_url": self.nas.base_url,
                        "callback_url": self.agent.url,
                        "expected_audience": AUDIENCE,
                        "nas_jwks_url": self.nas.jwks_url,
                        "timeout": 1.0,  # loopback, but a busy CI machine
                        "retries": 1,
                        "backoff": 0.05,
                    },
                }
            },
        )
        write_auth(home, access_token=TOKEN)
        self.runner = PromptRunner()
        self.service = CronService.from_home(home, plugins=[self.runner])
        assert self.service.provider_name == "chronos", self.service.scheduler.fallback_reason
        # Heal fast: a reconcile that fails after a fire is retried after 0.3 s, doubling.
        self.app = create_app(self.service, fire_runner=FireRunner(self.service, heal_delay=0.3))
        self.late.app = self.app
        self.agent.__enter__()

    def close(self) -> None:
        self.agent.__exit__(None, None, None)
        self.app.state.fire_runner.shutdown(10)
        self.nas.stop()
        # The HTTP clients keep pooled connections: close them here, not in a later test.
        self.app.state.verifier.close()
        state = self.service.ctx.state.get("chronos")
        if state is not None:
            state.client.close()

    def restart_nas(self) -> None:
        """A new, empty NAS on the same address (it lost every arm)."""
        port = self.nas.port
        deadline = time.monotonic() + 10
        while True:
            try:
                self.nas = NASStandin(
                    port=port, audience=AUDIENCE, token=TOKEN, fire_retries=2, fire_retry_delay=0.2
                ).start()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def runs(self, job_id: str) -> List[str]:
        return self.runner.fires(job_id)

    def wait_runs(self, job_ids: List[str], more_than: Dict[str, int], what: str) -> None:
        wait_until(
            lambda: all(len(self.runs(j)) > more_than.get(j, 0) for j in job_ids),
            timeout=30,
            what=what,
        )

    def counts(self, job_ids: List[str]) -> Dict[str, int]:
        return {j: len(self.runs(j)) for j in job_ids}

    def converged(self, job_ids: List[str]) -> bool:
        """NAS holds exactly one arm per job, at its stored next run."""
        armed = self.nas.armed()
        for job_id in job_ids:
            want = self.service.store.get(job_id)["next_run_at"]
            have = armed.get(job_id)
            if have is None or parse_iso(have) != parse_iso(want):
                return False
        return True

    def post_fire(self, job_id: str, fire_at: str) -> int:
        token = self.nas.issue_fire_token(job_id, fire_at)
        response = httpx.post(
            self.agent.url + FIRE_PATH,
            json={"job_id": job_id, "fire_at": fire_at},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        return response.status_code


@pytest.fixture
def rig(home: Path) -> Iterator[Rig]:
    made = Rig(home)
    try:
        yield made
    finally:
        made.close()


def _stalled(rig: Rig, job_ids: List[str]) -> bool:
    """Every job's stored next run has passed with no arm at NAS for it, and the agent
    knows: its Chronos map does not hold that arm (its re-arm failed).

    NAS alone cannot tell: it takes an arm off its list when it starts delivering the
    fire, so an arm on its way to the agent (not yet claimed, ``next_run_at`` not yet
    advanced) looks the same from there, however long the delivery takes on a loaded
    machine; a reconcile then rightly finds nothing to do."""
    armed = rig.nas.armed()
    state = chronos.chronos_state(rig.service.ctx)
    with state._map_lock:
        known = dict(state.armed)
    now = time.time()
    for job_id in job_ids:
        nxt = rig.service.store.get(job_id)["next_run_at"]
        if job_id in armed or parse_iso(nxt).timestamp() > now - 0.3:
            return False
        have = known.get(job_id)
        if have not in (None, chronos.NOT_ARMED, chronos.UNKNOWN) and parse_iso(have) == parse_iso(
            nxt
        ):
            return False
    return True


def test_nas_faults_never_double_run_and_reconcile_heals(rig: Rig) -> None:
    summary = rig.service.start(threading.Event())
    assert summary["errors"] == [] and summary["listed"] is True
    jobs = [rig.service.add_job("every 1s", prompt="ok")["id"] for _ in range(2)]
    rig.wait_runs(jobs, {}, "the first NAS fires to run")

    # 5xx from NAS on every call: the fires already armed still come; re-arms fail;
    # nothing crashes. Then one reconcile heals, and the jobs fire again.
    rig.nas.fail_next(10_000, status=503)
    wait_until(lambda: _stalled(rig, jobs), timeout=30, what="the re-arms to fail")
    assert rig.service.reconcile()["errors"]
    rig.nas.fail_next(0)
    before = rig.counts(jobs)
    healed = rig.service.reconcile()
    assert healed["errors"] == [], healed
    rig.wait_runs(jobs, before, "fires after the 5xx burst healed")

    # A NAS slower than the client timeout: bounded, recorded, healed the same way.
    # (5 s against a 1 s client timeout: the reconcile's few calls, each timed out and
    # retried once, end in about 5 s; waiting for NAS instead would take 20 s or more.)
    rig.nas.set_delay(5.0)
    wait_until(lambda: _stalled(rig, jobs), timeout=30, what="the slow re-arms to time out")
    began = time.monotonic()
    slow = rig.service.reconcile()
    assert time.monotonic() - began < 15 and slow["deferred"] is True
    assert "Timeout" in " ".join(slow["errors"])
    rig.nas.set_delay(0)
    before = rig.counts(jobs)
    assert rig.service.reconcile()["errors"] == []
    rig.wait_runs(jobs, before, "fires after the slow NAS healed")

    # NAS gone (connection refused), then back with no memory of any arm.
    rig.nas.stop()
    # A job added now cannot be armed: the add stands all the same.
    jobs.append(rig.service.add_job("every 1s", prompt="ok")["id"])
    assert rig.service.store.get(jobs[-1])["state"] == "scheduled"
    gone = rig.service.reconcile()
    assert gone["deferred"] is True and "Connect" in " ".join(gone["errors"]), gone
    rig.restart_nas()
    before = rig.counts(jobs)
    assert rig.service.reconcile()["errors"] == []
    rig.wait_runs(jobs, before, "fires from the restarted NAS")

    # Duplicate and stale deliveries: accepted (202), dropped by the claim.
    job = jobs[0]
    ran = rig.runs(job)
    assert rig.post_fire(job, ran[0]) == 202  # out of order: an old fire again
    nxt = rig.service.store.get(job)["next_run_at"]
    assert [rig.post_fire(job, nxt) for _ in range(3)] == [202, 202, 202]  # and NAS fires it too
    wait_until(lambda: nxt in rig.runs(job), timeout=30, what="the duplicated fire to run")
    assert rig.app.state.fire_runner.wait_idle(30)

    # Converged: pausing cancels every arm; nothing ever ran twice, or off its grid.
    for job_id in jobs:
        rig.service.pause_job(job_id)
    wait_until(lambda: rig.nas.armed() == {}, timeout=30, what="the arms to be cancelled")
    for job_id in jobs:
        fires = rig.runs(job_id)
        assert not duplicates((job_id, f) for f in fires), fires
        schedule = rig.service.store.get_schedule(job_id)
        assert all(schedule.latest_at_or_before(parse_iso(f)) == parse_iso(f) for f in fires)
        assert fires == sorted(fires, key=parse_iso)
    assert rig.runs(job).count(ran[0]) == 1
    deliveries = [f for f in rig.nas.fires if f["job_id"] in jobs]
    assert all(f["status"] == 202 for f in deliveries)


def test_a_failed_re_arm_heals_without_a_reconcile_call(rig: Rig) -> None:
    """NAS down while a fire re-arms the job: nothing is armed for it any more, so no
    fire will come to wake this process; the webhook process must heal by itself."""
    rig.service.start(threading.Event())
    job = rig.service.add_job("every 1s", prompt="ok")["id"]
    rig.wait_runs([job], {}, "the first fire")
    rig.nas.fail_next(10_000, status=503)
    wait_until(lambda: _stalled(rig, [job]), timeout=30, what="the re-arm to fail")
    rig.nas.fail_next(0)
    before = rig.counts([job])
    rig.wait_runs([job], before, "the job to fire again with no reconcile called")
    assert sorted(set(rig.runs(job))) == sorted(rig.runs(job))
