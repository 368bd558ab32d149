"""The NAS client: request shapes, retries, backoff, the 401 refresh, error messages."""

from __future__ import annotations

import json
from typing import Any, List

import httpx
import pytest
from hermes_cron_builtin_plugins.chronos._nas_client import NASClient, dedup_key

from hermes_cron.errors import AuthError, NASError

PORTAL = "https://nas.test/"  # a trailing slash must not double up in paths


class Tokens:
    """A token provider that records how it was asked."""

    def __init__(self) -> None:
        self.calls: List[bool] = []

    def __call__(self, force_refresh: bool) -> str:
        self.calls.append(force_refresh)
        return "fresh-token" if force_refresh else "old-token"


def client(tokens: Any = None, **kwargs: Any) -> NASClient:
    kwargs.setdefault("timeout", 2.0)
    kwargs.setdefault("retries", 2)
    kwargs.setdefault("backoff", 0.25)
    kwargs.setdefault("sleep", SLEEPS.append)
    return NASClient(PORTAL, tokens or Tokens(), **kwargs)


SLEEPS: List[float] = []


@pytest.fixture(autouse=True)
def _clear_sleeps() -> None:
    SLEEPS.clear()


def test_provision_sends_the_contract_body(httpx_mock: Any) -> None:
    httpx_mock.add_response(
        method="POST", url="https://nas.test/api/agent-cron/provision", json={"schedule_id": "s1"}
    )
    with client() as nas:
        assert nas.provision("j1", "2026-03-02T12:00:30.500000+00:00", "https://a.test") == "s1"
    request = httpx_mock.get_request()
    assert request.headers["Authorization"] == "Bearer old-token"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == {
        "job_id": "j1",
        "fire_at": "2026-03-02T12:00:30.500000+00:00",
        "agent_callback_url": "https://a.test",
        "dedup_key": "j1:2026-03-02T12:00:30.500000+00:00",
    }
    assert dedup_key("a", "b") == "a:b"


def test_cancel_and_list(httpx_mock: Any) -> None:
    httpx_mock.add_response(
        method="POST", url="https://nas.test/api/agent-cron/cancel", json={"ok": True}
    )
    armed = [
        {"job_id": "j1", "fire_at": "2026-03-02T12:00:00+00:00", "schedule_id": "s1"},
        {"job_id": 7, "fire_at": "bad entry, dropped"},
        "not an object",
        {"job_id": "j2", "fire_at": "2026-03-02T13:00:00Z"},
    ]
    httpx_mock.add_response(
        method="GET", url="https://nas.test/api/agent-cron/list", json={"armed": armed}
    )
    with client() as nas:
        assert nas.cancel("j1") is None
        assert nas.list() == [
            {"job_id": "j1", "fire_at": "2026-03-02T12:00:00+00:00", "schedule_id": "s1"},
            {"job_id": "j2", "fire_at": "2026-03-02T13:00:00Z", "schedule_id": ""},
        ]
    cancel = httpx_mock.get_requests()[0]
    assert json.loads(cancel.content) == {"job_id": "j1"}


def test_transport_errors_and_5xx_are_retried_with_backoff(httpx_mock: Any) -> None:
    url = "https://nas.test/api/agent-cron/provision"
    httpx_mock.add_exception(httpx.ConnectTimeout("slow"), url=url)
    httpx_mock.add_response(url=url, status_code=502)
    httpx_mock.add_response(url=url, json={"schedule_id": "s9"})
    with client() as nas:
        assert nas.provision("j1", "2026-03-02T12:00:00+00:00", "https://a") == "s9"
        assert nas.request_count == 3
    assert SLEEPS == [0.25, 0.5]


def test_retries_are_bounded_and_the_error_names_call_and_status(httpx_mock: Any) -> None:
    url = "https://nas.test/api/agent-cron/cancel"
    for _ in range(3):
        httpx_mock.add_response(url=url, status_code=503, json={"error": "maintenance"})
    with client() as nas, pytest.raises(NASError) as info:
        nas.cancel("j1")
    message = str(info.value)
    assert "cancel" in message and "'j1'" in message and "HTTP 503" in message
    assert "maintenance" in message and "3 attempt" in message
    assert info.value.status == 503 and info.value.retryable is True


def test_a_timeout_is_a_retryable_nas_error(httpx_mock: Any) -> None:
    for _ in range(2):
        httpx_mock.add_exception(httpx.ReadTimeout("no answer"))
    with client(retries=1) as nas, pytest.raises(NASError) as info:
        nas.list()
    assert "list" in str(info.value) and "ReadTimeout" in str(info.value)
    assert info.value.retryable is True


def test_a_4xx_is_not_retried(httpx_mock: Any) -> None:
    httpx_mock.add_response(status_code=400, json={"error": "fire_at is in the past"})
    with client() as nas, pytest.raises(NASError) as info:
        nas.provision("j1", "2026-03-02T12:00:00+00:00", "https://a")
    assert "HTTP 400" in str(info.value) and "fire_at is in the past" in str(info.value)
    assert info.value.retryable is False
    assert len(httpx_mock.get_requests()) == 1 and SLEEPS == []


def test_a_401_refreshes_the_token_once_and_retries_once(httpx_mock: Any) -> None:
    httpx_mock.add_response(status_code=401)
    httpx_mock.add_response(json={"armed": []})
    tokens = Tokens()
    with client(tokens) as nas:
        assert nas.list() == []
    first, second = httpx_mock.get_requests()
    assert first.headers["Authorization"] == "Bearer old-token"
    assert second.headers["Authorization"] == "Bearer fresh-token"
    assert tokens.calls == [False, True]


def test_a_second_401_is_an_error(httpx_mock: Any) -> None:
    httpx_mock.add_response(status_code=401)
    httpx_mock.add_response(status_code=401)
    tokens = Tokens()
    with client(tokens) as nas, pytest.raises(NASError) as info:
        nas.list()
    assert "HTTP 401" in str(info.value) and "refresh" in str(info.value)
    assert tokens.calls == [False, True]
    assert len(httpx_mock.get_requests()) == 2


def test_a_failed_refresh_is_an_auth_error(httpx_mock: Any) -> None:
    httpx_mock.add_response(status_code=401)

    def tokens(force_refresh: bool) -> str:
        if force_refresh:
            raise AuthError("Nous token refresh failed: invalid_grant")
        return "old"

    with client(tokens) as nas, pytest.raises(AuthError, match="invalid_grant"):
        nas.list()


def test_malformed_answers_are_errors(httpx_mock: Any) -> None:
    httpx_mock.add_response(json={"armed": "nope"})
    httpx_mock.add_response(json={"id": "no schedule_id"})
    httpx_mock.add_response(text="<html>proxy page</html>")
    with client() as nas:
        with pytest.raises(NASError, match="no 'armed' list"):
            nas.list()
        with pytest.raises(NASError, match="no schedule_id"):
            nas.provision("j1", "2026-03-02T12:00:00+00:00", "https://a")
        with pytest.raises(NASError, match="not JSON"):
            nas.cancel("j1")


def test_a_missing_portal_url_is_an_error() -> None:
    with pytest.raises(NASError, match="portal_url"):
        NASClient("", Tokens())
