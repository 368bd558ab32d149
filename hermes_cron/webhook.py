"""The fire webhook: NAS (or any remote trigger) calls ``POST /api/cron/fire`` to run a job.

Request::

    POST /api/cron/fire
    Authorization: Bearer <JWT signed by NAS>
    Content-Type: application/json

    {"job_id": "abc123", "fire_at": "2026-03-02T12:00:30+00:00"}

Checks, in this order, and nothing runs for a rejected request:

1. **401** ``{"error": ...}`` when the bearer token is missing or fails the
   verifier (forged, expired, wrong audience, issuer or purpose, ``alg: none``,
   HS256 confusion; see ``hermes_cron.jwt_verify``). Authentication comes first,
   so an unauthenticated caller learns nothing about the body rules. (**503**
   when the verifier cannot reach NAS's key set and has none cached: NAS should
   retry.)
2. **413** when the body is larger than ``max_body`` (16 KiB): checked on the
   ``Content-Length`` header and again while the body streams in.
3. **400** when the body is not a JSON object, ``job_id`` is missing or does
   not match ``^[A-Za-z0-9_-]{1,64}$``, or ``fire_at`` is present but not an ISO
   8601 time with offset. A token that carries ``job_id`` / ``fire_at`` claims
   must agree with the body (else 401).
4. **202** ``{"status": "accepted", "job_id"}`` at once; the fire runs on a
   background worker thread through ``service.fire_due(job_id, fire_at)`` (the
   provider's ``fire_due``: the shared claim drops duplicates and late
   repeats). ``fire_at`` may be left out: the job's ``next_run_at`` at the
   time the worker picks the fire up is used. (**503** if the fire queue is full.)

``GET /healthz`` answers ``200 {"status": "ok", "provider": <active provider>}``.

``GET /metrics`` answers the service's Prometheus metrics (``hermes_cron.metrics``)
in the text exposition format (404 for a service without metrics).

``serve(service, host, port)`` starts the active provider (in a thread: the
built-in loop blocks; Chronos reconciles and returns), then serves this app
with uvicorn until SIGINT/SIGTERM, and stops both cleanly.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import signal
import socket
import threading
import time
from collections import deque
from typing import Any, Deque, Dict, Optional, Tuple

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .config import cfg_get
from .errors import JobNotFoundError, ServeError
from .jwt_verify import FireTokenUnavailable, FireTokenVerifier, verifier_from_config
from .timeutil import parse_iso, to_iso

log = logging.getLogger("hermes_cron.webhook")

FIRE_PATH = "/api/cron/fire"
HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"
#: Largest accepted fire body, in bytes.
MAX_BODY = 16 * 1024
JOB_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: Accepted fires waiting for a worker, at most.
QUEUE_LIMIT = 1000


class FireRunner:
    """Runs accepted fires on a few daemon worker threads, off the HTTP event loop.

    After each fire, a helper thread calls ``service.reconcile()`` (when the service
    has one): when the provider is in line this costs nothing remote (Chronos: no
    NAS request), and when the fire left it out of line (NAS failed while the job
    was re-armed, so no fire would ever come to wake this process again) it is
    retried after ``heal_delay`` seconds, doubling up to ``HEAL_MAX_DELAY``, until
    it heals.

    :param service: anything with ``fire_due(job_id, fire_at)`` and ``ctx.store``.
    :param workers: worker threads (``cron.max_workers``).
    :param heal_delay: first wait before retrying a reconcile that did not heal
        (default ``HEAL_FIRST_DELAY``).
    """

    def __init__(
        self,
        service: Any,
        *,
        workers: int = 4,
        queue_limit: int = QUEUE_LIMIT,
        heal_delay: Optional[float] = None,
    ) -> None:
        self.service = service
        self.heal_delay = HEAL_FIRST_DELAY if heal_delay is None else float(heal_delay)
        self._heal_wanted = threading.Event()
        self._closing = threading.Event()
        self._healer: Optional[threading.Thread] = None
        self.workers = max(1, int(workers))
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, int(queue_limit)))
        self._threads: list = []
        self._lock = threading.Lock()
        self._busy = 0
        self._idle = threading.Condition(self._lock)
        #: The last fires handled: ``(job_id, fire_at, result or exception)``.
        self.recent: Deque[Tuple[str, Optional[str], Any]] = deque(maxlen=100)

    def submit(self, job_id: str, fire_at: Optional[str]) -> bool:
        """Queue a fire; False when the queue is full."""
        with self._lock:
            if not self._threads:
                for n in range(self.workers):
                    thread = threading.Thread(
                        target=self._work, name=f"hermes-cron-fire-{n}", daemon=True
                    )
                    thread.start()
                    self._threads.append(thread)
            try:
                self._queue.put_nowait((job_id, fire_at))
            except queue.Full:
                return False
            self._busy += 1
        return True

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            job_id, fire_at = item
            try:
                outcome: Any = self._fire(job_id, fire_at)
            except Exception as exc:  # a worker must survive any one fire
                log.exception("fire of job %s at %s failed", job_id, fire_at)
                outcome = exc
            self._want_heal()
            with self._lock:
                self.recent.append((job_id, fire_at, outcome))
                self._busy -= 1
                self._idle.notify_all()

    def _want_heal(self) -> None:
        """Ask the helper thread for a reconcile (one for any number of fires)."""
        if not callable(getattr(self.service, "reconcile", None)):
            return
        with self._lock:
            if self._healer is None and not self._closing.is_set():
                self._healer = threading.Thread(
                    target=self._heal, name="hermes-cron-heal", daemon=True
                )
                self._healer.start()
        self._heal_wanted.set()

    def _heal(self) -> None:
        while True:
            self._heal_wanted.wait()
            if self._closing.is_set():
                return
            self._heal_wanted.clear()
            delay = self.heal_delay
            while True:
                try:
                    summary = self.service.reconcile()
                except Exception:
                    log.exception("reconcile after a fire failed")
                    summary = {"errors": ["reconcile raised"]}
                if not _needs_healing(summary):
                    break
                log.warning(
                    "provider %s is not in line after a fire; retrying reconcile in %g s",
                    _provider_name(self.service),
                    delay,
                )
                if self._closing.wait(delay):
                    return
                delay = min(delay * 2, HEAL_MAX_DELAY)

    def _fire(self, job_id: str, fire_at: Optional[str]) -> Any:
        if fire_at is None:
            try:
                fire_at = self.service.ctx.store.get(job_id).get("next_run_at")
            except JobNotFoundError:
                log.info("fire for unknown job %s dropped", job_id)
                return None
            if not fire_at:
                log.info("fire for job %s dropped: it has no next run", job_id)
                return None
        result = self.service.fire_due(job_id, fire_at)
        log.info("fire of job %s at %s: %s", job_id, fire_at, result)
        return result

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every accepted fire has been handled; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def shutdown(self, timeout: float = 30.0) -> bool:
        """Let running fires finish (up to ``timeout``), then stop the workers."""
        idle = self.wait_idle(timeout)
        self._closing.set()
        self._heal_wanted.set()
        with self._lock:
            for _ in self._threads:
                try:
                    self._queue.put_nowait(None)
                except queue.Full:
                    break
        return idle


def _error(status: int, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Bearer realm="hermes-cron"'} if status == 401 else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _provider_name(service: Any) -> str:
    name = getattr(service, "provider_name", None)
    if not isinstance(name, str):
        name = getattr(getattr(service, "ctx", None), "provider_name", None)
    return name if isinstance(name, str) else "unknown"


async def _read_body(request: Request, limit: int) -> Optional[bytes]:
    """The body, or None when it exceeds ``limit`` (header or actual size)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise ValueError("bad Content-Length")
        if int(declared) > limit:
            return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _parse_fire(body: bytes) -> Tuple[str, Optional[str]]:
    """``(job_id, fire_at or None)`` from a fire body; ``ValueError`` saying what is wrong."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ValueError("the body is not valid JSON") from exc
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    job_id = data.get("job_id")
    if job_id is None:
        raise ValueError("job_id is missing")
    if not isinstance(job_id, str) or not JOB_ID_RE.match(job_id):
        raise ValueError("job_id must match ^[A-Za-z0-9_-]{1,64}$")
    fire_at = data.get("fire_at")
    if fire_at is None:
        return job_id, None
    if not isinstance(fire_at, str) or len(fire_at) > 64:
        raise ValueError("fire_at must be an ISO 8601 time with offset")
    try:
        return job_id, to_iso(parse_iso(fire_at))
    except (ValueError, OverflowError) as exc:
        raise ValueError("fire_at must be an ISO 8601 time with offset") from exc


def _same_time(a: Any, b: str) -> bool:
    try:
        return isinstance(a, str) and to_iso(parse_iso(a)) == b
    except (ValueError, OverflowError):
        return False


def create_app(
    service: Any,
    verifier: Optional[FireTokenVerifier] = None,
    *,
    max_body: int = MAX_BODY,
    fire_runner: Optional[FireRunner] = None,
) -> Starlette:
    """The webhook app for ``service`` (see the module docstring for the contract).

    :param service: a ``CronService`` (or anything with ``fire_due``, ``ctx.config``,
        ``ctx.store`` and ``ctx.provider_name``).
    :param verifier: checks fire tokens; default: ``JWKSVerifier`` built from
        ``cron.chronos.{nas_jwks_url, portal_url, expected_audience}`` (when those
        are missing every fire is refused with 401, and a warning is logged).
    :param max_body: largest accepted body in bytes.
    :param fire_runner: runs accepted fires (default: ``cron.max_workers`` threads).
        ``app.state.fire_runner`` exposes it.
    """
    config = service.ctx.config
    if verifier is None:
        verifier = verifier_from_config(config)
        reason = getattr(verifier, "reason", None)
        if reason:
            log.warning("fire webhook: %s; every fire will be refused", reason)
    runner = fire_runner or FireRunner(
        service, workers=int(cfg_get(config, "cron", "max_workers", default=4) or 4)
    )
    # Created now, so the counters count from the moment the app exists.
    metrics = getattr(service, "metrics", None)

    async def fire(request: Request) -> JSONResponse:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return _error(401, "a Bearer fire token is required")
        try:
            claims = await run_in_threadpool(verifier.verify, token)
        except FireTokenUnavailable as exc:
            log.warning("fire refused for now: %s", exc)
            return _error(503, "cannot verify fire tokens right now; retry later")
        except Exception as exc:  # any verifier failure is a rejection, never a 500
            log.warning("fire refused: %s", exc)
            return _error(401, "invalid fire token")
        try:
            body = await _read_body(request, max_body)
        except ValueError as exc:
            return _error(400, str(exc))
        if body is None:
            return _error(413, f"the body is larger than {max_body} bytes")
        try:
            job_id, fire_at = _parse_fire(body)
        except ValueError as exc:
            return _error(400, str(exc))
        if isinstance(claims, dict):
            if "job_id" in claims and claims["job_id"] != job_id:
                log.warning("fire refused: token for job %r used for %r", claims["job_id"], job_id)
                return _error(401, "the fire token is for another job")
            if (
                fire_at is not None
                and "fire_at" in claims
                and not _same_time(claims["fire_at"], fire_at)
            ):
                log.warning("fire refused: token fire_at differs from the body's")
                return _error(401, "the fire token is for another fire time")
        if not runner.submit(job_id, fire_at):
            return _error(503, "too many fires queued; retry later")
        return JSONResponse({"status": "accepted", "job_id": job_id}, status_code=202)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "provider": _provider_name(service)})

    async def metrics_page(request: Request) -> Response:
        if metrics is None or not callable(getattr(metrics, "render", None)):
            return _error(404, "this service has no metrics")
        # Reading the store and the status file blocks: keep it off the event loop.
        body = await run_in_threadpool(metrics.render)
        from .metrics import CONTENT_TYPE

        return Response(body, headers={"Content-Type": CONTENT_TYPE})

    app = Starlette(
        routes=[
            Route(FIRE_PATH, fire, methods=["POST"]),
            Route(HEALTH_PATH, healthz, methods=["GET"]),
            Route(METRICS_PATH, metrics_page, methods=["GET"]),
        ]
    )
    app.state.fire_runner = runner
    app.state.verifier = verifier
    return app


def _listen(host: str, port: int) -> socket.socket:
    """Bind the listening socket ourselves, so a bad address is a clear error."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _name, address = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ServeError(f"cannot listen on {host}:{port}: {exc}") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.set_inheritable(True)
    return sock


