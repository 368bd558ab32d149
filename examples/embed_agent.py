"""Embed hermes-cron in an agent: a runner for prompt jobs, the provider in a thread.

Run it::

    python examples/embed_agent.py            # a temporary HERMES_HOME
    python examples/embed_agent.py ~/.hermes  # or a given one

It builds the service from HERMES_HOME, registers a plugin whose ``run_job``
answers ``prompt`` jobs with a Python callable (the "agent"), adds a job that
fires every 2 seconds, starts the active provider in a thread, waits for two
runs, prints them from the run ledger, and stops.

An agent that also serves HTTP routes its fire endpoint to
``service.fire_due(job_id, fire_at)`` (see ``hermes_cron.webhook``).
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional

from hermes_cron import CronService, hookimpl
from hermes_cron.runner import RunOutcome


def answer(prompt: str) -> str:
    """The "agent": anything that turns a prompt into text."""
    return f"You asked: {prompt!r}. The answer is 42."


class PromptRunner:
    """Runs ``prompt`` jobs; leaves ``command`` jobs to the default executor."""

    def __init__(self) -> None:
        self.runs: List[Dict[str, Any]] = []
        self.ran = threading.Condition()

    @hookimpl
    def run_job(self, ctx: Any, job: Dict[str, Any]) -> Optional[RunOutcome]:
        if job.get("prompt") is None:
            return None  # not ours: the next implementation (the default executor) runs it
        text = answer(job["prompt"])
        with self.ran:
            self.runs.append({"job": job["id"], "fire_at": job["fire_claim"]["fire_at"]})
            self.ran.notify_all()
        return RunOutcome(status="ok", output=text)


def main(argv: List[str]) -> int:
    home = argv[1] if len(argv) > 1 else tempfile.mkdtemp(prefix="hermes-cron-example-")
    wanted = 2
    runner = PromptRunner()
    service = CronService.from_home(home, plugins=[runner])
    job = service.add_job("every 2s", prompt="What is the answer?", name="example")
    print(f"home {home}: provider {service.provider_name}, job {job['id']} ({job['name']})")

    handle = service.start_in_thread()
    deadline = time.monotonic() + 30
    with runner.ran:
        while len(runner.runs) < wanted and time.monotonic() < deadline:
            runner.ran.wait(deadline - time.monotonic())
    handle.stop(timeout=10)
    service.remove_job(job["id"])

    rows = [r for r in service.ledger.read(job_id=job["id"]) if r["status"] == "ok"]
    for row in reversed(rows):
        print(
            f"run of {row['job_id']} due {row['fire_at']}: {row['status']}, output {row['output']}"
        )
    if len(rows) < wanted:
        print(f"only {len(rows)} run(s) within 30 s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
