"""Run outputs of the file store: ``cron/output/<job_id>/<UTC start>.md``.

A job keeps its newest ``retention`` outputs: writing one deletes the oldest beyond
that, in the same step, so disk use is bounded without a sweep that could race a
reader of a recent output.
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path

from ..errors import StoreError, UsageError
from ..paths import HomePaths
from ..timeutil import UTC

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


class OutputFiles:
    """One file per run, created exclusively, mode 0600."""

    def __init__(self, paths: HomePaths, *, retention: int = 50) -> None:
        self.paths = paths
        self.retention = max(1, int(retention))

    def write(self, job_id: str, started: datetime, text: str) -> str:
        """Write a run's output and return where it is (the file's path).

        The name is the run's UTC start with microseconds (``-1``, ``-2`` ... on a
        clash).
        """
        base = self.paths.output_dir.resolve()
        # Ids are validated by the store; this keeps even a bad one inside the folder.
        folder = base / _UNSAFE.sub("_", job_id)
        if folder.parent != base:
            raise UsageError(f"job id {job_id!r} cannot name an output folder")
        folder.mkdir(parents=True, exist_ok=True)
        stamp = started.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        data = text.encode("utf-8")
        for n in range(1000):
            path = folder / (f"{stamp}.md" if n == 0 else f"{stamp}-{n}.md")
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except FileExistsError:
                continue
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            self._prune(folder)
            return str(path)
        raise UsageError(f"{folder}: too many output files named {stamp}")

    def _prune(self, folder: Path) -> None:
        """Delete the oldest outputs beyond ``retention`` (names sort by start time)."""
        try:
            names = sorted(n for n in os.listdir(folder) if n.endswith(".md"))
        except OSError:
            return
        for name in names[: max(0, len(names) - self.retention)]:
            try:
                os.unlink(folder / name)
            except OSError:
                pass  # another process pruned it first

    def read(self, ref: str) -> str:
        """The text of the output ``write`` stored at ``ref``."""
        try:
            with open(ref, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError as exc:
            raise StoreError(f"{ref}: cannot read the run output: {exc.strerror or exc}") from None
