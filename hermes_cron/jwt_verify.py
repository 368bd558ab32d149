"""Verifying the fire tokens NAS sends with each ``POST /api/cron/fire``.

The webhook takes any object with a ``verify(token) -> claims`` method
(``FireTokenVerifier``), so an embedding agent can plug in its own. The default,
``JWKSVerifier``, checks a JWT against NAS's published JSON Web Key Set:

* the JWKS URL is https, or http on a loopback address (local development);
  redirects are not followed, so a key set cannot be served from elsewhere;
* the key set is cached; a token whose ``kid`` is not in the cache triggers one
  refetch (key rotation), rate-limited so a stream of made-up ``kid`` values
  cannot turn the webhook into a JWKS hammer; the cache is also refreshed
  after ``cache_ttl`` seconds, keeping the old keys if that refetch fails;
* only asymmetric algorithms are accepted (RS*, PS*, ES*, EdDSA) and only with a
  key of the matching type, so ``alg: none`` and HS256 signed with the public
  key (algorithm confusion) are rejected; symmetric (``oct``) keys in the set
  are ignored;
* claims: signature, ``aud`` equals the expected audience, ``iss`` equals the
  portal URL (a trailing ``/`` is ignored), ``exp`` required and ``nbf``
  honoured with ``leeway`` seconds (30 by default), ``purpose == "cron_fire"``.

Any failure raises ``InvalidFireToken`` (the webhook answers 401), except an
unreachable key set with no cached keys, which raises ``FireTokenUnavailable``
(the webhook answers 503 so NAS retries later).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from typing import (
    Any,
    Dict,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Protocol,
    Tuple,
    runtime_checkable,
)
from urllib.parse import urlsplit

import httpx
import jwt

from .config import Config, cfg_get
from .errors import AuthError, ConfigError

#: What a fire token's ``purpose`` claim must say.
FIRE_PURPOSE = "cron_fire"
#: Signature algorithms accepted by default: asymmetric only.
ASYMMETRIC_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
# Which JWK key type each algorithm family needs; a key of another type never verifies.
_KTY_FOR_ALG = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}


log = logging.getLogger(__name__)


class _Key(NamedTuple):
    kid: Optional[str]
    alg: Optional[str]  # the JWK's own "alg", when it names one
    kty: str
    jwk: jwt.PyJWK


class InvalidFireToken(AuthError):
    """The fire token is missing, malformed, forged, expired or not meant for us."""


class FireTokenUnavailable(AuthError):
    """The token cannot be checked right now (the key set is unreachable and not cached)."""


@runtime_checkable
class FireTokenVerifier(Protocol):
    """What the webhook needs to authenticate a fire."""

    def verify(self, token: str) -> Mapping[str, Any]:
        """Return the token's claims, or raise (``InvalidFireToken`` preferred).

        Any exception is a rejection: the webhook answers 401 and runs nothing.
        """
        ...


def is_loopback_host(host: Optional[str]) -> bool:
    """True for ``localhost`` and loopback IP literals (127.0.0.0/8, ::1)."""
    if not host:
        return False
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_jwks_url(url: str) -> str:
    """Return ``url`` if it is https, or http on a loopback address; else ``ConfigError``."""
    parts = urlsplit(url or "")
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and is_loopback_host(parts.hostname):
        return url
    raise ConfigError(
        f"cron.chronos.nas_jwks_url must be an https URL (or http on a loopback address "
        f"for local development), not {url!r}"
    )


class JWKSVerifier:
    """Verify fire tokens against a JWKS fetched over https (or loopback http).

    :param jwks_url: NAS's key set (``cron.chronos.nas_jwks_url``).
    :param issuer: the expected ``iss`` (``cron.chronos.portal_url``).
    :param audience: the expected ``aud`` (``cron.chronos.expected_audience``).
    :param leeway: seconds of clock skew tolerated on ``exp``/``nbf``.
    :param algorithms: accepted algorithms; symmetric ones are refused.
    :param cache_ttl: seconds before the cached key set is refreshed.
    :param timeout: bound on one JWKS fetch.
    :param transport: an httpx transport (tests inject ``httpx.MockTransport``).
    :param refetch_burst: unknown-``kid`` refetches allowed at once; one more is
        earned every ``refetch_interval`` seconds.
    """

    def __init__(
        self,
        jwks_url: str,
        issuer: str,
        audience: str,
        leeway: float = 30,
        *,
        algorithms: Tuple[str, ...] = ASYMMETRIC_ALGORITHMS,
        cache_ttl: float = 3600.0,
        timeout: float = 5.0,
        transport: Optional[httpx.BaseTransport] = None,
        refetch_burst: int = 5,
        refetch_interval: float = 10.0,
        purpose: str = FIRE_PURPOSE,
    ) -> None:
        self.jwks_url = check_jwks_url(jwks_url)
        if not issuer:
            raise ConfigError("the fire-token verifier needs an issuer (cron.chronos.portal_url)")
        if not audience:
            raise ConfigError(
                "the fire-token verifier needs an audience (cron.chronos.expected_audience)"
            )
        bad = [alg for alg in algorithms if alg not in ASYMMETRIC_ALGORITHMS]
        if bad:
            raise ConfigError(f"fire tokens must use asymmetric algorithms; refused: {bad}")
        self.issuer = issuer
        self.audience = audience
        self.leeway = float(leeway)
        self.algorithms = tuple(algorithms)
        self.cache_ttl = float(cache_ttl)
        self.purpose = purpose
        self._client = httpx.Client(timeout=timeout, follow_redirects=False, transport=transport)
        self._lock = threading.Lock()
        self._keys: List[_Key] = []
        self._fetched_at: Optional[float] = None
        self._refetch_burst = max(0, int(refetch_burst))
        self._refetch_interval = float(refetch_interval)
        self._refetch_tokens = float(self._refetch_burst)
        self._refetch_stamp = time.monotonic()
        #: How many times the key set was fetched (for tests and the bench).
        self.fetch_count = 0

    @classmethod
    def from_config(cls, config: Config, **kwargs: Any) -> JWKSVerifier:
        """Build from ``cron.chronos.{nas_jwks_url, portal_url, expected_audience}``."""
        chronos = cfg_get(config, "cron", "chronos", default={}) or {}
        missing = [
            f"cron.chronos.{key}"
            for key in ("nas_jwks_url", "portal_url", "expected_audience")
            if not chronos.get(key)
        ]
        if missing:
            raise ConfigError(f"cannot verify fire tokens: {', '.join(missing)} not set")
        return cls(
            str(chronos["nas_jwks_url"]),
            issuer=str(chronos["portal_url"]),
            audience=str(chronos["expected_audience"]),
            **kwargs,
        )

    def close(self) -> None:
        self._client.close()

    # -- key set ---------------------------------------------------------------

    def _fetch(self) -> List[_Key]:
        """Download and parse the key set; raise ``FireTokenUnavailable`` on failure."""
        self.fetch_count += 1
        try:
            response = self._client.get(self.jwks_url)
        except httpx.HTTPError as exc:
            raise FireTokenUnavailable(
                f"cannot fetch the NAS key set {self.jwks_url}: {type(exc).__name__}: {exc}"
            ) from exc
        if response.status_code != 200:
            raise FireTokenUnavailable(
                f"cannot fetch the NAS key set {self.jwks_url}: HTTP {response.status_code}"
            )
        try:
            document = response.json()
        except ValueError as exc:
            raise FireTokenUnavailable(f"the NAS key set {self.jwks_url} is not JSON") from exc
        raw_keys = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(raw_keys, list):
            raise FireTokenUnavailable(f"the NAS key set {self.jwks_url} has no 'keys' list")
        keys: List[_Key] = []
        for raw in raw_keys:
            if not isinstance(raw, dict) or raw.get("kty") not in ("RSA", "EC", "OKP"):
                continue  # symmetric or unknown key types are never trusted
            if raw.get("use", "sig") != "sig":
                continue
            try:
                keys.append(_Key(raw.get("kid"), raw.get("alg"), raw["kty"], jwt.PyJWK(raw)))
            except (jwt.PyJWTError, ValueError, TypeError, KeyError):
                continue  # an unusable key must not hide the good ones
        return keys

    def _refresh_keys(self, *, reason: str) -> None:
        """Refetch the key set (caller holds the lock); keep old keys if it fails."""
        log.debug("fetching the NAS key set %s (%s)", self.jwks_url, reason)
        try:
            keys = self._fetch()
        except FireTokenUnavailable as exc:
            if not self._keys:
                raise
            log.warning("%s; using the cached keys", exc)
            return  # serve from the stale cache rather than refuse every fire
        self._keys = keys
        self._fetched_at = time.monotonic()

    def _may_refetch_for_unknown_kid(self) -> bool:
        now = time.monotonic()
        if self._refetch_interval > 0:
            earned = (now - self._refetch_stamp) / self._refetch_interval
            self._refetch_tokens = min(float(self._refetch_burst), self._refetch_tokens + earned)
        self._refetch_stamp = now
        if self._refetch_tokens >= 1:
            self._refetch_tokens -= 1
            return True
        return False

    def _candidates(self, kid: Optional[str]) -> List[_Key]:
        if kid is None:
            return list(self._keys)
        return [key for key in self._keys if key.kid == kid]

    def _keys_for(self, kid: Optional[str]) -> List[_Key]:
        with self._lock:
            if self._fetched_at is None:
                self._refresh_keys(reason="first use")
            elif time.monotonic() - self._fetched_at > self.cache_ttl:
                self._refresh_keys(reason="cache expired")
            found = self._candidates(kid)
            if not found and kid is not None and self._may_refetch_for_unknown_kid():
                self._refresh_keys(reason=f"unknown kid {kid!r}")
                found = self._candidates(kid)
            return found

    # -- verification ------------------------------------------------------------

    def verify(self, token: str) -> Dict[str, Any]:
        """Return the claims of a valid fire token; raise ``InvalidFireToken`` otherwise."""
        if not isinstance(token, str) or not token:
            raise InvalidFireToken("missing fire token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidFireToken(f"malformed fire token: {exc}") from exc
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise InvalidFireToken(f"fire token algorithm {alg!r} is not accepted")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise InvalidFireToken("fire token has a non-string kid")
        want_kty = _KTY_FOR_ALG.get(str(alg)[:2])
        # A key only verifies algorithms of its own type, and only the one it names.
        keys = [
            key.jwk
            for key in self._keys_for(kid)
            if key.kty == want_kty and (key.alg is None or key.alg == alg)
        ]
        if not keys:
            raise InvalidFireToken(f"no NAS key matches the fire token (kid {kid!r}, alg {alg!r})")
        last_error: Optional[Exception] = None
        for key in keys:
            try:
                claims = jwt.decode(
                    token,
                    key=key.key,
                    algorithms=[str(alg)],
                    audience=self.audience,
                    leeway=self.leeway,
                    options={"require": ["exp", "iss", "aud"]},
                )
                break
            except jwt.InvalidSignatureError as exc:
                last_error = exc  # try the next key without a kid; fail below
            except jwt.PyJWTError as exc:
                raise InvalidFireToken(f"fire token rejected: {exc}") from exc
        else:
            raise InvalidFireToken(f"fire token rejected: {last_error}")
        issuer = claims.get("iss")
        if not isinstance(issuer, str) or issuer.rstrip("/") != self.issuer.rstrip("/"):
            raise InvalidFireToken(f"fire token rejected: wrong issuer {issuer!r}")
        if claims.get("purpose") != self.purpose:
            raise InvalidFireToken(
                f"fire token rejected: purpose {claims.get('purpose')!r} is not {self.purpose!r}"
            )
        return claims


class _Unconfigured:
    """The verifier used when the config cannot build one: every fire is refused."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def verify(self, token: str) -> Mapping[str, Any]:
        raise InvalidFireToken(self.reason)


def verifier_from_config(config: Config) -> FireTokenVerifier:
    """The default verifier for ``config``; a refusing one (with the reason) if incomplete."""
    try:
        return JWKSVerifier.from_config(config)
    except ConfigError as exc:
        return _Unconfigured(str(exc))


__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "FIRE_PURPOSE",
    "FireTokenUnavailable",
    "FireTokenVerifier",
    "InvalidFireToken",
    "JWKSVerifier",
    "check_jwks_url",
    "is_loopback_host",
    "verifier_from_config",
]
