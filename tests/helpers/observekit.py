"""Observer plugins for the run_finished tests (``helpers.observekit``)."""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, List, Optional, Tuple

from hermes_cron import hookimpl
from hermes_cron.runner import RunOutcome


class Recorder:
    """A ``run_finished`` observer that keeps every ``(job, result)`` it is given."""

    def __init__(self) -> None:
        self.seen: List[Tuple[Dict[str, Any], Any]] = []
        self.threads: List[str] = []
        self._cond = threading.Condition()

    @hookimpl
    def run_finished(self, ctx: Any, job: Dict[str, Any], result: Any) -> None:
        with self._cond:
            self.seen.append((job, result))
            self.threads.append(threading.current_thread().name)
            self._cond.notify_all()

    def rows(self) -> List[Dict[str, Any]]:
        with self._cond:
            return [dict(result.row) for _job, result in self.seen]

    def wait(self, count: int, timeout: float = 30.0) -> List[Tuple[Dict[str, Any], Any]]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.seen) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} report(s), got {len(self.seen)}")
                self._cond.wait(left)
            return list(self.seen)


class Raiser:
    """An observer that always raises."""

    calls = 0

    @hookimpl
    def run_finished(self, job: Dict[str, Any], result: Any) -> None:
        type(self).calls += 1
        raise RuntimeError(f"observer broke on {job['id']}")


class Blocker:
    """An observer that blocks on ``release`` (``entered`` counts the calls begun)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = 0
        self.first = threading.Event()
        self._lock = threading.Lock()

    @hookimpl
    def run_finished(self, result: Any) -> None:
        with self._lock:
            self.entered += 1
        self.first.set()
        self.release.wait(120)


class StatusRunner:
    """A ``run_job`` whose prompt is the status to answer (``ok``, ``error``, ``timeout``)."""

    @hookimpl
    def run_job(self, ctx: Any, job: Dict[str, Any]) -> Optional[RunOutcome]:
        prompt = job.get("prompt")
        if prompt is None:
            return None
        if prompt == "raise":
            raise RuntimeError("the runner raised")
        return RunOutcome(
            status=prompt,
            output=f"output of {prompt}",
            error=None if prompt == "ok" else f"{prompt}!",
        )
