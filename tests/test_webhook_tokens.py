"""The fire-token verifier (``hermes_cron.jwt_verify``) with real keys and a served JWKS."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any, Dict, List

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from helpers.chronoskit import AUDIENCE, JWKS_URL, PORTAL, fire_claims, mint, public_jwk, rsa_key

from hermes_cron.errors import ConfigError
from hermes_cron.jwt_verify import (
    FireTokenUnavailable,
    FireTokenVerifier,
    InvalidFireToken,
    JWKSVerifier,
    check_jwks_url,
    verifier_from_config,
)
from hermes_cron.testing.nas_standin import NASStandin


class JWKSServer:
    """A JWKS endpoint behind ``httpx.MockTransport``: swap ``keys``; count fetches."""

    def __init__(self, keys: List[Dict[str, Any]]) -> None:
        self.keys = keys
        self.fetches = 0
        self.down = False

    def handler(self, request: httpx.Request) -> httpx.Response:
        assert str(request.url) == JWKS_URL
        self.fetches += 1
        if self.down:
            raise httpx.ConnectError("down", request=request)
        return httpx.Response(200, json={"keys": self.keys})

    def verifier(self, **kwargs: Any) -> JWKSVerifier:
        return JWKSVerifier(
            JWKS_URL, PORTAL, AUDIENCE, transport=httpx.MockTransport(self.handler), **kwargs
        )


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def handmade(header: Dict[str, Any], claims: Dict[str, Any], signature: bytes = b"") -> str:
    head = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    return head + "." + b64(signature)


@pytest.fixture
def server() -> JWKSServer:
    return JWKSServer([public_jwk(rsa_key(0), "k1")])


def test_a_valid_token_gives_its_claims(server: JWKSServer) -> None:
    verifier = server.verifier()
    assert isinstance(verifier, FireTokenVerifier)
    claims = verifier.verify(mint(rsa_key(0), job_id="j1"))
    assert claims["purpose"] == "cron_fire" and claims["job_id"] == "j1"
    # The key set is cached: many tokens, one fetch.
    for _ in range(5):
        verifier.verify(mint(rsa_key(0)))
    assert server.fetches == 1


@pytest.mark.parametrize(
    "overrides, fault",
    [
        ({"aud": "someone-else"}, "(?i)audience"),
        ({"iss": "https://evil.test"}, "issuer"),
        ({"purpose": "login"}, "purpose"),
        ({"purpose": None}, "purpose"),
        ({"exp": -120}, "expired"),
        ({"exp": None}, "exp"),
        ({"nbf": +120}, "not yet valid"),
        ({"aud": None}, "aud"),
    ],
)
def test_bad_claims_are_rejected(server: JWKSServer, overrides: Dict[str, Any], fault: str) -> None:
    # exp / nbf are given relative to now (parameters are built at collection time).
    overrides = {
        k: int(time.time()) + v if k in ("exp", "nbf") and v is not None else v
        for k, v in overrides.items()
    }
    with pytest.raises(InvalidFireToken, match=fault):
        server.verifier().verify(mint(rsa_key(0), **overrides))


def test_leeway_of_30_seconds(server: JWKSServer) -> None:
    now = int(time.time())
    verifier = server.verifier()
    verifier.verify(mint(rsa_key(0), exp=now - 10, nbf=now + 10))
    with pytest.raises(InvalidFireToken):
        verifier.verify(mint(rsa_key(0), exp=now - 45))


def test_issuer_trailing_slash_is_ignored(server: JWKSServer) -> None:
    server.verifier().verify(mint(rsa_key(0), iss=PORTAL + "/"))


def test_forged_signature_is_rejected(server: JWKSServer) -> None:
    with pytest.raises(InvalidFireToken, match="[Ss]ignature"):
        server.verifier().verify(mint(rsa_key(1), kid="k1"))


def test_alg_none_is_rejected(server: JWKSServer) -> None:
    token = handmade({"alg": "none", "typ": "JWT", "kid": "k1"}, fire_claims())
    with pytest.raises(InvalidFireToken, match="'none' is not accepted"):
        server.verifier().verify(token)


def test_hs256_signed_with_the_public_key_is_rejected(server: JWKSServer) -> None:
    # Algorithm confusion: an attacker signs with HMAC using the (public) RSA key.
    pem = (
        rsa_key(0)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": "k1"}
    unsigned = handmade(header, fire_claims()).rsplit(".", 1)[0]
    signature = hmac.new(pem, unsigned.encode(), hashlib.sha256).digest()
    with pytest.raises(InvalidFireToken, match="HS256"):
        server.verifier().verify(unsigned + "." + b64(signature))


def test_a_key_of_another_type_never_verifies(server: JWKSServer) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(InvalidFireToken, match="no NAS key"):
        server.verifier().verify(mint(ec_key, alg="ES256"))


def test_a_jwk_naming_its_algorithm_only_verifies_that_one() -> None:
    server = JWKSServer([public_jwk(rsa_key(0), "k1", alg="RS256")])
    with pytest.raises(InvalidFireToken, match="no NAS key"):
        server.verifier().verify(mint(rsa_key(0), alg="PS256"))
    server.verifier().verify(mint(rsa_key(0), alg="RS256"))


def test_symmetric_keys_in_the_set_are_ignored() -> None:
    secret = {"kty": "oct", "kid": "k1", "k": b64(b"shared-secret-shared-secret-32by")}
    server = JWKSServer([secret])
    token = jwt.encode(
        fire_claims(), b"shared-secret-shared-secret-32by", algorithm="HS256", headers={"kid": "k1"}
    )
    with pytest.raises(InvalidFireToken):
        server.verifier().verify(token)


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "x" * 5000])
def test_malformed_tokens_are_rejected(server: JWKSServer, token: str) -> None:
    with pytest.raises(InvalidFireToken):
        server.verifier().verify(token)


def test_an_unknown_kid_refetches_once(server: JWKSServer) -> None:
    verifier = server.verifier()
    verifier.verify(mint(rsa_key(0)))
    # NAS rotates its key: the new kid is unknown to the cache, one refetch finds it.
    server.keys = [public_jwk(rsa_key(1), "k2")]
    verifier.verify(mint(rsa_key(1), kid="k2"))
    assert server.fetches == 2
    # A kid that is nowhere: one more refetch, then a rejection.
    with pytest.raises(InvalidFireToken, match="no NAS key"):
        verifier.verify(mint(rsa_key(1), kid="k-unknown"))
    assert server.fetches == 3


def test_unknown_kid_refetches_are_rate_limited(server: JWKSServer) -> None:
    verifier = server.verifier(refetch_burst=2, refetch_interval=3600)
    verifier.verify(mint(rsa_key(0)))
    for n in range(10):
        with pytest.raises(InvalidFireToken):
            verifier.verify(mint(rsa_key(0), kid=f"made-up-{n}"))
    assert server.fetches == 1 + 2


def test_an_unreachable_key_set_is_unavailable_not_invalid(server: JWKSServer) -> None:
    server.down = True
    verifier = server.verifier()
    with pytest.raises(FireTokenUnavailable, match="cannot fetch"):
        verifier.verify(mint(rsa_key(0)))
    # Once keys are cached, an outage at refresh time keeps using them.
    server.down = False
    verifier.verify(mint(rsa_key(0)))
    server.down = True
    verifier.cache_ttl = 0
    verifier.verify(mint(rsa_key(0)))


@pytest.mark.parametrize(
    "url, ok",
    [
        ("https://nas.example/.well-known/jwks.json", True),
        ("http://127.0.0.1:8788/jwks.json", True),
        ("http://127.5.6.7/jwks.json", True),
        ("http://localhost:8788/jwks.json", True),
        ("http://[::1]:8788/jwks.json", True),
        ("http://nas.example/jwks.json", False),
        ("http://10.0.0.1/jwks.json", False),
        ("http://127.0.0.1.evil.example/jwks.json", False),
        ("ftp://nas.example/jwks.json", False),
        ("", False),
    ],
)
def test_jwks_url_must_be_https_or_loopback_http(url: str, ok: bool) -> None:
    if ok:
        assert check_jwks_url(url) == url
    else:
        with pytest.raises(ConfigError, match="nas_jwks_url"):
            check_jwks_url(url)


def test_from_config_needs_every_key() -> None:
    config = {"cron": {"chronos": {"nas_jwks_url": JWKS_URL, "portal_url": PORTAL}}}
    with pytest.raises(ConfigError, match="expected_audience"):
        JWKSVerifier.from_config(config)
    refusing = verifier_from_config(config)
    with pytest.raises(InvalidFireToken, match="expected_audience"):
        refusing.verify(mint(rsa_key(0)))
    config["cron"]["chronos"]["expected_audience"] = AUDIENCE
    assert isinstance(verifier_from_config(config), JWKSVerifier)


def test_verifies_against_a_jwks_served_over_loopback_http() -> None:
    with NASStandin(audience=AUDIENCE) as nas:
        verifier = JWKSVerifier(nas.jwks_url, nas.base_url, AUDIENCE)
        try:
            claims = verifier.verify(nas.issue_fire_token("j1", "2026-03-02T12:00:00+00:00"))
            assert claims["job_id"] == "j1" and claims["iss"] == nas.base_url
            with pytest.raises(InvalidFireToken):
                verifier.verify(mint(rsa_key(0), kid=nas.kid, iss=nas.base_url))
        finally:
            verifier.close()
