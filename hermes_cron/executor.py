"""The default ``run_job``: run a ``command`` job as a subprocess.

Registered ``trylast``, so an embedding agent's own ``run_job`` (which handles
``prompt`` jobs and returns None for the rest) is asked first.

A command runs:

* as an argv list, never through a shell, with stdin from ``/dev/null``;
* in the job's ``cwd``, else the user's home folder (as cron does), falling back
  to ``HERMES_HOME``;
* with the job's ``env`` mapping, then ``HERMES_CRON_JOB_ID``,
  ``HERMES_CRON_FIRE_AT`` (the due time it fires for, ISO 8601; a retry fires for
  the fire it retries), ``HERMES_CRON_ATTEMPT`` (1, then 2, 3... for retries) and
  ``HERMES_CRON_OWNER`` (the owner token of the claim it runs under,
  ``host:pid:random``, as the ledger row records it) added to the environment;
* in a new session (its own process group), so a timeout kills the command
  and everything it started;
* with stdout and stderr captured together, capped at ``OUTPUT_CAP`` bytes
  (the rest is counted and dropped, and the output says so);
* for at most the job's ``timeout`` or ``cron.job_timeout`` seconds;
* for an ``overlap: replace`` job, until ``ctx.cancel`` is set (a newer fire
  replaces the run): then the process group is stopped as on a timeout and the
  run is ``cancelled``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any, Dict, List, Optional

from .config import cfg_get
from .hookspec import hookimpl
from .runner import RunOutcome

#: Most bytes of output kept per run.
OUTPUT_CAP = 1024 * 1024
#: After SIGTERM to a timed-out process group, how long before SIGKILL.
KILL_GRACE = 2.0
#: After the command exited, how long to wait for its output pipe to close.
DRAIN_WAIT = 5.0
#: How often a run that may be cancelled looks at its cancel event, in seconds.
CANCEL_CHECK = 0.05

PROMPT_NEEDS_RUNNER = (
    "no runner is registered for prompt jobs: an embedding agent must register a run_job hook"
)


class _Capture:
    """Reads a pipe to its end in a thread, keeping the first ``cap`` bytes."""

    def __init__(self, pipe: IO[bytes], cap: int) -> None:
        self.pipe = pipe
        self.cap = cap
        self.chunks: List[bytes] = []
        self.kept = 0
        self.dropped = 0
        self.thread = threading.Thread(target=self._run, name="hermes-cron-capture", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            fd = self.pipe.fileno()
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                room = self.cap - self.kept
                if room > 0:
                    self.chunks.append(chunk[:room])
                    self.kept += min(room, len(chunk))
                self.dropped += max(0, len(chunk) - max(room, 0))
        except (OSError, ValueError):
            pass  # the pipe broke: keep what we have
        finally:
            # Closed here, by the only reader, so nobody closes it under a blocked read.
            self.pipe.close()

    def text(self) -> str:
        text = b"".join(self.chunks).decode("utf-8", errors="replace")
        if self.dropped:
            text += f"\n[hermes-cron: output truncated, {self.dropped} more bytes dropped]\n"
        return text


def _kill_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _working_dir(ctx: Any, job: Dict[str, Any]) -> str:
    if job.get("cwd"):
        return str(job["cwd"])
    home = Path.home()
    return str(home) if home.is_dir() else str(ctx.home)


class DefaultExecutor:
    """The built-in ``run_job`` implementation (register an instance)."""

    @hookimpl(trylast=True)
    def run_job(self, ctx: Any, job: Dict[str, Any]) -> Optional[RunOutcome]:
        """Run a ``command`` job; fail a ``prompt`` job with a clear error."""
        command = job.get("command")
        if not command:
            if job.get("prompt") is not None:
                return RunOutcome(status="error", error=PROMPT_NEEDS_RUNNER)
            return RunOutcome(status="error", error="the job has neither a command nor a prompt")
        timeout = job.get("timeout") or cfg_get(ctx.config, "cron", "job_timeout", default=600)
        cwd = _working_dir(ctx, job)
        if not os.path.isdir(cwd):
            return RunOutcome(status="error", error=f"working directory {cwd!r} does not exist")
        # Only a replaceable job is ever cancelled: others wait without polling.
        cancel = getattr(ctx, "cancel", None) if job.get("overlap") == "replace" else None
        return run_command(
            list(command),
            timeout=float(timeout),
            env=_job_env(job),
            cwd=cwd,
            cancel=cancel,
        )


def _job_env(job: Dict[str, Any]) -> Dict[str, str]:
    env = dict(os.environ)
    env.update(job.get("env") or {})
    # Ours last: a job's env cannot hide which fire it runs for.
    env["HERMES_CRON_JOB_ID"] = str(job.get("id", ""))
    claim = job.get("fire_claim") or {}
    env["HERMES_CRON_FIRE_AT"] = str(claim.get("fire_at") or job.get("next_run_at") or "")
    env["HERMES_CRON_ATTEMPT"] = str(claim.get("attempt") or 1)
    env["HERMES_CRON_OWNER"] = str(claim.get("owner") or "")
    return env


def run_command(
    argv: List[str],
    *,
    timeout: float,
    env: Optional[Dict[str, str]] = None,
    cwd: Optional[str] = None,
    output_cap: int = OUTPUT_CAP,
    cancel: Optional[threading.Event] = None,
) -> RunOutcome:
    """Run ``argv`` with a timeout; the whole process group dies on timeout.

    Returns ``ok`` for exit code 0, ``error`` ("exit code N") otherwise or when
    the program cannot start, ``timeout`` when it ran too long, ``cancelled`` when
    ``cancel`` was set first (the process group is stopped as on a timeout). The run
    ends when the program has exited and its output is closed (a background child
    that keeps the output open keeps the run going, within the timeout).
    """
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
    except FileNotFoundError:
        return RunOutcome(status="error", error=f"cannot run {argv[0]!r}: no such program")
    except PermissionError:
        return RunOutcome(status="error", error=f"cannot run {argv[0]!r}: permission denied")
    except OSError as exc:
        return RunOutcome(status="error", error=f"cannot run {argv[0]!r}: {exc.strerror or exc}")
    assert proc.stdout is not None
    capture = _Capture(proc.stdout, output_cap)
    deadline = time.monotonic() + timeout
    try:
        ended = _wait(proc, capture, deadline, cancel)
    except BaseException:
        _kill_group(proc, signal.SIGKILL)
        proc.wait()
        raise
    timed_out = ended == "timeout"
    if ended != "done":
        _kill_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=KILL_GRACE)
        except subprocess.TimeoutExpired:
            pass
        # Whatever ignored SIGTERM (the command or anything it started) goes now.
        _kill_group(proc, signal.SIGKILL)
        proc.wait()
    # A process that left the group may still hold the pipe: then stop waiting for it
    # (the reader thread finishes, and closes the pipe, when that process exits).
    capture.thread.join(DRAIN_WAIT)
    output = capture.text()
    if ended == "cancelled":
        return RunOutcome(
            status="cancelled",
            output=output,
            error="cancelled; the process group was killed",
            exit_code=proc.returncode,
        )
    if timed_out:
        return RunOutcome(
            status="timeout",
            output=output,
            error=f"timed out after {timeout:g} s; the process group was killed",
            exit_code=proc.returncode,
        )
    code = proc.returncode
    if code == 0:
        return RunOutcome(status="ok", output=output, exit_code=0)
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        error = f"exit code {code} (killed by {name})"
    else:
        error = f"exit code {code}"
    return RunOutcome(status="error", output=output, error=error, exit_code=code)


def _wait(
    proc: subprocess.Popen[bytes],
    capture: _Capture,
    deadline: float,
    cancel: Optional[threading.Event],
) -> str:
    """Wait for the program to exit and its output to close: ``done``, or ``timeout``
    at ``deadline``, or ``cancelled`` once ``cancel`` is set."""
    while True:
        left = deadline - time.monotonic()
        if cancel is not None and cancel.is_set():
            return "cancelled"
        if left <= 0:
            return "timeout"
        step = left if cancel is None else min(left, CANCEL_CHECK)
        if proc.poll() is None:
            try:
                proc.wait(timeout=step)
            except subprocess.TimeoutExpired:
                continue
            continue
        # Exited: wait for the pipe to close (children may still write), same deadline.
        capture.thread.join(step)
        if not capture.thread.is_alive():
            return "done"


__all__ = ["OUTPUT_CAP", "PROMPT_NEEDS_RUNNER", "DefaultExecutor", "run_command"]
