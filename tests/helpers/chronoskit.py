"""Helpers for the Chronos, NAS client, auth, fire-token and webhook tests."""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import httpx
import jwt
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa

from hermes_cron.clock import Clock
from hermes_cron.context import CronContext
from hermes_cron.testing.fixtures import wait_for as _wait_for

PORTAL = "https://nas.test"
CALLBACK = "https://agent.test"
AUDIENCE = "agent-1234"
JWKS_URL = "https://nas.test/.well-known/jwks.json"
ACCESS_TOKEN = "access-1"
REFRESH_TOKEN = "refresh-1"


def chronos_config(**overrides: Any) -> Dict[str, Any]:
    chronos_section = {
        "portal_url": PORTAL,
        "callback_url": CALLBACK,
        "expected_audience": AUDIENCE,
        "nas_jwks_url": JWKS_URL,
        "timeout": 2.0,
        "retries": 2,
        "backoff": 0,
    }
    chronos_section.update(overrides)
    return {"cron": {"provider": "chronos", "chronos": chronos_section}}


def write_config(home: Path, config: Dict[str, Any]) -> None:
    (home / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")


def write_auth(
    home: Path,
    access_token: Optional[str] = ACCESS_TOKEN,
    refresh_token: Optional[str] = REFRESH_TOKEN,
    expires_in: Optional[float] = 3600,
) -> Path:
    state: Dict[str, Any] = {}
    if access_token is not None:
        state["access_token"] = access_token
    if refresh_token is not None:
        state["refresh_token"] = refresh_token
    if expires_in is not None:
        state["expires_at"] = (
            datetime.now(timezone.utc) + timedelta(seconds=expires_in)
        ).isoformat()
    path = home / "auth.json"
    path.write_text(json.dumps({"providers": {"nous": state}}), encoding="utf-8")
    os.chmod(path, 0o600)
    return path


def make_ctx(
    home: Path,
    clock: Clock,
    config: Dict[str, Any],
    *,
    listeners: bool = True,
    extra_plugins: Optional[List[Any]] = None,
) -> CronContext:
    """The context of a real ``CronService`` on ``home`` with Chronos active.

    ``listeners=False`` builds a runtime without ``ctx.claim_listeners`` (Chronos
    must then arm after the run).
    """
    from hermes_cron.config import DEFAULTS, deep_merge
    from hermes_cron.service import CronService

    service = CronService.from_home(
        home, clock=clock, config=deep_merge(DEFAULTS, config), plugins=extra_plugins or ()
    )
    assert service.provider_name == "chronos", service.scheduler.fallback_reason
    ctx = service.ctx
    if not listeners:
        ctx.claim_listeners = None  # type: ignore[assignment]
    return ctx


def nas_calls(httpx_mock: Any) -> List[tuple]:
    """``(method, path, json body or None)`` of every request made to NAS, in order."""
    calls = []
    for request in httpx_mock.get_requests():
        body = json.loads(request.content) if request.content else None
        calls.append((request.method, request.url.path, body))
    return calls


def mock_nas(
    httpx_mock: Any,
    *,
    armed: Optional[List[Dict[str, str]]] = None,
    on_provision: Optional[Callable[[httpx.Request], None]] = None,
) -> None:
    """Answer list / provision / cancel like NAS would, any number of times (all optional)."""

    def provision(request: httpx.Request) -> httpx.Response:
        if on_provision is not None:
            on_provision(request)
        body = json.loads(request.content)
        return httpx.Response(200, json={"schedule_id": f"s-{body['job_id']}"})

    httpx_mock.add_response(
        method="GET",
        url=f"{PORTAL}/api/agent-cron/list",
        json={"armed": armed or []},
        is_reusable=True,
        is_optional=True,
    )
    httpx_mock.add_callback(
        provision,
        method="POST",
        url=f"{PORTAL}/api/agent-cron/provision",
        is_reusable=True,
        is_optional=True,
    )
    httpx_mock.add_response(
        method="POST",
        url=f"{PORTAL}/api/agent-cron/cancel",
        json={"ok": True},
        is_reusable=True,
        is_optional=True,
    )


# -- keys and tokens --------------------------------------------------------------


@functools.cache
def rsa_key(n: int = 0) -> rsa.RSAPrivateKey:
    """A 2048-bit RSA key, made once per process for each ``n``."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(key: rsa.RSAPrivateKey, kid: str, **extra: Any) -> Dict[str, Any]:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": kid, "use": "sig"})
    jwk.update(extra)
    return jwk


def fire_claims(**overrides: Any) -> Dict[str, Any]:
    now = int(time.time())
    claims: Dict[str, Any] = {
        "iss": PORTAL,
        "aud": AUDIENCE,
        "purpose": "cron_fire",
        "iat": now,
        "nbf": now,
        "exp": now + 60,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def mint(key: Any, kid: str = "k1", alg: str = "RS256", **overrides: Any) -> str:
    return jwt.encode(fire_claims(**overrides), key, algorithm=alg, headers={"kid": kid})


def python() -> str:
    return sys.executable


class ThreadedServer:
    """Serve an ASGI app with uvicorn on a free loopback port, in a thread."""

    def __init__(self, app: Any) -> None:
        import socket

        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off", ws="none")
        self.server = uvicorn.Server(config)
        import threading

        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until truthy; fail after ``timeout`` seconds."""
    return _wait_for(predicate, timeout, 0.02, what=what)
