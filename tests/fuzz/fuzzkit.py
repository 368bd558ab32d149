"""Helpers for the fuzz tests: the CLI in process, and a throwaway home per example."""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

from hermes_cron import hookimpl
from hermes_cron.cli import main
from hermes_cron.runner import RunOutcome


@contextlib.contextmanager
def a_home() -> Iterator[Path]:
    """A fresh HERMES_HOME for one example (function-scoped fixtures do not reset
    between hypothesis examples)."""
    with tempfile.TemporaryDirectory(prefix="hermes-fuzz-") as folder:
        yield Path(folder)


def run_cli(*argv: str) -> Tuple[int, str, str]:
    """``hermes-cron ARGV`` in this process: ``(exit code, stdout, stderr)``."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def stderr_lines(err: str) -> List[str]:
    return [line for line in err.splitlines() if line.strip()]


def clean_stderr(err: str) -> bool:
    """No traceback, no internal error, and every line is one of ours."""
    if "Traceback" in err or "internal error" in err:
        return False
    return all(line.startswith("hermes-cron: ") for line in stderr_lines(err))


class Recorder:
    """Runs nothing for real (a fuzzed command could be anything): records the job."""

    def __init__(self) -> None:
        self.ran: List[str] = []

    @hookimpl(tryfirst=True)
    def run_job(self, ctx: Any, job: Dict[str, Any]) -> RunOutcome:
        self.ran.append(job["id"])
        return RunOutcome(status="ok", output="recorded, not run")
