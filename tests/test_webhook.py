"""The fire webhook app: every rejection, the 202 path, and that nothing runs when rejected."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
from types import SimpleNamespace
from typing import Any, AsyncIterator, Dict, Iterator, List, Optional, Tuple

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from helpers.chronoskit import AUDIENCE, JWKS_URL, PORTAL, fire_claims, mint, public_jwk, rsa_key
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hermes_cron.errors import JobNotFoundError
from hermes_cron.jwt_verify import JWKSVerifier
from hermes_cron.webhook import MAX_BODY, create_app

FIRE = "/api/cron/fire"
CONFIG = {
    "cron": {
        "max_workers": 2,
        "chronos": {"nas_jwks_url": JWKS_URL, "portal_url": PORTAL, "expected_audience": AUDIENCE},
    }
}


class FakeStore:
    def __init__(self, jobs: Dict[str, Dict[str, Any]]) -> None:
        self.jobs = jobs

    def get(self, job_id: str) -> Dict[str, Any]:
        if job_id not in self.jobs:
            raise JobNotFoundError(job_id)
        return dict(self.jobs[job_id])


class FakeService:
    """Records fires; ``gate`` (when set) holds each fire until released."""

    def __init__(self, jobs: Optional[Dict[str, Dict[str, Any]]] = None) -> None:
        self.ctx = SimpleNamespace(
            config=CONFIG, store=FakeStore(jobs or {}), provider_name="chronos"
        )
        self.fired: List[Tuple[str, str]] = []
        self.gate: Optional[threading.Event] = None
        self.started = threading.Event()

    def fire_due(self, job_id: str, fire_at: str) -> str:
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(30)
        self.fired.append((job_id, fire_at))
        return "won"


class ASGIClient:
    """A synchronous client that calls the app in-process (``httpx.ASGITransport``)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        content = kwargs.get("content")
        if content is not None and not isinstance(content, (bytes, str)):
            chunks = list(content)

            async def stream() -> AsyncIterator[bytes]:
                for chunk in chunks:
                    yield chunk

            kwargs["content"] = stream()

        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://agent") as client:
                response = await client.request(method, url, **kwargs)
                await response.aread()
                return response

        return asyncio.run(go())

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)


class Harness:
    def __init__(self, service: FakeService, verifier: Any = None) -> None:
        self.service = service
        self.jwks_fetches = 0

        def jwks(request: httpx.Request) -> httpx.Response:
            self.jwks_fetches += 1
            return httpx.Response(200, json={"keys": [public_jwk(rsa_key(0), "k1")]})

        self.verifier = verifier or JWKSVerifier(
            JWKS_URL, PORTAL, AUDIENCE, transport=httpx.MockTransport(jwks)
        )
        self.app = create_app(service, self.verifier)
        self.client = ASGIClient(self.app)

    def post(self, body: Any = None, token: Optional[str] = "valid", **kwargs: Any) -> Any:
        headers = dict(kwargs.pop("headers", {}))
        if token == "valid":
            token = mint(rsa_key(0))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if body is not None and "content" not in kwargs:
            kwargs["content"] = body if isinstance(body, (bytes, str)) else json.dumps(body)
            headers.setdefault("Content-Type", "application/json")
        return self.client.post(FIRE, headers=headers, **kwargs)

    def settle(self) -> None:
        assert self.app.state.fire_runner.wait_idle(30)


@pytest.fixture
def web() -> Iterator[Harness]:
    harness = Harness(FakeService({"job-1": {"next_run_at": "2026-03-02T12:00:30+00:00"}}))
    yield harness
    harness.app.state.fire_runner.shutdown(5)
    harness.verifier.close()


