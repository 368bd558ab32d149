"""Provider login state: ``$HERMES_HOME/auth.json``, and the refresh-aware Nous access token.

File format (mode 0600, every write atomic)::

    {"providers": {"nous": {"access_token": "...",
                            "refresh_token": "...",
                            "expires_at": "2026-03-02T13:00:00+00:00"}}}

``expires_at`` is ISO 8601 with an offset, like every time we store; it may be
absent or null when the portal did not say, and such a token is used until a
server rejects it (the NAS client then forces a refresh).

Refreshing is the OAuth2 refresh-token grant (RFC 6749 section 6): a form POST
of ``grant_type=refresh_token&refresh_token=...`` to
``{cron.chronos.portal_url}/api/oauth/token`` (``TOKEN_PATH``). The answer is
the usual token response: ``access_token``, optionally a rotated
``refresh_token`` (the old one is kept when none comes back) and
``expires_in`` seconds (or an absolute ``expires_at``).

A refresh happens under a cross-process lock (``.auth.lock`` beside the file):
the file is re-read once the lock is held, so when several threads or processes
find the token expired at once, only the first refreshes and the others use its
result. Nothing here ever prints or logs a token.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import httpx

from .clock import Clock, SystemClock
from .config import Config, cfg_get, load_config
from .errors import AuthError, LockTimeoutError
from .lock import FileLock, atomic_write
from .paths import HomePaths, PathLike
from .timeutil import parse_iso, to_iso

#: The provider name under ``providers`` for the Nous portal login.
NOUS = "nous"
#: Where the refresh-token grant is posted, relative to ``cron.chronos.portal_url``.
TOKEN_PATH = "/api/oauth/token"
#: A token this close to its expiry counts as expired, so it does not die in flight.
DEFAULT_SKEW_SECONDS = 60.0
#: Bound on the refresh request (connect, read, write and pool each).
DEFAULT_REFRESH_TIMEOUT = 10.0
#: Bound on waiting for another process that is refreshing at the same time.
LOCK_TIMEOUT = 30.0

# One in-process lock per auth file: threads of one process queue here instead of
# polling the file lock against each other.
_thread_locks: Dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


def _lock_path(paths: HomePaths) -> Path:
    return paths.home / ".auth.lock"


def _thread_lock(path: Path) -> threading.Lock:
    key = os.path.abspath(str(path))
    with _thread_locks_guard:
        lock = _thread_locks.get(key)
        if lock is None:
            lock = _thread_locks[key] = threading.Lock()
        return lock


def _read_auth_file(path: Path) -> Dict[str, Any]:
    """The whole file as a dict; ``{}`` when absent; ``AuthError`` naming the file otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise AuthError(f"{path}: cannot read auth state: {exc}") from exc
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise AuthError(f"{path}: corrupt auth state (not valid JSON: {exc})") from exc
    if not isinstance(data, dict):
        raise AuthError(f"{path}: corrupt auth state (the top level must be an object)")
    providers = data.get("providers", {})
    if not isinstance(providers, dict):
        raise AuthError(f"{path}: corrupt auth state ('providers' must be an object)")
    for name, state in providers.items():
        if not isinstance(state, dict):
            raise AuthError(f"{path}: corrupt auth state (providers.{name} must be an object)")
    return data


def get_provider_auth_state(name: str, home: Optional[PathLike] = None) -> Optional[Dict[str, Any]]:
    """Return the stored login state of provider ``name`` (e.g. ``"nous"``), or None.

    Reads ``auth.json`` only: no network, no refresh. A missing file or a
    provider that never logged in gives None; an unreadable or corrupt file
    raises ``AuthError`` naming the file.
    """
    path = HomePaths.at(home).auth
    state = _read_auth_file(path).get("providers", {}).get(name)
    return dict(state) if state is not None else None


