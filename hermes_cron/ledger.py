"""The run ledger ``cron/runs.jsonl``: one JSON line per run, skip or miss.

Row: ``{job_id, fire_at, provider, started_at, finished_at, status, output, error, owner}``
(plus optional extras such as ``manual``, ``exit_code`` or ``coalesced_from``);
``output`` is the path of the output file (null for skips and misses).

Each row is one ``os.write`` on a file opened with ``O_APPEND``, so rows from
concurrent processes never interleave. When the file passes ``max_bytes`` it is
renamed to ``cron/runs.1.jsonl`` (replacing the previous one) under a small lock,
so disk use stays bounded; ``read`` reads both. A writer that still holds the old
file open finishes its row there, where ``read`` finds it. A line torn by a crash is skipped when
reading, and the next append starts on a fresh line so it cannot glue itself
onto the torn one.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Dict, Generator, List, Optional

from .errors import LockTimeoutError, StoreError
from .lock import FileLock
from .paths import HomePaths
from .timeutil import parse_iso

Row = Dict[str, Any]

#: Bytes read per step when scanning the file backwards.
_BLOCK = 64 * 1024

#: How far out of order (by ``finished_at``) rows may be written by concurrent runs.
_SKEW = timedelta(minutes=5)

#: Rows that are not the end of a run.
_NOT_AN_END = frozenset({"running", "skipped", "missed"})


def is_run_end(row: Row) -> bool:
    """Does ``row`` end a run (not ``running``, a skip or a miss)?"""
    return row.get("status") not in _NOT_AN_END


def is_final_row_of(row: Row, run: Row) -> bool:
    """Is ``row`` the final row of the run ``run`` is a row of: the same job, fire,
    owner and attempt, and the end of a run (not ``running``, a skip or a miss)?
    Every ``RunLog`` asks this before writing a run's end or its interruption, so a
    fire has one row however its process ended or its write was retried."""
    return (
        is_run_end(row)
        and row.get("job_id") == run.get("job_id")
        and row.get("fire_at") == run.get("fire_at")
        and row.get("owner") == run.get("owner")
        and (row.get("attempt") or 1) == (run.get("attempt") or 1)
        and bool(row.get("manual")) == bool(run.get("manual"))
    )


def _time_of(value: Any) -> Optional[datetime]:
    try:
        return parse_iso(value)
    except (TypeError, ValueError):
        return None


class RunLedger:
    """Append-only record of every run, skip and miss."""

    def __init__(self, paths: HomePaths, *, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.paths = paths
        self.path = paths.runs
        #: The rotated ledger: the rows before the current file's.
        self.rotated = paths.runs.with_name("runs.1.jsonl")
        self.max_bytes = int(max_bytes)

    def append(self, row: Dict[str, Any]) -> None:
        """Append one row (a single O_APPEND write, so concurrent processes never interleave).

        Raises ``StoreError`` naming the file when it cannot be written.
        """
        line = json.dumps(row, ensure_ascii=False, separators=(",", ":"), default=str)
        data = line.encode("utf-8") + b"\n"  # json.dumps escapes newlines in strings
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                # A crash mid-write can leave a last line without its newline; start ours
                # on a fresh line. Two writers may both add one: an empty line is harmless.
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    data = b"\n" + data
                written = os.write(fd, data)
                if written != len(data):
                    # Only a full disk or a signal does this; finish the row rather than
                    # leave it torn (a torn row is skipped by readers anyway).
                    os.write(fd, data[written:])
                full = size + len(data) > self.max_bytes
            finally:
                os.close(fd)
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot append a run record: {exc}") from None
        if full:
            self._rotate()

    def _rotate(self) -> None:
        """Rename the full ledger to ``runs.1.jsonl``. Under a lock, and only if the file
        is still full, so two writers that both saw it full rotate it once, never
        pushing a fresh file over the rotated rows."""
        try:
            with FileLock(self.path.with_name(".runs.lock"), timeout=5.0):
                if os.stat(self.path).st_size > self.max_bytes:
                    os.replace(self.path, self.rotated)
        except (OSError, LockTimeoutError):
            # The row is written; a missed rotation is retried by the next append.
            pass

    def read(
        self, job_id: Optional[str] = None, limit: Optional[int] = None
    ) -> List[Dict[str, Any]]:
        """Rows newest first, optionally for one job; a torn or bad line is skipped.

        Reads the file backwards in blocks, so ``limit`` rows cost about that many
        lines however long the ledger grew. A missing file is an empty ledger.
        """
        if limit is not None and limit <= 0:
            return []
        rows: List[Row] = []
        newest_first = self._rows_backwards()
        try:
            for row in newest_first:
                if job_id is not None and row.get("job_id") != job_id:
                    continue
                rows.append(row)
                if limit is not None and len(rows) >= limit:
                    break
        finally:
            newest_first.close()  # release the files at once when stopping early
        return rows

    def append_interrupted(self, row: Dict[str, Any]) -> Optional[Row]:
        """Append the ``error`` row of a run that never finished, unless that run's own
        final row is already here (its process wrote it, then died or lost the store
        before ``finish_run``): one row per fire. Returns that final row when it was
        here (nothing written), None when the error row was written.

        Scans back only to rows that finished well before the fire (a run's final row
        cannot finish before its fire), so the cost is the rows written since."""
        since = _time_of(row.get("fire_at"))
        newest_first = self._rows_backwards()
        try:
            for seen in newest_first:
                if is_final_row_of(seen, row):
                    return seen
                finished = _time_of(seen.get("finished_at"))
                if since is not None and finished is not None and finished < since - _SKEW:
                    break
        finally:
            newest_first.close()
        self.append(row)
        return None

    def _rows_backwards(self) -> Generator[Row, None, None]:
        """Every good row of both files, newest first; closes them when done or closed."""
        # Both files opened before either is read, the current one first: a rotation in
        # between makes both name the same file (read once, by inode), never none.
        fds = [self._open(path) for path in (self.path, self.rotated)]
        try:
            inodes = [os.fstat(fd).st_ino if fd is not None else None for fd in fds]
        except OSError as exc:
            for fd in fds:
                if fd is not None:
                    os.close(fd)
            raise StoreError(f"{self.path}: cannot read the run ledger: {exc}") from None
        if fds[1] is not None and inodes[0] == inodes[1]:
            os.close(fds[1])
            fds[1] = None
        pending = [fd for fd in fds if fd is not None]
        try:
            while pending:
                lines = self._lines_backwards(pending.pop(0))
                try:
                    for line in lines:
                        try:
                            row = json.loads(line)
                        except ValueError:
                            continue
                        if isinstance(row, dict):
                            yield row
                finally:
                    lines.close()
        finally:
            for fd in pending:
                os.close(fd)

    def _open(self, path: Path) -> Optional[int]:
        try:
            return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"{path}: cannot read the run ledger: {exc}") from None

    def _lines_backwards(self, fd: int) -> Generator[bytes, None, None]:
        """The file's non-empty lines, last first; closes ``fd`` when done or closed."""
        try:
            pos = os.fstat(fd).st_size
            tail = b""
            while pos > 0:
                step = min(_BLOCK, pos)
                pos -= step
                try:
                    block = os.pread(fd, step, pos) + tail
                except OSError as exc:
                    raise StoreError(f"{self.path}: cannot read the run ledger: {exc}") from None
                lines = block.split(b"\n")
                # The first piece may continue in the previous block.
                tail = lines[0]
                for line in reversed(lines[1:]):
                    if line.strip():
                        yield line
            if tail.strip():
                yield tail
        finally:
            os.close(fd)