GOOD = {"job_id": "job-1", "fire_at": "2026-03-02T12:00:30+00:00"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_with_public_key() -> str:
    pem = (
        rsa_key(0)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
    body = b64(json.dumps(fire_claims()).encode())
    signature = hmac.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(signature)}"


def alg_none() -> str:
    head = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{head}.{b64(json.dumps(fire_claims()).encode())}."


# -- 202 ---------------------------------------------------------------------------------


def test_a_valid_fire_is_accepted_and_runs_in_the_background(web: Harness) -> None:
    web.service.gate = threading.Event()
    began = time.monotonic()
    response = web.post({**GOOD, "fire_at": "2026-03-02T13:00:30+01:00"})
    assert response.status_code == 202
    assert response.json() == {"status": "accepted", "job_id": "job-1"}
    # Answered while the fire is still running.
    assert web.service.started.wait(30) and web.service.fired == []
    assert time.monotonic() - began < 30
    web.service.gate.set()
    web.settle()
    assert web.service.fired == [("job-1", "2026-03-02T12:00:30+00:00")]  # normalized to UTC


def test_a_fire_without_fire_at_uses_the_jobs_next_run(web: Harness) -> None:
    assert web.post({"job_id": "job-1"}).status_code == 202
    assert web.post({"job_id": "job-1", "fire_at": None}).status_code == 202
    assert web.post({"job_id": "no-such-job"}).status_code == 202  # dropped by the worker
    web.settle()
    assert web.service.fired == [("job-1", "2026-03-02T12:00:30+00:00")] * 2


def test_token_claims_must_match_the_body(web: Harness) -> None:
    token = mint(rsa_key(0), job_id="job-2", fire_at=GOOD["fire_at"])
    assert web.post(GOOD, token=token).status_code == 401
    token = mint(rsa_key(0), job_id="job-1", fire_at="2026-03-02T12:05:00+00:00")
    assert web.post(GOOD, token=token).status_code == 401
    token = mint(rsa_key(0), job_id="job-1", fire_at="2026-03-02T12:00:30Z")
    assert web.post(GOOD, token=token).status_code == 202
    web.settle()
    assert web.service.fired == [("job-1", GOOD["fire_at"])]


def test_healthz(web: Harness) -> None:
    response = web.client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "provider": "chronos"}


# -- 401 ---------------------------------------------------------------------------------


REJECTED_TOKENS = {
    "missing": None,
    "empty": "",
    "garbage": "not-a-jwt",
    "forged": lambda: mint(rsa_key(1)),
    "expired": lambda: mint(rsa_key(0), exp=int(time.time()) - 120),
    "not yet valid": lambda: mint(rsa_key(0), nbf=int(time.time()) + 120),
    "wrong audience": lambda: mint(rsa_key(0), aud="another-agent"),
    "wrong issuer": lambda: mint(rsa_key(0), iss="https://evil.test"),
    "wrong purpose": lambda: mint(rsa_key(0), purpose="login"),
    "no purpose": lambda: mint(rsa_key(0), purpose=None),
    "alg none": alg_none,
    "HS256 confusion": hs256_with_public_key,
    "unknown kid": lambda: mint(rsa_key(1), kid="k9"),
}


@pytest.mark.parametrize("case", sorted(REJECTED_TOKENS))
def test_bad_tokens_are_401_and_nothing_runs(web: Harness, case: str) -> None:
    made = REJECTED_TOKENS[case]
    token = made() if callable(made) else made
    response = web.post(GOOD, token=token)
    assert response.status_code == 401
    assert "error" in response.json()
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    web.settle()
    assert web.service.fired == [] and not web.service.started.is_set()


@pytest.mark.parametrize("header", ["Basic dXNlcjpwdw==", "Bearer", "bearer  ", "Token abc"])
def test_other_authorization_schemes_are_401(web: Harness, header: str) -> None:
    response = web.post(GOOD, token=None, headers={"Authorization": header})
    assert response.status_code == 401
    assert web.service.fired == []


def test_authentication_comes_before_the_body(web: Harness) -> None:
    assert web.post(b"{not json", token=None).status_code == 401
    assert web.post(b"x" * (MAX_BODY + 10), token="forged").status_code == 401


# -- 400 / 413 -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"",
        b"\xff\xfe",
        b"[1, 2]",
        b'"job-1"',
        b"null",
        b"{}",
        b'{"fire_at": "2026-03-02T12:00:30+00:00"}',
        b'{"job_id": 7}',
        b'{"job_id": ""}',
        b'{"job_id": "has space"}',
        b'{"job_id": "../etc/passwd"}',
        b'{"job_id": "' + b"a" * 65 + b'"}',
        b'{"job_id": "job-1", "fire_at": "2026-03-02T12:00:30"}',
        b'{"job_id": "job-1", "fire_at": "tomorrow"}',
        b'{"job_id": "job-1", "fire_at": 1767225600}',
        b'{"job_id": "job-1", "fire_at": "9999-12-31T23:59:59-23:59"}',
        b"[" * 50000 + b"]" * 50000,
    ],
)
def test_malformed_bodies_are_400_and_nothing_runs(web: Harness, body: bytes) -> None:
    if len(body) > MAX_BODY:
        body = b"[" * 5000 + b"]" * 5000  # deep nesting under the size limit
    response = web.post(body)
    assert response.status_code == 400, response.text
    assert "error" in response.json()
    web.settle()
    assert web.service.fired == []