#: After a provider ``start`` that could not reach its remote side, the first retry
#: of ``reconcile`` comes this many seconds later; the wait doubles up to ``HEAL_MAX_DELAY``.
HEAL_FIRST_DELAY = 15.0
HEAL_MAX_DELAY = 600.0


def _needs_healing(summary: Any) -> bool:
    """True for a start/reconcile summary that says the remote side was not reached."""
    return isinstance(summary, dict) and bool(summary.get("errors") or summary.get("deferred"))


def _start_provider(
    service: Any, stop: threading.Event, holder: Dict[str, Any], heal_delay: float
) -> None:
    """Run ``service.start``; when an external provider could not converge, retry later.

    The built-in provider's ``start`` blocks here until ``stop``. Chronos returns
    at once; if NAS was unreachable its summary lists errors, and since nothing
    would otherwise wake this process before a fire that was never armed, the
    webhook process retries ``reconcile`` with a doubling delay until it
    succeeds (no periodic wake once healthy).
    """
    try:
        summary = service.start(stop)
        holder["result"] = summary
        if summary is not None:
            log.info("provider %s started: %s", _provider_name(service), summary)
    except Exception as exc:
        holder["error"] = exc
        log.exception("the provider failed to start")
        return
    delay = heal_delay
    while _needs_healing(summary) and hasattr(service, "reconcile"):
        log.warning("provider %s: retrying reconcile in %g s", _provider_name(service), delay)
        if stop.wait(delay):
            return
        try:
            summary = service.reconcile()
        except Exception:
            log.exception("reconcile failed")
            summary = {"errors": ["reconcile raised"]}
        if not _needs_healing(summary):
            log.info("provider %s reconciled: %s", _provider_name(service), summary)
        delay = min(delay * 2, HEAL_MAX_DELAY)


