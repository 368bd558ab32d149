"""A small local NAS for trying Chronos on one machine, and for tests.

It implements the agent-facing side of NAS (SPEC section 7) in memory:

* ``POST /api/agent-cron/provision`` (upsert by job; same ``dedup_key`` = no-op),
  ``POST /api/agent-cron/cancel``, ``GET /api/agent-cron/list``: Bearer-checked;
* ``GET /.well-known/jwks.json``: the public half of an RSA key made at startup;
* ``POST /api/oauth/token``: the refresh-token grant (rotates both tokens);
* a timer thread that, at each armed ``fire_at``, POSTs
  ``{agent_callback_url}/api/cron/fire`` with ``{"job_id", "fire_at"}`` and a
  short-lived RS256 JWT (``iss`` = this server's base URL, ``aud`` = the
  configured audience, ``purpose: cron_fire``), retrying a few times when the
  agent is down, then drops the arm (a one-shot);
* for tests: ``GET /_debug/requests`` (every request seen), ``GET /_debug/fires``
  (every delivery), ``POST /_debug/faults`` ``{"fail_next": N, "status": 503,
  "delay": seconds, "revoke_tokens": true}`` (fault injection); in-process, the
  same through ``NASStandin`` methods.

Trying Chronos locally
----------------------

1. Start the stand-in (it prints these values for you)::

       hermes-cron-nas-standin --port 8788 --audience my-agent --token dev-access-token
       # or: python -m hermes_cron.testing.nas_standin ...

2. In ``$HERMES_HOME/config.yaml``::

       cron:
         provider: chronos
         chronos:
           portal_url: http://127.0.0.1:8788
           callback_url: http://127.0.0.1:8787
           expected_audience: my-agent
           nas_jwks_url: http://127.0.0.1:8788/.well-known/jwks.json

3. In ``$HERMES_HOME/auth.json`` (mode 0600)::

       {"providers": {"nous": {"access_token": "dev-access-token",
                               "refresh_token": "dev-refresh-token",
                               "expires_at": "2099-01-01T00:00:00+00:00"}}}

4. Run the agent side and add a job::

       hermes-cron serve --port 8787
       hermes-cron add 'every 30s' -- date

   The stand-in logs each provision and each fire it delivers.

Not a production server: one process, state in memory, no persistence.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import secrets
import signal
import socket
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Sequence
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

log = logging.getLogger("hermes_cron.nas_standin")

FIRE_PATH = "/api/cron/fire"


def _parse_time(text: Any) -> Optional[datetime]:
    if not isinstance(text, str):
        return None
    value = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


class NASStandin:
    """The stand-in server. Use as a context manager in tests, or ``run_forever()``.

    :param host: address to listen on.
    :param port: port (0 = any free port; see ``base_url`` after ``start()``).
    :param audience: the ``aud`` of the fire tokens it mints.
    :param token: the access token agents must send (more are issued by refreshes).
    :param refresh_token: the refresh token the token endpoint accepts first.
    :param fire_token_ttl: lifetime of a fire token, in seconds.
    :param access_ttl: ``expires_in`` of refreshed access tokens.
    :param fire_retries: extra delivery attempts when the agent is down or answers 5xx.
    :param fire_retry_delay: seconds between delivery attempts.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        audience: str = "hermes-agent",
        token: str = "dev-access-token",
        refresh_token: str = "dev-refresh-token",
        fire_token_ttl: int = 60,
        access_ttl: int = 3600,
        fire_retries: int = 3,
        fire_retry_delay: float = 1.0,
    ) -> None:
        self.host = host
        self.port = port
        self.audience = audience
        self.fire_token_ttl = fire_token_ttl
        self.access_ttl = access_ttl
        self.fire_retries = fire_retries
        self.fire_retry_delay = fire_retry_delay
        self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "standin-" + secrets.token_hex(4)
        self.valid_tokens = {token}
        self.refresh_tokens = {refresh_token}
        self._cond = threading.Condition()
        #: job_id -> {"job_id", "fire_at", "when", "agent_callback_url", "dedup_key", "schedule_id"}
        self.arms: Dict[str, Dict[str, Any]] = {}
        self.requests: List[Dict[str, Any]] = []
        self.fires: List[Dict[str, Any]] = []
        self._fail_next = 0
        self._fail_status = 503
        self.delay = 0.0
        self._stopping = threading.Event()
        self._server: Any = None
        self._threads: List[threading.Thread] = []
        self._sock: Optional[socket.socket] = None
        self.app = self._build_app()

    # -- addresses ---------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def jwks_url(self) -> str:
        return self.base_url + "/.well-known/jwks.json"

    # -- knobs (tests) ---------------------------------------------------------------

    def fail_next(self, count: int, status: int = 503) -> None:
        """Answer the next ``count`` agent-cron requests with ``status``."""
        with self._cond:
            self._fail_next = int(count)
            self._fail_status = int(status)

    def set_delay(self, seconds: float) -> None:
        """Wait ``seconds`` before answering each agent-cron request."""
        self.delay = float(seconds)

    def revoke_tokens(self) -> None:
        """Invalidate every access token: the next agent call gets 401 and must refresh."""
        with self._cond:
            self.valid_tokens.clear()

    def requests_to(self, path: str) -> List[Dict[str, Any]]:
        with self._cond:
            return [r for r in self.requests if r["path"] == path]

    def armed(self) -> Dict[str, str]:
        """``job_id -> fire_at`` of every arm."""
        with self._cond:
            return {job_id: arm["fire_at"] for job_id, arm in self.arms.items()}

    def jwks(self) -> Dict[str, Any]:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private_key.public_key()))
        public.update({"kid": self.kid, "alg": "RS256", "use": "sig"})
        return {"keys": [public]}

    def issue_fire_token(self, job_id: str, fire_at: str, **overrides: Any) -> str:
        """A fire token as NAS would send it; ``overrides`` replace or add claims."""
        now = int(time.time())
        claims: Dict[str, Any] = {
            "iss": self.base_url,
            "aud": self.audience,
            "purpose": "cron_fire",
            "iat": now,
            "nbf": now,
            "exp": now + self.fire_token_ttl,
            "jti": uuid.uuid4().hex,
            "job_id": job_id,
            "fire_at": fire_at,
        }
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(claims, self.private_key, algorithm="RS256", headers={"kid": self.kid})

    # -- HTTP ---------------------------------------------------------------------------

    def _build_app(self) -> Starlette:
        async def provision(request: Request) -> JSONResponse:
            return await self._guarded(request, self._provision)

        async def cancel(request: Request) -> JSONResponse:
            return await self._guarded(request, self._cancel)

        async def list_arms(request: Request) -> JSONResponse:
            return await self._guarded(request, self._list)

        async def jwks(request: Request) -> JSONResponse:
            self._record(request, None, 200)
            return JSONResponse(self.jwks())

        async def token(request: Request) -> JSONResponse:
            body = await request.body()
            form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
            with self._cond:
                if form.get("grant_type") != "refresh_token":
                    answer = JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
                elif form.get("refresh_token") not in self.refresh_tokens:
                    answer = JSONResponse({"error": "invalid_grant"}, status_code=400)
                else:
                    self.refresh_tokens.discard(form["refresh_token"])
                    access, refresh = "at-" + secrets.token_hex(8), "rt-" + secrets.token_hex(8)
                    self.valid_tokens.add(access)
                    self.refresh_tokens.add(refresh)
                    answer = JSONResponse(
                        {
                            "access_token": access,
                            "token_type": "Bearer",
                            "expires_in": self.access_ttl,
                            "refresh_token": refresh,
                        }
                    )
            self._record(request, {"grant_type": form.get("grant_type")}, answer.status_code)
            return answer

        async def debug_requests(request: Request) -> JSONResponse:
            with self._cond:
                return JSONResponse(list(self.requests))

        async def debug_fires(request: Request) -> JSONResponse:
            with self._cond:
                return JSONResponse(list(self.fires))

        async def debug_faults(request: Request) -> JSONResponse:
            try:
                knobs = json.loads(await request.body() or b"{}")
            except ValueError:
                return JSONResponse({"error": "not JSON"}, status_code=400)
            if not isinstance(knobs, dict):
                return JSONResponse({"error": "not an object"}, status_code=400)
            if "fail_next" in knobs:
                self.fail_next(int(knobs["fail_next"]), int(knobs.get("status", 503)))
            if "delay" in knobs:
                self.set_delay(float(knobs["delay"]))
            if knobs.get("revoke_tokens"):
                self.revoke_tokens()
            return JSONResponse({"ok": True})

        return Starlette(
            routes=[
                Route("/api/agent-cron/provision", provision, methods=["POST"]),
                Route("/api/agent-cron/cancel", cancel, methods=["POST"]),
                Route("/api/agent-cron/list", list_arms, methods=["GET"]),
                Route("/.well-known/jwks.json", jwks, methods=["GET"]),
                Route("/api/oauth/token", token, methods=["POST"]),
                Route("/_debug/requests", debug_requests, methods=["GET"]),
                Route("/_debug/fires", debug_fires, methods=["GET"]),
                Route("/_debug/faults", debug_faults, methods=["POST"]),
            ]
        )

    def _record(self, request: Request, body: Any, status: int) -> None:
        header = request.headers.get("authorization", "")
        with self._cond:
            self.requests.append(
                {
                    "method": request.method,
                    "path": request.url.path,
                    "json": body,
                    "token": header[7:] if header.lower().startswith("bearer ") else None,
                    "status": status,
                    "at": time.time(),
                }
            )

    async def _guarded(self, request: Request, handler: Any) -> JSONResponse:
        """Record, apply faults and check the Bearer token, then call ``handler(body)``."""
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        if self.delay:
            # Sleep in slices so that stop() is not held up by a slowed request.
            deadline = time.monotonic() + self.delay
            while not self._stopping.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        header = request.headers.get("authorization", "")
        with self._cond:
            failing = self._fail_next > 0
            if failing:
                self._fail_next -= 1
            authorized = header.startswith("Bearer ") and header[7:] in self.valid_tokens
        if failing:
            answer = JSONResponse({"error": "injected failure"}, status_code=self._fail_status)
        elif not authorized:
            answer = JSONResponse({"error": "invalid or missing access token"}, status_code=401)
        else:
            answer = handler(body)
        self._record(request, body, answer.status_code)
        return answer

    def _provision(self, body: Any) -> JSONResponse:
        if not isinstance(body, dict):
            return JSONResponse({"error": "body must be a JSON object"}, status_code=400)
        job_id, fire_at = body.get("job_id"), body.get("fire_at")
        callback, dedup = body.get("agent_callback_url"), body.get("dedup_key")
        when = _parse_time(fire_at)
        if not isinstance(job_id, str) or not job_id:
            return JSONResponse({"error": "job_id is required"}, status_code=400)
        if when is None:
            return JSONResponse({"error": "fire_at must be ISO 8601 with offset"}, status_code=400)
        if not isinstance(callback, str) or urlsplit(callback).scheme not in ("http", "https"):
            return JSONResponse({"error": "agent_callback_url must be a URL"}, status_code=400)
        if dedup != f"{job_id}:{fire_at}":
            return JSONResponse({"error": "dedup_key must be '<job_id>:<fire_at>'"}, 400)
        with self._cond:
            current = self.arms.get(job_id)
            if current is not None and current["dedup_key"] == dedup:
                return JSONResponse({"schedule_id": current["schedule_id"]})
            schedule_id = "sch-" + secrets.token_hex(6)
            self.arms[job_id] = {
                "job_id": job_id,
                "fire_at": fire_at,
                "when": when.timestamp(),
                "agent_callback_url": callback.rstrip("/"),
                "dedup_key": dedup,
                "schedule_id": schedule_id,
            }
            self._cond.notify_all()
        log.info("armed %s at %s", job_id, fire_at)
        return JSONResponse({"schedule_id": schedule_id})

    def _cancel(self, body: Any) -> JSONResponse:
        job_id = body.get("job_id") if isinstance(body, dict) else None
        if not isinstance(job_id, str) or not job_id:
            return JSONResponse({"error": "job_id is required"}, status_code=400)
        with self._cond:
            self.arms.pop(job_id, None)
            self._cond.notify_all()
        log.info("cancelled %s", job_id)
        return JSONResponse({"ok": True})

    def _list(self, body: Any) -> JSONResponse:
        with self._cond:
            armed = [
                {"job_id": a["job_id"], "fire_at": a["fire_at"], "schedule_id": a["schedule_id"]}
                for a in sorted(self.arms.values(), key=lambda a: a["when"])
            ]
        return JSONResponse({"armed": armed})

    # -- the timer ------------------------------------------------------------------

    def _timer(self) -> None:
        with self._cond:
            while not self._stopping.is_set():
                now = time.time()
                due = [a for a in self.arms.values() if a["when"] <= now]
                for arm in due:
                    del self.arms[arm["job_id"]]  # a one-shot: spent once delivered
                    thread = threading.Thread(target=self._deliver, args=(dict(arm),), daemon=True)
                    thread.start()
                if due:
                    continue
                upcoming = min((a["when"] for a in self.arms.values()), default=None)
                wait = 1.0 if upcoming is None else min(1.0, max(0.0, upcoming - now))
                self._cond.wait(wait)

    def _deliver(self, arm: Dict[str, Any]) -> None:
        url = arm["agent_callback_url"] + FIRE_PATH
        payload = {"job_id": arm["job_id"], "fire_at": arm["fire_at"]}
        record: Dict[str, Any] = {**payload, "url": url, "attempts": 0, "status": None}
        for attempt in range(self.fire_retries + 1):
            if self._stopping.is_set():
                break
            record["attempts"] = attempt + 1
            token = self.issue_fire_token(arm["job_id"], arm["fire_at"])
            try:
                with httpx.Client(timeout=10.0) as client:
                    response = client.post(
                        url, json=payload, headers={"Authorization": f"Bearer {token}"}
                    )
                record["status"] = response.status_code
                record["error"] = None
                if response.status_code < 500:
                    break
            except httpx.HTTPError as exc:
                record["error"] = f"{type(exc).__name__}: {exc}"
            self._stopping.wait(self.fire_retry_delay)
        record["at"] = time.time()
        log.info("fired %s at %s: %s", arm["job_id"], arm["fire_at"], record["status"])
        with self._cond:
            self.fires.append(record)

    # -- running --------------------------------------------------------------------------

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(128)
        self.port = sock.getsockname()[1]
        return sock

    def _make_server(self, log_level: str) -> Any:
        import uvicorn

        config = uvicorn.Config(
            self.app, log_level=log_level, lifespan="off", ws="none", access_log=False
        )
        return uvicorn.Server(config)

    def start(self, *, timeout: float = 30.0) -> NASStandin:
        """Serve in background threads; returns once the server accepts connections."""
        self._sock = self._bind()
        self._server = self._make_server("warning")
        server_thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )
        timer_thread = threading.Thread(target=self._timer, daemon=True)
        self._threads = [server_thread, timer_thread]
        server_thread.start()
        timer_thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not server_thread.is_alive():
                self.stop()
                raise RuntimeError("the NAS stand-in did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving and firing."""
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        if self._server is not None:
            self._server.should_exit = True
        for thread in self._threads:
            thread.join(30)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def run_forever(self, sock: Optional[socket.socket] = None) -> None:
        """Serve in the foreground until SIGINT/SIGTERM (the command-line entry point)."""
        self._sock = sock or self._bind()
        self._server = self._make_server("info")
        timer_thread = threading.Thread(target=self._timer, daemon=True)
        timer_thread.start()

        def on_signal(signum: int, frame: Any) -> None:
            self._stopping.set()
            self._server.should_exit = True

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, on_signal)
        try:
            self._server.run(sockets=[self._sock])
        finally:
            self._stopping.set()
            with self._cond:
                self._cond.notify_all()
            if self._sock is not None:
                self._sock.close()

    def __enter__(self) -> NASStandin:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _instructions(nas: NASStandin, callback_url: str, refresh_token: str) -> str:
    token = next(iter(nas.valid_tokens))
    auth = {
        "providers": {
            "nous": {
                "access_token": token,
                "refresh_token": refresh_token,
                "expires_at": datetime(2099, 1, 1, tzinfo=timezone.utc).isoformat(),
            }
        }
    }
    return (
        f"NAS stand-in on {nas.base_url}\n\n"
        "Add to $HERMES_HOME/config.yaml:\n\n"
        "cron:\n"
        "  provider: chronos\n"
        "  chronos:\n"
        f"    portal_url: {nas.base_url}\n"
        f"    callback_url: {callback_url}\n"
        f"    expected_audience: {nas.audience}\n"
        f"    nas_jwks_url: {nas.jwks_url}\n\n"
        "Write $HERMES_HOME/auth.json (chmod 600):\n\n"
        f"{json.dumps(auth, indent=2)}\n\n"
        f"Then run: hermes-cron serve --port {urlsplit(callback_url).port or 80}\n"
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``hermes-cron-nas-standin``: run the stand-in until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="hermes-cron-nas-standin",
        description="A local stand-in for NAS, to try the Chronos provider on one machine.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8788, help="port to listen on")
    parser.add_argument("--audience", default="hermes-agent", help="aud of the fire tokens")
    parser.add_argument("--token", default="dev-access-token", help="access token to accept")
    parser.add_argument(
        "--refresh-token", default="dev-refresh-token", help="refresh token to accept"
    )
    parser.add_argument(
        "--callback-url",
        default="http://127.0.0.1:8787",
        help="the agent's base URL, only for the printed instructions",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    nas = NASStandin(
        host=args.host,
        port=args.port,
        audience=args.audience,
        token=args.token,
        refresh_token=args.refresh_token,
    )
    try:
        sock = nas._bind()
    except OSError as exc:
        print(
            f"hermes-cron-nas-standin: cannot listen on {args.host}:{args.port}: {exc}",
            file=sys.stderr,
        )
        return 2
    print(_instructions(nas, args.callback_url, args.refresh_token), flush=True)
    nas.run_forever(sock)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