def test_a_64_character_job_id_is_fine(web: Harness) -> None:
    assert web.post({"job_id": "a" * 64}).status_code == 202


def test_a_large_body_is_413(web: Harness) -> None:
    big = json.dumps({**GOOD, "padding": "x" * MAX_BODY})
    assert web.post(big).status_code == 413


def test_a_large_streamed_body_without_length_is_413(web: Harness) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"job_id": "job-1", "padding": "'
        for _ in range(10):
            yield b"x" * 4096
        yield b'"}'

    response = web.post(None, content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    web.settle()
    assert web.service.fired == []


def test_a_lying_content_length_is_caught() -> None:
    harness = Harness(FakeService())
    app = harness.app
    token = mint(rsa_key(0))
    messages = [
        {"type": "http.request", "body": b"x" * 9000, "more_body": True},
        {"type": "http.request", "body": b"x" * 9000, "more_body": False},
    ]
    sent: List[Dict[str, Any]] = []

    async def receive() -> Dict[str, Any]:
        return messages.pop(0)

    async def send(message: Dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": FIRE,
        "raw_path": FIRE.encode(),
        "query_string": b"",
        "root_path": "",
        "scheme": "http",
        "server": ("testserver", 80),
        "headers": [
            (b"authorization", f"Bearer {token}".encode()),
            (b"content-length", b"10"),
        ],
    }
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 413
    harness.verifier.close()


def test_a_bad_content_length_is_400(web: Harness) -> None:
    headers = {"Authorization": f"Bearer {mint(rsa_key(0))}", "Content-Length": "ten"}
    response = web.client.post(FIRE, content=json.dumps(GOOD), headers=headers)
    assert response.status_code == 400


def test_get_on_the_fire_path_is_405(web: Harness) -> None:
    assert web.client.get(FIRE).status_code == 405


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda children: (
                st.lists(children, max_size=4)
                | st.dictionaries(
                    st.sampled_from(["job_id", "fire_at", "x"]) | st.text(max_size=5),
                    children,
                    max_size=4,
                )
            ),
            max_leaves=10,
        ).map(lambda value: json.dumps(value).encode()),
    )
)
def test_no_body_ever_gives_a_500(web: Harness, body: bytes) -> None:
    response = web.post(body)
    assert response.status_code in (202, 400), (body, response.status_code, response.text)


# -- configuration -------------------------------------------------------------------------


def test_without_verifier_config_every_fire_is_refused() -> None:
    service = FakeService()
    service.ctx.config = {"cron": {"chronos": {"portal_url": PORTAL}}}
    client = ASGIClient(create_app(service))
    response = client.post(FIRE, json=GOOD, headers={"Authorization": f"Bearer {mint(rsa_key(0))}"})
    assert response.status_code == 401
    assert service.fired == []


def test_an_unreachable_key_set_is_503(web: Harness) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("down", request=request)

    verifier = JWKSVerifier(JWKS_URL, PORTAL, AUDIENCE, transport=httpx.MockTransport(down))
    harness = Harness(FakeService(), verifier)
    response = harness.post(GOOD)
    assert response.status_code == 503
    assert harness.service.fired == []
    verifier.close()


def test_a_custom_verifier_is_used() -> None:
    class OnlyOpenSesame:
        def verify(self, token: str) -> Dict[str, Any]:
            if token != "open-sesame":
                raise ValueError("no")
            return {}

    harness = Harness(FakeService(), OnlyOpenSesame())
    assert harness.post(GOOD, token="open-sesame").status_code == 202
    assert harness.post(GOOD, token=mint(rsa_key(0))).status_code == 401
    harness.settle()
    assert harness.service.fired == [("job-1", GOOD["fire_at"])]
