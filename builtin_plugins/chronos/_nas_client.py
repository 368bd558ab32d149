"""A thin HTTP client for NAS's agent-cron API (SPEC section 7).

Three calls, each authenticated with the agent's Nous access token as a Bearer
token:

* ``POST {portal_url}/api/agent-cron/provision``
  ``{"job_id", "fire_at", "agent_callback_url", "dedup_key": "<job_id>:<fire_at>"}``
  -> ``{"schedule_id"}``; NAS upserts by job, so the same fire twice is a no-op.
* ``POST {portal_url}/api/agent-cron/cancel`` ``{"job_id"}`` -> ``{"ok": true}``; idempotent.
* ``GET {portal_url}/api/agent-cron/list`` -> ``{"armed": [{"job_id", "fire_at", "schedule_id"}]}``.

Failure handling, per call: every attempt is bounded by ``timeout``; transport
errors, 429 and 5xx are retried ``retries`` times with exponential ``backoff``;
a 401 forces one token refresh and one more try. Anything else raises
``NASError`` naming the call and the status. The client holds no scheduler
credentials and knows nothing of how NAS triggers its one-shots.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict, List, Optional

import httpx

from hermes_cron.errors import NASError

#: ``token_provider(force_refresh)`` returns the access token to send; with
#: ``force_refresh=True`` it must refresh first (the server just answered 401).
TokenProvider = Callable[[bool], str]

PROVISION_PATH = "/api/agent-cron/provision"
CANCEL_PATH = "/api/agent-cron/cancel"
LIST_PATH = "/api/agent-cron/list"


def dedup_key(job_id: str, fire_at: str) -> str:
    """The idempotency key of one fire: ``"<job_id>:<fire_at>"``."""
    return f"{job_id}:{fire_at}"


class NASClient:
    """provision / cancel / list against NAS, with bounded retries.

    :param portal_url: NAS base URL (``cron.chronos.portal_url``).
    :param token_provider: gives the Bearer token (see ``TokenProvider``).
    :param timeout: seconds bounding each phase of one attempt (connect, read, write).
    :param retries: extra attempts after a transport error, 429 or 5xx.
    :param backoff: seconds before the first retry; doubles for each next one.
    :param transport: an httpx transport (tests inject ``httpx.MockTransport``).
    :param sleep: how to wait between retries (tests pass a no-op).
    """

    def __init__(
        self,
        portal_url: str,
        token_provider: TokenProvider,
        *,
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.5,
        transport: Optional[httpx.BaseTransport] = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not portal_url:
            raise NASError("NAS client needs a portal URL (cron.chronos.portal_url)")
        self.portal_url = portal_url.rstrip("/")
        self.timeout = float(timeout)
        self.retries = max(0, int(retries))
        self.backoff = max(0.0, float(backoff))
        self._token_provider = token_provider
        self._sleep = sleep
        self._client = httpx.Client(
            timeout=self.timeout, transport=transport, follow_redirects=False
        )
        self._count_lock = threading.Lock()
        #: HTTP attempts made so far (retries included), for tests and the bench.
        self.request_count = 0

    # -- the three calls ---------------------------------------------------------

    def provision(self, job_id: str, fire_at: str, agent_callback_url: str) -> str:
        """Arm (or re-arm) the one-shot of ``job_id`` at ``fire_at``; return its schedule id."""
        body = {
            "job_id": job_id,
            "fire_at": fire_at,
            "agent_callback_url": agent_callback_url,
            "dedup_key": dedup_key(job_id, fire_at),
        }
        answer = self._call("provision", "POST", PROVISION_PATH, body)
        schedule_id = answer.get("schedule_id") if isinstance(answer, dict) else None
        if not isinstance(schedule_id, str) or not schedule_id:
            raise NASError(f"NAS provision of job {job_id!r} failed: the answer has no schedule_id")
        return schedule_id

    def cancel(self, job_id: str) -> None:
        """Remove any one-shot armed for ``job_id`` (idempotent)."""
        self._call("cancel", "POST", CANCEL_PATH, {"job_id": job_id})

    def list(self) -> List[Dict[str, str]]:
        """Every armed one-shot: ``[{"job_id", "fire_at", "schedule_id"}]``.

        Entries without a string ``job_id`` and ``fire_at`` are dropped; a body
        that is not ``{"armed": [...]}`` raises ``NASError``.
        """
        answer = self._call("list", "GET", LIST_PATH, None)
        armed = answer.get("armed") if isinstance(answer, dict) else None
        if not isinstance(armed, list):
            raise NASError("NAS list failed: the answer has no 'armed' list")
        result: List[Dict[str, str]] = []
        for entry in armed:
            if not isinstance(entry, dict):
                continue
            job_id, fire_at = entry.get("job_id"), entry.get("fire_at")
            if isinstance(job_id, str) and isinstance(fire_at, str):
                schedule_id = entry.get("schedule_id")
                result.append(
                    {
                        "job_id": job_id,
                        "fire_at": fire_at,
                        "schedule_id": schedule_id if isinstance(schedule_id, str) else "",
                    }
                )
        return result

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> NASClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- plumbing -----------------------------------------------------------------

    def _send(self, method: str, url: str, body: Optional[Dict[str, Any]], token: str):
        with self._count_lock:
            self.request_count += 1
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if body is None:
            return self._client.request(method, url, headers=headers)
        return self._client.request(method, url, headers=headers, json=body)

    def _call(self, name: str, method: str, path: str, body: Optional[Dict[str, Any]]) -> Any:
        url = self.portal_url + path
        what = f"NAS {name}" + (f" of job {body['job_id']!r}" if body and "job_id" in body else "")
        token = self._token_provider(False)
        refreshed = False
        attempt = 0
        while True:
            try:
                response = self._send(method, url, body, token)
            except httpx.TransportError as exc:
                if attempt < self.retries:
                    self._wait(attempt)
                    attempt += 1
                    continue
                raise NASError(
                    f"{what} failed: {type(exc).__name__} on {method} {url} "
                    f"after {attempt + 1} attempt(s): {exc}",
                    retryable=True,
                ) from exc
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                raise NASError(
                    f"{what} failed: {type(exc).__name__} on {method} {url}: {exc}"
                ) from exc
            status = response.status_code
            if status == 401 and not refreshed:
                # The token may have been revoked or expired early: refresh once, try once more.
                token = self._token_provider(True)
                refreshed = True
                continue
            if status == 429 or status >= 500:
                if attempt < self.retries:
                    self._wait(attempt)
                    attempt += 1
                    continue
                raise NASError(
                    f"{what} failed: HTTP {status} from {method} {url} "
                    f"after {attempt + 1} attempt(s){_detail(response)}",
                    status=status,
                    retryable=True,
                )
            if not 200 <= status < 300:
                hint = " even after a token refresh" if status == 401 else ""
                raise NASError(
                    f"{what} failed: HTTP {status} from {method} {url}{hint}{_detail(response)}",
                    status=status,
                )
            try:
                return response.json()
            except ValueError as exc:
                raise NASError(
                    f"{what} failed: HTTP {status} from {method} {url} with a body that is "
                    "not JSON",
                    status=status,
                ) from exc

    def _wait(self, attempt: int) -> None:
        if self.backoff > 0:
            self._sleep(self.backoff * (2**attempt))


def _detail(response: httpx.Response) -> str:
    """A short, safe excerpt of an error answer."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip().replace("\n", " ")
        return f": {text[:200]}" if text else ""
    if isinstance(body, dict):
        for key in ("error", "message", "detail"):
            if isinstance(body.get(key), str):
                return f": {body[key][:200]}"
    return ""


__all__ = ["CANCEL_PATH", "LIST_PATH", "NASClient", "PROVISION_PATH", "TokenProvider", "dedup_key"]