def save_provider_auth_state(
    name: str, state: Mapping[str, Any], home: Optional[PathLike] = None
) -> None:
    """Store ``state`` as the login state of provider ``name``, atomically, mode 0600.

    Other providers and any other top-level keys in the file are kept. Takes the
    auth lock; do not call it while holding that lock (use ``_write_state``).
    """
    paths = HomePaths.at(home)
    with _auth_lock(paths):
        _write_state(paths, name, state)


def _write_state(paths: HomePaths, name: str, state: Mapping[str, Any]) -> None:
    """Read-modify-write ``auth.json`` (caller holds the auth lock)."""
    data = _read_auth_file(paths.auth)
    providers = data.setdefault("providers", {})
    providers[name] = dict(state)
    payload = (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8")
    paths.home.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write(paths.auth, payload, mode=0o600)
    except OSError as exc:
        raise AuthError(f"{paths.auth}: cannot write auth state: {exc}") from exc


class _auth_lock:
    """The in-process lock, then the cross-process file lock, both bounded."""

    def __init__(self, paths: HomePaths) -> None:
        self._thread_lock = _thread_lock(paths.auth)
        self._file_lock = FileLock(_lock_path(paths), timeout=LOCK_TIMEOUT)

    def __enter__(self) -> _auth_lock:
        if not self._thread_lock.acquire(timeout=LOCK_TIMEOUT):
            raise AuthError(
                f"{self._file_lock.path}: another thread has been refreshing the token "
                f"for more than {LOCK_TIMEOUT:g} s"
            )
        try:
            self._file_lock.acquire()
        except LockTimeoutError as exc:
            self._thread_lock.release()
            raise AuthError(str(exc)) from exc
        except BaseException:
            self._thread_lock.release()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self._file_lock.release()
        finally:
            self._thread_lock.release()


def _expires_at(state: Mapping[str, Any], path: Path) -> Optional[datetime]:
    value = state.get("expires_at")
    if value in (None, ""):
        return None
    try:
        return parse_iso(value)
    except ValueError as exc:
        raise AuthError(
            f"{path}: providers.nous.expires_at {value!r} is not an ISO 8601 time with offset"
        ) from exc


def _is_fresh(state: Mapping[str, Any], path: Path, now: datetime, skew: float) -> bool:
    """True when the stored access token can be used now (not within ``skew`` of expiry)."""
    if not state.get("access_token"):
        return False
    expires = _expires_at(state, path)
    return expires is None or now + timedelta(seconds=skew) < expires


def token_endpoint(portal_url: str) -> str:
    """The refresh endpoint for ``portal_url``."""
    return portal_url.rstrip("/") + TOKEN_PATH


def resolve_nous_access_token(
    home: Optional[PathLike] = None,
    *,
    config: Optional[Config] = None,
    client: Optional[httpx.Client] = None,
    force_refresh: bool = False,
    clock: Optional[Clock] = None,
    skew: float = DEFAULT_SKEW_SECONDS,
    timeout: float = DEFAULT_REFRESH_TIMEOUT,
) -> str:
    """Return a usable Nous access token, refreshing it when needed.

    The stored token is returned as is while it is more than ``skew`` seconds
    from ``expires_at``. Otherwise, or with ``force_refresh`` (a server just
    answered 401), the refresh-token grant is posted to ``TOKEN_PATH`` under
    ``cron.chronos.portal_url`` and the new tokens are saved atomically (mode
    0600) before the new access token is returned. When another thread or
    process refreshed while this one waited for the lock, its token is used and
    no second refresh is made.

    :param home: the home folder (default ``$HERMES_HOME``).
    :param config: the loaded config (read from ``home`` only when a refresh is needed).
    :param client: an ``httpx.Client`` for the refresh (tests inject a mock transport).
    :param force_refresh: refresh even though the stored token looks valid.
    :param clock: the clock used to judge expiry (default: the system clock).
    :raises AuthError: no stored login, no refresh token, no portal URL, or the
        refresh failed (the message says which, never the token).
    """
    paths = HomePaths.at(home)
    now = (clock or SystemClock()).now()
    state = get_provider_auth_state(NOUS, paths.home)
    if not state or not state.get("access_token"):
        raise AuthError(f"{paths.auth}: no Nous login (providers.nous.access_token is missing)")
    if not force_refresh and _is_fresh(state, paths.auth, now, skew):
        return str(state["access_token"])
    seen = state.get("access_token")

    with _auth_lock(paths):
        # Re-read under the lock: someone may have refreshed while we waited.
        state = get_provider_auth_state(NOUS, paths.home) or {}
        current = state.get("access_token")
        if current and _is_fresh(state, paths.auth, now, skew):
            if not force_refresh or current != seen:
                return str(current)
        if config is None:
            config = load_config(paths.home)
        new_state = _refresh(paths, state, config, client, now, timeout)
        _write_state(paths, NOUS, new_state)
        return str(new_state["access_token"])


def _refresh(
    paths: HomePaths,
    state: Mapping[str, Any],
    config: Config,
    client: Optional[httpx.Client],
    now: datetime,
    timeout: float,
) -> Dict[str, Any]:
    """Post the refresh-token grant and return the state to store."""
    refresh_token = state.get("refresh_token")
    if not refresh_token:
        raise AuthError(
            f"{paths.auth}: the Nous access token expired and no refresh_token is stored; "
            "log in again"
        )
    portal_url = str(cfg_get(config, "cron", "chronos", "portal_url", default="") or "")
    if not portal_url:
        raise AuthError("cannot refresh the Nous access token: cron.chronos.portal_url is not set")
    url = token_endpoint(portal_url)
    form = {"grant_type": "refresh_token", "refresh_token": str(refresh_token)}
    try:
        if client is not None:
            response = client.post(url, data=form, timeout=timeout)
        else:
            with httpx.Client(timeout=timeout) as own:
                response = own.post(url, data=form)
    except httpx.HTTPError as exc:
        raise AuthError(
            f"Nous token refresh failed: POST {url}: {type(exc).__name__}: {exc}"
        ) from exc
    body = _json_or_none(response)
    if response.status_code != 200:
        detail = ""
        if isinstance(body, dict) and body.get("error"):
            detail = f": {body.get('error')}"
            if body.get("error_description"):
                detail += f" ({body.get('error_description')})"
        raise AuthError(
            f"Nous token refresh failed: POST {url} answered HTTP {response.status_code}"
            f"{detail}; log in again if this persists"
        )
    if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
        raise AuthError(f"Nous token refresh failed: POST {url} gave no access_token")
    access = body["access_token"]
    if not access:
        raise AuthError(f"Nous token refresh failed: POST {url} gave an empty access_token")
    new_refresh = body.get("refresh_token")
    new_state: Dict[str, Any] = dict(state)
    new_state["access_token"] = access
    new_state["refresh_token"] = (
        new_refresh if isinstance(new_refresh, str) and new_refresh else (refresh_token)
    )
    new_state["expires_at"] = _new_expiry(body, now, url)
    return new_state


def _new_expiry(body: Mapping[str, Any], now: datetime, url: str) -> Optional[str]:
    expires_in = body.get("expires_in")
    if isinstance(expires_in, (int, float)) and not isinstance(expires_in, bool):
        return to_iso(now + timedelta(seconds=float(expires_in)))
    expires_at = body.get("expires_at")
    if isinstance(expires_at, str) and expires_at:
        try:
            return to_iso(parse_iso(expires_at))
        except ValueError as exc:
            raise AuthError(
                f"Nous token refresh failed: POST {url} gave a bad expires_at {expires_at!r}"
            ) from exc
    return None


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


__all__ = [
    "NOUS",
    "TOKEN_PATH",
    "get_provider_auth_state",
    "resolve_nous_access_token",
    "save_provider_auth_state",
    "token_endpoint",
]
