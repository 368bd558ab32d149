"""Benchmark the Chronos provider's NAS traffic and fire-token verification (not a test).

Measures, with NAS simulated in memory behind an ``httpx.MockTransport`` that
counts every request:

* ``cold start``: a new process (``service.start``) with N jobs of which 10 are
  not armed at NAS -- goal: 1 ``list`` + 10 ``provision``;
* ``warm change``: in that process, one job changed among N, then
  ``on_jobs_changed`` for it -- goal: 1 request; and a full warm ``reconcile``
  right after -- goal: 0 requests;
* ``warm reconcile``: one more job changed, then a full ``reconcile`` -- goal: 1;
* ``verify``: time per fire token checked by ``JWKSVerifier`` with the key set
  cached (RS256, 2048-bit key).

Run: ``.venv/bin/python bench/bench_chronos.py [--jobs 10000] [--tokens 2000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List

import hermes_cron_builtin_plugins.chronos as chronos
import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from hermes_cron.clock import FakeClock
from hermes_cron.config import DEFAULTS, deep_merge
from hermes_cron.jwt_verify import JWKSVerifier
from hermes_cron.paths import HomePaths
from hermes_cron.schedules import parse_schedule
from hermes_cron.service import CronService
from hermes_cron.store import JobStore
from hermes_cron.timeutil import UTC, to_iso

PORTAL = "https://nas.bench"
CONFIG = deep_merge(
    DEFAULTS,
    {
        "cron": {
            "provider": "chronos",
            "chronos": {"portal_url": PORTAL, "callback_url": "https://agent.bench"},
        }
    },
)


class FakeNAS:
    """NAS in memory: upsert by job, cancel, list; counts requests by call."""

    def __init__(self) -> None:
        self.arms: Dict[str, str] = {}
        self.calls: Counter = Counter()

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.rsplit("/", 1)[-1]
        self.calls[path] += 1
        if path == "list":
            armed = [{"job_id": j, "fire_at": t, "schedule_id": j} for j, t in self.arms.items()]
            return httpx.Response(200, json={"armed": armed})
        body = json.loads(request.content)
        if path == "provision":
            self.arms[body["job_id"]] = body["fire_at"]
            return httpx.Response(200, json={"schedule_id": body["job_id"]})
        self.arms.pop(body["job_id"], None)
        return httpx.Response(200, json={"ok": True})

    def take(self) -> Dict[str, int]:
        counts = dict(self.calls)
        self.calls.clear()
        return counts


def populate(home: Path, size: int, clock: FakeClock) -> List[Dict[str, Any]]:
    """Write ``size`` jobs at once (adding them one by one rewrites the file N times)."""
    seed = JobStore(HomePaths.at(home / "seed"), clock=clock)
    template = seed.add(parse_schedule("every 1h", now=clock.now()), command=["true"])
    records = []
    for i in range(size):
        schedule = parse_schedule(f"every {60 + i % 3600}s", now=clock.now())
        record = dict(template)
        record.update(
            id=f"job{i:06d}",
            name=f"job {i}",
            command=["true", str(i)],
            schedule=schedule.to_record(),
            next_run_at=to_iso(schedule.next_after(clock.now())),
        )
        records.append(record)
    paths = HomePaths.at(home)
    paths.cron_dir.mkdir(parents=True, exist_ok=True)
    paths.jobs.write_text(json.dumps({"version": 1, "jobs": records}), encoding="utf-8")
    shutil.rmtree(home / "seed")
    return records


def service_for(home: Path, clock: FakeClock, nas: FakeNAS) -> CronService:
    service = CronService.from_home(home, clock=clock, config=CONFIG)
    assert service.provider_name == "chronos", service.scheduler.fallback_reason
    chronos.chronos_state(service.ctx, transport=httpx.MockTransport(nas.handle))
    return service


def bench_traffic(size: int) -> List[List[str]]:
    rows = []
    home = Path(tempfile.mkdtemp(prefix="bench-chronos-"))
    try:
        os.environ["HERMES_HOME"] = str(home)
        (home / "auth.json").write_text(
            json.dumps({"providers": {"nous": {"access_token": "t", "refresh_token": "r"}}})
        )
        clock = FakeClock(datetime(2026, 3, 2, 12, 0, tzinfo=UTC))
        records = populate(home, size, clock)
        nas = FakeNAS()
        # NAS already holds every arm but 10 (the agent was down when they changed).
        nas.arms = {r["id"]: r["next_run_at"] for r in records[10:]}

        service = service_for(home, clock, nas)
        began = time.perf_counter()
        summary = service.start()
        took = time.perf_counter() - began
        calls = nas.take()
        rows.append(
            [
                f"cold start, {size} jobs, 10 missing",
                _calls(calls),
                "1 list + 10 provision",
                f"{took:.2f} s",
                f"armed={summary['armed']}",
            ]
        )

        job_id = records[size // 2]["id"]
        service.store.pause(job_id)
        began = time.perf_counter()
        service.notify([job_id])
        took = time.perf_counter() - began
        rows.append(
            [
                f"warm on_jobs_changed, 1 of {size}",
                _calls(nas.take()),
                "1",
                f"{took * 1e3:.1f} ms",
                "",
            ]
        )
        began = time.perf_counter()
        service.reconcile()
        took = time.perf_counter() - began
        rows.append(
            ["warm reconcile, nothing changed", _calls(nas.take()), "0", f"{took * 1e3:.1f} ms", ""]
        )

        other = records[size // 3]["id"]
        service.store.pause(other)  # changed without a notification (e.g. a crash in between)
        began = time.perf_counter()
        service.reconcile()
        took = time.perf_counter() - began
        rows.append(
            [
                f"warm reconcile, 1 of {size} changed",
                _calls(nas.take()),
                "1",
                f"{took * 1e3:.1f} ms",
                "",
            ]
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return rows


def _calls(calls: Dict[str, int]) -> str:
    return ", ".join(f"{n} {name}" for name, n in sorted(calls.items())) or "none"


def bench_verify(count: int) -> List[List[str]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "k1", "use": "sig"})
    fetches = []

    def jwks(request: httpx.Request) -> httpx.Response:
        fetches.append(1)
        return httpx.Response(200, json={"keys": [jwk]})

    verifier = JWKSVerifier(
        "https://nas.bench/jwks.json", PORTAL, "aud", transport=httpx.MockTransport(jwks)
    )
    now = int(time.time())
    claims = {"iss": PORTAL, "aud": "aud", "purpose": "cron_fire", "iat": now, "exp": now + 600}
    tokens = [
        jwt.encode({**claims, "jti": str(i)}, key, algorithm="RS256", headers={"kid": "k1"})
        for i in range(count)
    ]
    verifier.verify(tokens[0])  # fill the cache
    began = time.perf_counter()
    for token in tokens:
        verifier.verify(token)
    per = (time.perf_counter() - began) / count
    verifier.close()
    return [
        [
            f"verify {count} fire tokens (RS256, JWKS cached)",
            f"{len(fetches)} JWKS fetch",
            "1 fetch",
            f"{per * 1e6:.0f} us/token",
            "",
        ]
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--tokens", type=int, default=2_000)
    args = parser.parse_args()
    rows = bench_traffic(args.jobs) + bench_verify(args.tokens)
    header = ["scenario", "NAS requests", "goal", "time", "note"]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)))


if __name__ == "__main__":
    main()
