"""Prometheus metrics (SPEC §11): one registry per service, fires counted once per ledger
row, served on ``serve``'s app and on a loopback port for the daemon."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any, Dict, FrozenSet, Tuple

import httpx
import pytest
from helpers.observekit import Blocker, StatusRunner
from helpers.servicekit import write_config
from prometheus_client.parser import text_string_to_metric_families

from hermes_cron.clock import FakeClock
from hermes_cron.metrics import CONTENT_TYPE
from hermes_cron.service import CronService
from hermes_cron.status_file import write_heartbeat

Samples = Dict[Tuple[str, FrozenSet[Tuple[str, str]]], float]


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def scrape(service: CronService) -> Samples:
    return parse(service.metrics.render().decode("utf-8"))


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def fires_by_status(samples: Samples) -> Dict[str, float]:
    return {
        dict(labels)["status"]: v
        for (name, labels), v in samples.items()
        if name == "hermes_cron_fires_total"
    }


def service_on(home: Path, clock: FakeClock, *plugins: Any, **cron: Any) -> CronService:
    """A service whose metrics exist (they count from their creation on)."""
    if cron:
        write_config(home, {"cron": cron})
    service = CronService.from_home(home, clock=clock, plugins=[StatusRunner(), *plugins])
    assert service.metrics.registry is not None
    return service


def test_fires_total_counts_every_ledger_row_by_status(home: Path, clock: FakeClock) -> None:
    service = service_on(home, clock, misfire_grace=60)
    ok = service.add_job("every 1h", prompt="ok")
    bad = service.add_job("every 1h", prompt="error")
    service.run_now(ok["id"])
    service.run_now(bad["id"])
    clock.advance(2.5 * 3600)  # both hourly jobs missed their fires (60 s grace)
    service.tick()
    rows = service.ledger.read()
    expected: Dict[str, float] = {}
    for row in rows:
        expected[row["status"]] = expected.get(row["status"], 0) + 1
    samples = scrape(service)
    assert fires_by_status(samples) == expected
    assert expected == {"ok": 1, "error": 1, "missed": 2}
    # Two runs ran (manual: no lateness); the misses have neither.
    assert value(samples, "hermes_cron_run_duration_seconds_count") == 2
    assert value(samples, "hermes_cron_fire_lateness_seconds_count") == 0
    assert value(samples, "hermes_cron_claims_total", outcome="won") == 2
    assert value(samples, "hermes_cron_claims_total", outcome="missed") == 2
    assert value(samples, "hermes_cron_runs_in_progress") == 0
    assert not [k for k in samples if "job_id" in dict(k[1])], "no job id label by default"


def test_lateness_and_duration_of_a_scheduled_fire(home: Path, clock: FakeClock) -> None:
    service = service_on(home, clock)
    job = service.add_job("every 1h", prompt="ok")
    due = service.store.get(job["id"])["next_run_at"]
    clock.advance(3600 + 2)  # fired 2 s late (within the grace)
    assert service.fire_due(job["id"], due).status == "ok"
    samples = scrape(service)
    assert value(samples, "hermes_cron_fire_lateness_seconds_count") == 1
    assert value(samples, "hermes_cron_fire_lateness_seconds_sum") == pytest.approx(2.0)
    assert value(samples, "hermes_cron_fire_lateness_seconds_bucket", le="1.0") == 0
    assert value(samples, "hermes_cron_fire_lateness_seconds_bucket", le="2.5") == 1
    # The fake clock does not move during the run: zero duration.
    assert value(samples, "hermes_cron_run_duration_seconds_sum") == 0


def test_job_labels_only_when_asked(home: Path, clock: FakeClock) -> None:
    service = service_on(home, clock, metrics_job_labels=True)
    job = service.add_job("every 1h", prompt="ok")
    service.run_now(job["id"])
    samples = scrape(service)
    assert value(samples, "hermes_cron_fires_total", status="ok", job_id=job["id"]) == 1
    assert value(samples, "hermes_cron_run_duration_seconds_count", job_id=job["id"]) == 1


def test_scrape_time_gauges(home: Path, clock: FakeClock) -> None:
    service = service_on(home, clock)
    a = service.add_job("every 1h", prompt="ok")
    service.add_job("every 2h", prompt="ok")
    service.pause_job(a["id"])
    once = service.add_job("+1m", prompt="ok")
    clock.advance(60)
    service.fire_due(once["id"], service.store.get(once["id"])["next_run_at"])
    write_heartbeat(service.paths, now=clock.now(), provider="builtin")
    samples = scrape(service)
    assert value(samples, "hermes_cron_jobs", state="scheduled") == 1
    assert value(samples, "hermes_cron_jobs", state="paused") == 1
    assert value(samples, "hermes_cron_jobs", state="completed") == 1
    assert ("hermes_cron_jobs", frozenset({("state", "quarantined")})) in samples
    assert value(samples, "hermes_cron_heartbeat_timestamp_seconds") == clock.now().timestamp()
    assert value(samples, "hermes_cron_provider_info", provider="builtin", requested="") == 1


def test_the_fallback_shows_in_provider_info(home: Path, clock: FakeClock) -> None:
    service = service_on(home, clock, provider="nosuch")
    samples = scrape(service)
    assert value(samples, "hermes_cron_provider_info", provider="builtin", requested="nosuch") == 1


def test_fires_total_holds_while_an_observer_hangs(home: Path, clock: FakeClock) -> None:
    blocker = Blocker()
    service = service_on(home, clock, blocker)
    service.ctx.observers.queue_limit = 1
    job = service.add_job("every 1h", prompt="ok")
    for _ in range(4):
        service.run_now(job["id"])
    samples = scrape(service)
    assert value(samples, "hermes_cron_fires_total", status="ok") == 4
    assert value(samples, "hermes_cron_observer_reports_dropped_total") >= 2
    blocker.release.set()
    service.close()


def test_two_services_in_one_process_keep_their_own_counts(
    tmp_path: Path, clock: FakeClock
) -> None:
    one = service_on(tmp_path / "one", clock)
    two = service_on(tmp_path / "two", clock)
    job = one.add_job("every 1h", prompt="ok")
    one.run_now(job["id"])
    assert value(scrape(one), "hermes_cron_fires_total", status="ok") == 1
    assert value(scrape(two), "hermes_cron_fires_total", status="ok") == 0


def test_serve_app_answers_metrics(home: Path, clock: FakeClock) -> None:
    from hermes_cron.webhook import create_app

    service = service_on(home, clock)
    app = create_app(service)
    job = service.add_job("every 1h", prompt="ok")
    service.run_now(job["id"])

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://agent") as client:
            return await client.get("/metrics")

    response = asyncio.run(get())
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE
    assert value(parse(response.text), "hermes_cron_fires_total", status="ok") == 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_metrics_server_listens_on_loopback_and_stops(home: Path, clock: FakeClock) -> None:
    service = service_on(home, clock, metrics_port=_free_port())
    server = service.start_metrics_server()
    assert server is not None and server.host == "127.0.0.1"
    job = service.add_job("every 1h", prompt="ok")
    service.run_now(job["id"])
    response = httpx.get(server.url, timeout=10)
    assert response.status_code == 200
    assert value(parse(response.text), "hermes_cron_fires_total", status="ok") == 1
    service.close()
    with pytest.raises(httpx.TransportError):
        httpx.get(server.url, timeout=5)


def test_no_metrics_server_when_the_port_is_0(home: Path, clock: FakeClock) -> None:
    service = CronService.from_home(home, clock=clock)
    assert service.start_metrics_server() is None
    assert service._metrics is None  # prometheus_client not even needed


def test_a_port_in_use_is_a_clear_error(home: Path, clock: FakeClock) -> None:
    from hermes_cron.errors import ServeError

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        service = service_on(home, clock, metrics_port=port)
        with pytest.raises(ServeError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            service.start_metrics_server()


def test_bad_metrics_config_values_fall_back_to_defaults(home: Path, clock: FakeClock) -> None:
    service = service_on(
        home, clock, metrics_port="lots", metrics_job_labels="yes", disabled_plugins="notify"
    )
    cron = service.config["cron"]
    assert (cron["metrics_port"], cron["metrics_job_labels"], cron["disabled_plugins"]) == (
        0,
        False,
        [],
    )
    for key in ("metrics_port", "metrics_job_labels", "disabled_plugins"):
        assert f"cron.{key}" in str(service.config_error)