def serve(
    service: Any,
    host: str = "127.0.0.1",
    port: int = 8787,
    *,
    verifier: Optional[FireTokenVerifier] = None,
    log_level: str = "info",
    stop_grace: float = 30.0,
    stop_event: Optional[threading.Event] = None,
    heal_delay: float = HEAL_FIRST_DELAY,
) -> int:
    """Start the active provider, then serve the webhook until SIGINT/SIGTERM; returns 0.

    The provider runs in its own thread (the built-in loop blocks there until
    stop; Chronos reconciles and returns, and when NAS could not be reached its
    ``reconcile`` is retried after ``heal_delay`` seconds, doubling, until it
    succeeds; so is the reconcile after a fire that left it out of line). On a
    signal, or when ``stop_event`` is set (embedding, tests), the HTTP server stops
    taking requests, the provider is told to stop, and fires already accepted get
    up to ``stop_grace`` seconds to finish.

    :raises ServeError: the address cannot be bound.
    """
    import uvicorn

    sock = _listen(host, port)
    app = create_app(service, verifier)
    app.state.fire_runner.heal_delay = heal_delay
    stop = stop_event or threading.Event()
    holder: Dict[str, Any] = {}
    config = uvicorn.Config(app, log_level=log_level, lifespan="off", ws="none", access_log=False)
    server = uvicorn.Server(config)

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()
        server.should_exit = True

    previous = {}
    if threading.current_thread() is threading.main_thread():
        # uvicorn installs its own handlers while running and, on exit, restores
        # these and re-delivers the signal: ours then only sets the stop flag,
        # so a signal ends the process with exit code 0 instead of killing it.
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
    provider = threading.Thread(
        target=_start_provider,
        args=(service, stop, holder, heal_delay),
        name="hermes-cron-provider",
        daemon=True,
    )
    provider.start()

    def watch_stop() -> None:
        stop.wait()
        server.should_exit = True

    threading.Thread(target=watch_stop, name="hermes-cron-serve-stop", daemon=True).start()
    bound = sock.getsockname()
    log.info(
        "fire webhook on http://%s:%s%s (provider %s)",
        host,
        bound[1],
        FIRE_PATH,
        _provider_name(service),
    )
    try:
        server.run(sockets=[sock])
    finally:
        stop.set()
        provider.join(stop_grace)
        app.state.fire_runner.shutdown(stop_grace)
        close = getattr(service, "close", None)
        if callable(close):
            close()  # queued run reports reach the observers (bounded wait)
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


__all__ = [
    "FIRE_PATH",
    "FireRunner",
    "HEALTH_PATH",
    "METRICS_PATH",
    "JOB_ID_RE",
    "MAX_BODY",
    "ServeError",
    "create_app",
    "serve",
]
