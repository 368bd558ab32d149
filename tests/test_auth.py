"""auth.json and the refresh-aware Nous access token."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Dict, List
from urllib.parse import parse_qs

import httpx
import pytest

from hermes_cron.auth import (
    get_provider_auth_state,
    resolve_nous_access_token,
    save_provider_auth_state,
)
from hermes_cron.errors import AuthError
from hermes_cron.timeutil import parse_iso

PORTAL = "https://portal.test"
TOKEN_URL = "https://portal.test/api/oauth/token"
CONFIG = {"cron": {"chronos": {"portal_url": PORTAL}}}


def write_state(home: Path, **nous: Any) -> Path:
    path = home / "auth.json"
    data = {"providers": {"nous": nous, "other": {"access_token": "keep-me"}}, "extra": 1}
    path.write_text(json.dumps(data), encoding="utf-8")
    os.chmod(path, 0o644)  # a refresh must leave it 0600 whatever it was
    return path


def in_seconds(seconds: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds)).isoformat()


# -- reading --------------------------------------------------------------------------


def test_missing_file_or_provider_is_none(home: Path) -> None:
    assert get_provider_auth_state("nous", home) is None
    (home / "auth.json").write_text('{"providers": {}}', encoding="utf-8")
    assert get_provider_auth_state("nous") is None  # $HERMES_HOME is used by default


def test_state_is_read_without_network(home: Path, no_sockets: None) -> None:
    write_state(home, access_token="a", refresh_token="r", expires_at=in_seconds(-10))
    state = get_provider_auth_state("nous", home)
    assert state is not None and state["access_token"] == "a"


@pytest.mark.parametrize(
    "text, fault",
    [
        ("{nope", "not valid JSON"),
        ("[1, 2]", "top level must be an object"),
        ('{"providers": []}', "'providers' must be an object"),
        ('{"providers": {"nous": "x"}}', "providers.nous must be an object"),
    ],
)
def test_a_corrupt_file_is_an_error_naming_it(home: Path, text: str, fault: str) -> None:
    path = home / "auth.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(AuthError) as info:
        get_provider_auth_state("nous", home)
    assert str(path) in str(info.value) and fault in str(info.value)
    assert path.read_text(encoding="utf-8") == text  # never rewritten


def test_save_is_atomic_0600_and_keeps_other_entries(home: Path) -> None:
    write_state(home, access_token="a")
    save_provider_auth_state("nous", {"access_token": "b"}, home)
    path = home / "auth.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["providers"]["nous"] == {"access_token": "b"}
    assert data["providers"]["other"] == {"access_token": "keep-me"} and data["extra"] == 1
    assert [p.name for p in home.iterdir() if p.name.endswith(".tmp")] == []


# -- resolving ------------------------------------------------------------------------------


def test_a_fresh_token_is_returned_without_network(home: Path, httpx_mock: Any) -> None:
    write_state(home, access_token="a", refresh_token="r", expires_at=in_seconds(3600))
    assert resolve_nous_access_token(home, config=CONFIG) == "a"
    write_state(home, access_token="b", refresh_token="r")  # no expiry known: used as is
    assert resolve_nous_access_token(home, config=CONFIG) == "b"
    assert httpx_mock.get_requests() == []


def test_an_expired_token_is_refreshed_and_saved_atomically(home: Path, httpx_mock: Any) -> None:
    write_state(home, access_token="old", refresh_token="r1", expires_at=in_seconds(-5))
    httpx_mock.add_response(
        method="POST",
        url=TOKEN_URL,
        json={"access_token": "new", "refresh_token": "r2", "expires_in": 3600},
    )
    before = datetime.now(timezone.utc)
    assert resolve_nous_access_token(home, config=CONFIG) == "new"
    request = httpx_mock.get_request()
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qs(request.content.decode()) == {
        "grant_type": ["refresh_token"],
        "refresh_token": ["r1"],
    }
    path = home / "auth.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text(encoding="utf-8"))
    nous = data["providers"]["nous"]
    assert nous["access_token"] == "new" and nous["refresh_token"] == "r2"
    expires = parse_iso(nous["expires_at"])
    assert expires.utcoffset() == timedelta(0) and "+00:00" in nous["expires_at"]
    assert before + timedelta(seconds=3590) < expires < before + timedelta(seconds=3700)
    assert data["providers"]["other"] == {"access_token": "keep-me"}
    assert [p.name for p in home.iterdir() if p.name.endswith(".tmp")] == []
    # Now fresh: no second refresh.
    assert resolve_nous_access_token(home, config=CONFIG) == "new"
    assert len(httpx_mock.get_requests()) == 1


def test_a_token_about_to_expire_counts_as_expired(home: Path, httpx_mock: Any) -> None:
    write_state(home, access_token="old", refresh_token="r1", expires_at=in_seconds(20))
    httpx_mock.add_response(url=TOKEN_URL, json={"access_token": "new"})
    assert resolve_nous_access_token(home, config=CONFIG) == "new"
    nous = get_provider_auth_state("nous", home)
    assert nous is not None
    assert nous["refresh_token"] == "r1"  # none returned: the old one is kept
    assert nous["expires_at"] is None


def test_config_is_read_from_home_when_not_given(home: Path, httpx_mock: Any) -> None:
    (home / "config.yaml").write_text(f"cron:\n  chronos:\n    portal_url: {PORTAL}/\n")
    write_state(home, access_token="old", refresh_token="r1", expires_at=in_seconds(-5))
    httpx_mock.add_response(url=TOKEN_URL, json={"access_token": "new", "expires_in": 60})
    assert resolve_nous_access_token(home) == "new"


def test_force_refresh(home: Path, httpx_mock: Any) -> None:
    write_state(home, access_token="a", refresh_token="r1", expires_at=in_seconds(3600))
    httpx_mock.add_response(url=TOKEN_URL, json={"access_token": "b", "expires_in": 3600})
    assert resolve_nous_access_token(home, config=CONFIG, force_refresh=True) == "b"


@pytest.mark.parametrize(
    "response, fault",
    [
        (
            httpx.Response(400, json={"error": "invalid_grant", "error_description": "revoked"}),
            "HTTP 400: invalid_grant (revoked)",
        ),
        (httpx.Response(500, text="oops"), "HTTP 500"),
        (httpx.Response(200, json={"token_type": "Bearer"}), "no access_token"),
        (httpx.Response(200, text="not json"), "no access_token"),
    ],
)
def test_a_failed_refresh_is_a_clear_error_and_changes_nothing(
    home: Path, httpx_mock: Any, response: httpx.Response, fault: str
) -> None:
    path = write_state(home, access_token="old", refresh_token="r1", expires_at=in_seconds(-5))
    before = path.read_bytes()
    httpx_mock.add_callback(lambda request: response, url=TOKEN_URL)
    with pytest.raises(AuthError) as info:
        resolve_nous_access_token(home, config=CONFIG)
    message = str(info.value)
    assert "refresh failed" in message and fault in message
    assert "r1" not in message and "old" not in message  # no secrets in messages
    assert path.read_bytes() == before


def test_an_unreachable_portal_is_a_clear_error(home: Path, httpx_mock: Any) -> None:
    write_state(home, access_token="old", refresh_token="r1", expires_at=in_seconds(-5))
    httpx_mock.add_exception(httpx.ConnectError("connection refused"), url=TOKEN_URL)
    with pytest.raises(AuthError, match="refresh failed: POST .*ConnectError"):
        resolve_nous_access_token(home, config=CONFIG)


def test_what_cannot_be_refreshed_says_why(home: Path, httpx_mock: Any) -> None:
    with pytest.raises(AuthError, match="no Nous login"):
        resolve_nous_access_token(home, config=CONFIG)
    write_state(home, access_token="old", expires_at=in_seconds(-5))
    with pytest.raises(AuthError, match="no refresh_token"):
        resolve_nous_access_token(home, config=CONFIG)
    write_state(home, access_token="old", refresh_token="r", expires_at=in_seconds(-5))
    with pytest.raises(AuthError, match="portal_url is not set"):
        resolve_nous_access_token(home, config={"cron": {"chronos": {}}})
    write_state(home, access_token="old", refresh_token="r", expires_at="yesterday")
    with pytest.raises(AuthError, match="expires_at"):
        resolve_nous_access_token(home, config=CONFIG)
    assert httpx_mock.get_requests() == []


def test_concurrent_callers_refresh_once(home: Path, httpx_mock: Any) -> None:
    write_state(home, access_token="old", refresh_token="r1", expires_at=in_seconds(-5))
    calls: List[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        time.sleep(0.2)  # keep the lock held while the others pile up behind it
        return httpx.Response(200, json={"access_token": "new", "expires_in": 3600})

    httpx_mock.add_callback(answer, url=TOKEN_URL)
    results: Dict[int, str] = {}
    errors: List[BaseException] = []

    def worker(n: int) -> None:
        try:
            results[n] = resolve_nous_access_token(home, config=CONFIG)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert set(results.values()) == {"new"} and len(results) == 6
    assert len(calls) == 1


def test_a_forced_refresh_after_someone_else_refreshed_reuses_theirs(
    home: Path, httpx_mock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # We saw token "a" rejected; while we waited for the lock another process
    # refreshed to "b". We must use "b", not refresh a second time.
    import hermes_cron.auth as auth
    from hermes_cron.paths import HomePaths

    write_state(home, access_token="a", refresh_token="r1", expires_at=in_seconds(3600))
    real_lock = auth._auth_lock

    class LockAfterSomeoneElseRefreshed(real_lock):  # type: ignore[misc,valid-type]
        def __enter__(self) -> Any:
            auth._write_state(
                HomePaths.at(home),
                "nous",
                {"access_token": "b", "refresh_token": "r2", "expires_at": in_seconds(3600)},
            )
            return super().__enter__()

    monkeypatch.setattr(auth, "_auth_lock", LockAfterSomeoneElseRefreshed)
    assert resolve_nous_access_token(home, config=CONFIG, force_refresh=True) == "b"
    assert httpx_mock.get_requests() == []


def test_another_process_refreshing_is_waited_for_and_reused(
    home: Path, httpx_mock: Any, tmp_path: Path
) -> None:
    import subprocess
    import sys
    import textwrap

    write_state(home, access_token="a", refresh_token="r1", expires_at=in_seconds(-5))
    ready = tmp_path / "ready"
    script = textwrap.dedent(
        f"""
        import time
        from hermes_cron.auth import _auth_lock, _write_state
        from hermes_cron.paths import HomePaths
        paths = HomePaths.at({str(home)!r})
        with _auth_lock(paths):
            open({str(ready)!r}, "w").close()
            time.sleep(0.5)
            _write_state(paths, "nous", {{"access_token": "b", "refresh_token": "r2",
                                         "expires_at": "2099-01-01T00:00:00+00:00"}})
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "helper did not start"
            time.sleep(0.01)
        assert resolve_nous_access_token(home, config=CONFIG) == "b"
    finally:
        assert proc.wait(30) == 0
    assert httpx_mock.get_requests() == []
