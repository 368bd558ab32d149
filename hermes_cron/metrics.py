"""Prometheus metrics of one service (SPEC §11), with ``prometheus_client``.

Each ``CronMetrics`` has its own ``CollectorRegistry`` (never the global one), so
several services in one process, and tests, never share a counter.

* ``hermes_cron_fires_total{status}``: counter, one per ledger row this process
  wrote (``status`` as in the ledger);
* ``hermes_cron_fire_lateness_seconds``: histogram, run start minus due time;
* ``hermes_cron_run_duration_seconds``: histogram, run end minus run start;
* ``hermes_cron_runs_in_progress``: gauge, jobs running now in this process;
* ``hermes_cron_claims_total{outcome}``: counter, claims made by this process;
* ``hermes_cron_jobs{state}``: gauge, jobs in the store by state (``quarantined`` too);
* ``hermes_cron_heartbeat_timestamp_seconds``: gauge, the heartbeat in ``cron/status.json``;
* ``hermes_cron_provider_info{provider, requested}``: gauge, always 1;
* ``hermes_cron_observer_reports_dropped_total``: counter, run reports observers never got;
* ``hermes_cron_observer_errors_total{plugin}``: counter, ``run_finished`` calls that raised.

With ``cron.metrics_job_labels: true`` the fires, lateness and duration
metrics also carry ``job_id`` (one series per job: keep it off for many jobs).

The row metrics are fed by ``ctx.observers`` as a row listener, called when each
ledger row is written, before and apart from the ``run_finished`` plugins: the
fires counter equals the rows written whatever the plugins do. Lateness and
duration are observed for rows of runs that ran on schedule (not skips, misses,
interruptions or manual runs). The store, the heartbeat and the provider are
read when scraped.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from socketserver import ThreadingMixIn
from typing import Any, Dict, Iterator, List, Optional, Tuple
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .config import cfg_get
from .errors import ServeError
from .observers import RunReport
from .status_file import read_status
from .timeutil import parse_iso

log = logging.getLogger("hermes_cron.metrics")

#: What ``/metrics`` answers with.
CONTENT_TYPE = CONTENT_TYPE_LATEST
#: Where the daemon's metrics server listens: this host only.
METRICS_HOST = "127.0.0.1"
#: Job states always reported (zero when none), so the series never vanish.
JOB_STATES = ("scheduled", "paused", "completed", "quarantined")

LATENESS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600, 1800, 3600)


class CronMetrics:
    """The metrics of ``service`` on a registry of their own (``registry``).

    :param service: a ``CronService`` (its ``ctx``, ``store``, ``paths``, ``scheduler``
        and ``config`` are read).
    """

    def __init__(self, service: Any) -> None:
        self.service = service
        self.job_labels = cfg_get(service.config, "cron", "metrics_job_labels") is True
        self.registry = CollectorRegistry(auto_describe=True)
        row_labels: Tuple[str, ...] = ("job_id",) if self.job_labels else ()
        self.fires = Counter(
            "hermes_cron_fires",
            "Ledger rows written by this process (runs, skips, misses...), by status.",
            ("status", *row_labels),
            registry=self.registry,
        )
        self.lateness = Histogram(
            "hermes_cron_fire_lateness_seconds",
            "Run start minus due time, for runs on schedule.",
            row_labels,
            buckets=LATENESS_BUCKETS,
            registry=self.registry,
        )
        self.duration = Histogram(
            "hermes_cron_run_duration_seconds",
            "Run end minus run start.",
            row_labels,
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_StateCollector(self))
        service.ctx.observers.add_row_listener(self._on_row)

    # -- fed by ctx.observers ----------------------------------------------------

    def _on_row(self, job: Dict[str, Any], report: RunReport) -> None:
        row = report.row
        extra = (str(row.get("job_id")),) if self.job_labels else ()
        self.fires.labels(str(row.get("status")), *extra).inc()
        if not report.ran:
            return
        started = _time(row.get("started_at"))
        finished = _time(row.get("finished_at"))
        due = _time(row.get("fire_at"))
        if started is not None and finished is not None:
            self._observe(self.duration, extra, (finished - started).total_seconds())
        if started is not None and due is not None and not row.get("manual"):
            self._observe(self.lateness, extra, (started - due).total_seconds())

    @staticmethod
    def _observe(histogram: Histogram, labels: Tuple[str, ...], value: float) -> None:
        # A clock step can make a difference negative; a histogram sums, so clamp.
        (histogram.labels(*labels) if labels else histogram).observe(max(0.0, value))

    # -- exposition ----------------------------------------------------------------

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)

    def serve(self, port: int, host: str = METRICS_HOST) -> MetricsServer:
        """Serve ``/metrics`` on ``host:port`` from a background thread.

        :raises ServeError: the address cannot be bound.
        """
        # prometheus_client's own start_http_server gives no way to stop it before 0.20;
        # its WSGI app (the exposition) in a server we own does, on every version.
        try:
            server = make_server(
                host,
                port,
                make_wsgi_app(self.registry),
                server_class=_ThreadingServer,
                handler_class=_QuietHandler,
            )
        except OSError as exc:
            raise ServeError(
                f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}"
            ) from None
        thread = threading.Thread(
            target=server.serve_forever, name="hermes-cron-metrics", daemon=True
        )
        thread.start()
        bound = server.server_address[1]
        log.info("metrics on http://%s:%s/metrics", host, bound)
        return MetricsServer(server, thread, host, int(bound))


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    """One thread per scrape, so a slow scraper never blocks another."""

    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per scrape on stderr is noise in the daemon's log


class MetricsServer:
    """A running metrics HTTP server (``CronMetrics.serve``); ``close()`` stops it."""

    def __init__(self, server: Any, thread: threading.Thread, host: str, port: int) -> None:
        self._server = server
        self._thread = thread
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self, timeout: float = 5.0) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout)


class _StateCollector:
    """The metrics read at scrape time: store, heartbeat, provider, claims, observers."""

    def __init__(self, metrics: CronMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> List[Metric]:
        return []  # computed at each scrape; nothing to check for clashes ahead of time

    def collect(self) -> Iterator[Metric]:
        service = self.metrics.service
        observers = service.ctx.observers
        counts = observers.counts()
        claims, in_progress = counts["claims"], counts["in_progress"]
        dropped, failures = counts["dropped"], counts["failures"]

        running = GaugeMetricFamily(
            "hermes_cron_runs_in_progress", "Jobs running now in this process."
        )
        running.add_metric([], max(0, in_progress))
        yield running

        claimed = CounterMetricFamily(
            "hermes_cron_claims", "Claims made by this process, by outcome.", labels=["outcome"]
        )
        for outcome, count in sorted(claims.items()):
            claimed.add_metric([outcome], count)
        yield claimed

        jobs = GaugeMetricFamily(
            "hermes_cron_jobs", "Jobs in the store, by state.", labels=["state"]
        )
        try:
            census = service.store.census()
        except Exception as exc:  # a scrape must answer even when the store cannot be read
            log.warning("metrics: cannot read the store: %s", exc)
        else:
            states = dict.fromkeys(JOB_STATES, 0)
            states.update(census.states)
            states["quarantined"] = len(census.quarantined)
            for state, count in sorted(states.items()):
                jobs.add_metric([state], count)
        yield jobs

        beat = _time(read_status(service.paths).get("heartbeat_at"))
        heartbeat = GaugeMetricFamily(
            "hermes_cron_heartbeat_timestamp_seconds",
            "When the running provider last wrote its heartbeat (Unix time).",
        )
        if beat is not None:
            heartbeat.add_metric([], beat.timestamp())
        yield heartbeat

        info = GaugeMetricFamily(
            "hermes_cron_provider_info",
            "The active provider and the one cron.provider requests (always 1).",
            labels=["provider", "requested"],
        )
        scheduler = service.scheduler
        info.add_metric([scheduler.name, str(scheduler.requested or "").strip()], 1)
        yield info

        lost = CounterMetricFamily(
            "hermes_cron_observer_reports_dropped",
            "Run reports the run_finished observers never got (queue full, or shutdown).",
        )
        lost.add_metric([], dropped)
        yield lost

        errors = CounterMetricFamily(
            "hermes_cron_observer_errors",
            "run_finished calls that raised, by plugin.",
            labels=["plugin"],
        )
        for plugin, count in sorted(failures.items()):
            errors.add_metric([plugin], count)
        yield errors


def _time(value: Any) -> Optional[datetime]:
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_iso(value)
    except (TypeError, ValueError):
        return None


__all__ = ["CONTENT_TYPE", "METRICS_HOST", "CronMetrics", "MetricsServer"]
