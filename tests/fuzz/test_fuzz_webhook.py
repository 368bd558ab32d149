"""Fuzz the fire webhook: random Authorization headers, tokens (junk, forged, expired,
for another audience or job, and valid ones), bodies (bytes, JSON, hostile job ids and
times) and sizes, against the real app and the real JWKS verifier.

Promise (SPEC §7): the answer is 202, 400, 401 or 413, never a 500; a rejected request
never fires anything; an accepted one fires exactly once, for a well-formed job id, and
only with a valid token.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Optional, Tuple

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from hermes_cron.jwt_verify import JWKSVerifier
from hermes_cron.timeutil import to_iso
from hermes_cron.webhook import FIRE_PATH, MAX_BODY, create_app

PORTAL = "https://nas.fuzz"
AUDIENCE = "agent-fuzz"
JWKS_URL = "https://nas.fuzz/.well-known/jwks.json"
JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class RecordingRunner:
    """Stands in for the FireRunner: records every accepted fire, runs nothing."""

    def __init__(self) -> None:
        self.fired: List[Tuple[str, Optional[str]]] = []

    def submit(self, job_id: str, fire_at: Optional[str]) -> bool:
        self.fired.append((job_id, fire_at))
        return True

    def wait_idle(self, timeout: float) -> bool:
        return True

    def shutdown(self, timeout: float = 30.0) -> bool:
        return True


class Service:
    class ctx:  # noqa: N801 - the attribute the app reads
        config = {"cron": {"max_workers": 1}}
        provider_name = "chronos"
        store = None

    def fire_due(self, job_id: str, fire_at: str) -> None:  # pragma: no cover - never called
        raise AssertionError("the recording runner never fires")


def _jwks(request: httpx.Request) -> httpx.Response:
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(KEY.public_key()))
    public.update({"kid": "k1", "use": "sig"})
    return httpx.Response(200, json={"keys": [public]})


class Client:
    """Calls the app in process over ``httpx.ASGITransport`` (an exception in the app
    becomes a 500 answer, as under a real server)."""

    def __init__(self, app: Any, runner: RecordingRunner) -> None:
        self.app = app
        self.runner = runner

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://agent") as c:
                response = await c.post(path, **kwargs)
                await response.aread()
                return response

        return asyncio.run(go())


@pytest.fixture(scope="module")
def client() -> Any:
    verifier = JWKSVerifier(JWKS_URL, PORTAL, AUDIENCE, transport=httpx.MockTransport(_jwks))
    runner = RecordingRunner()
    app = create_app(Service(), verifier, fire_runner=runner)  # type: ignore[arg-type]
    yield Client(app, runner)
    verifier.close()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


HOSTILE_IDS = st.sampled_from(
    [
        "job-1",
        "../x",
        "..",
        "a/b",
        "a\\b",
        "x" * 64,
        "x" * 65,
        "",
        " ",
        "job 1",
        "ü",
        "job\x00",
        "%2e%2e%2fx",
        "job-1\n",
        "CON",
        "_",
        "-",
    ]  # fmt: skip
)
IDS = HOSTILE_IDS | st.text(max_size=70)
TIMES = st.sampled_from(
    [
        "2026-03-02T12:00:30+00:00",
        "2026-03-02T12:00:30Z",
        "2026-03-02T12:00:30",
        "9999-12-31T23:59:59-23:59",
        "0001-01-01T00:00:00+14:00",
        "yesterday",
        "",
        "2026-13-01T00:00:00+00:00",
    ]  # fmt: skip
) | st.text(max_size=80)
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
    max_leaves=6,
)


#: Kinds of token, the valid ones repeated so the accepting path is fuzzed too.
TOKEN_KINDS = (
    ["none", "junk", "dots", "expired", "audience", "issuer", "purpose", "other-key"]
    + ["alg-none", "kid", "other-job"]
    + ["valid", "valid-any-job"] * 3
)


@st.composite
def tokens(draw: st.DrawFn, job_id: Any) -> Tuple[Optional[str], bool]:
    """``(token, valid)``: ``valid`` when the token alone should let the fire in."""
    kind = draw(st.sampled_from(TOKEN_KINDS))
    if kind == "none":
        return None, False
    if kind == "junk":
        return draw(st.text(max_size=60)), False
    if kind == "dots":
        parts = draw(st.lists(st.binary(max_size=40), min_size=1, max_size=4))
        return ".".join(_b64(p) for p in parts), False
    now = int(time.time())
    claims: Dict[str, Any] = {
        "iss": PORTAL,
        "aud": AUDIENCE,
        "purpose": "cron_fire",
        "iat": now,
        "nbf": now,
        "exp": now + 60,
    }
    key, headers, valid = KEY, {"kid": "k1"}, True
    if kind == "valid" and isinstance(job_id, str):
        claims["job_id"] = job_id  # the token names the body's job
    elif kind == "expired":
        claims["exp"], valid = now - 3600, False
    elif kind == "audience":
        claims["aud"], valid = "someone-else", False
    elif kind == "issuer":
        claims["iss"], valid = "https://evil.example", False
    elif kind == "purpose":
        claims["purpose"], valid = draw(st.sampled_from(["login", "", None])), False
    elif kind == "other-key":
        key, valid = OTHER_KEY, False
    elif kind == "kid":
        headers, valid = {"kid": draw(st.text(max_size=10))}, False
    elif kind == "other-job":
        claims["job_id"], valid = "someone-elses-job", job_id == "someone-elses-job"
    claims = {k: v for k, v in claims.items() if v is not None}
    if kind == "alg-none":
        head = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
        return f"{head}.{_b64(json.dumps(claims).encode())}.", False
    return jwt.encode(claims, key, algorithm="RS256", headers=headers), valid


@st.composite
def requests(draw: st.DrawFn) -> Dict[str, Any]:
    # Weighted toward well-formed requests, so the accepting path is fuzzed too.
    job_id = draw(st.one_of(st.just("job-1"), st.just("job-1"), IDS, JSONISH))
    token, valid = draw(tokens(job_id))
    scheme = draw(st.sampled_from(["Bearer "] * 6 + ["bearer ", "Bearer  ", "Basic ", "", "Tok "]))
    headers = {}
    if token is not None:
        headers["Authorization"] = scheme + token
        valid = valid and scheme.strip().lower() == "bearer"
    shape = draw(st.sampled_from(["fire"] * 4 + ["fire-no-time", "json", "bytes", "huge"]))
    if shape == "fire":
        fire_at = draw(st.one_of(st.just("2026-03-02T12:00:30+00:00"), TIMES, JSONISH))
        body = json.dumps({"job_id": job_id, "fire_at": fire_at}).encode()
    elif shape == "fire-no-time":
        body = json.dumps(
            {"job_id": job_id, **draw(st.dictionaries(st.text(max_size=5), JSONISH, max_size=2))}
        ).encode()
    elif shape == "json":
        body = json.dumps(draw(JSONISH)).encode()
    elif shape == "bytes":
        body = draw(st.binary(max_size=300))
    else:
        pad = draw(st.integers(MAX_BODY - 40, MAX_BODY + 200))
        body = json.dumps({"job_id": "job-1", "pad": "x" * pad}).encode()
    if draw(st.booleans()):
        headers["Content-Type"] = draw(st.sampled_from(["application/json", "text/plain", "x/y"]))
    return {"headers": headers, "body": body, "valid_token": valid}


@FUZZ
@given(req=requests())
def test_the_webhook_answers_202_400_401_or_413_and_fires_only_when_accepted(
    client: Any, req: Dict[str, Any]
) -> None:
    runner: RecordingRunner = client.runner
    before = len(runner.fired)
    # Header values travel as bytes (any byte but CR and LF, which end a header line).
    headers = {
        k: v.encode("utf-8", "surrogatepass").replace(b"\r", b"").replace(b"\n", b"")
        for k, v in req["headers"].items()
    }
    response = client.post(FIRE_PATH, content=req["body"], headers=headers)
    assert response.status_code in (202, 400, 401, 413), (req, response.status_code, response.text)
    event(f"HTTP {response.status_code}")
    answer = response.json()
    new = runner.fired[before:]
    if response.status_code != 202:
        assert new == [], (req, response.status_code)
        assert isinstance(answer.get("error"), str) and "\n" not in answer["error"]
        return
    # Accepted: one fire, a well-formed id, and only ever with a valid token.
    assert req["valid_token"], req
    assert len(new) == 1
    job_id, fire_at = new[0]
    assert JOB_ID.match(job_id) and answer == {"status": "accepted", "job_id": job_id}
    assert len(req["body"]) <= MAX_BODY
    if fire_at is not None:
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00$", fire_at), fire_at


@FUZZ
@given(
    job_id=st.from_regex(r"\A[A-Za-z0-9_-]{1,64}\Z"),
    when=st.datetimes(
        min_value=datetime(1970, 1, 2),
        max_value=datetime(9998, 12, 1),
        timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=-9, minutes=-30))])
        | st.timezones(),
    ),
    bind_job=st.booleans(),
)
def test_every_well_formed_fire_with_a_valid_token_is_accepted_once(
    client: Any, job_id: str, when: Any, bind_job: bool
) -> None:
    runner: RecordingRunner = client.runner
    now = int(time.time())
    claims = {"iss": PORTAL, "aud": AUDIENCE, "purpose": "cron_fire", "iat": now, "exp": now + 60}
    if bind_job:
        claims["job_id"] = job_id
    token = jwt.encode(claims, KEY, algorithm="RS256", headers={"kid": "k1"})
    before = len(runner.fired)
    response = client.post(
        FIRE_PATH,
        json={"job_id": job_id, "fire_at": when.isoformat()},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 202, response.text
    assert runner.fired[before:] == [(job_id, to_iso(when))]
