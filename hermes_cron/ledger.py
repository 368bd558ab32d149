"""The run ledger ``cron/runs.jsonl``: one JSON line per run, skip or miss.

Row: ``{job_id, fire_at, provider, started_at, finished_at, status, output, error, owner}``
(plus optional extras such as ``manual``, ``exit_code`` or ``coalesced_from``);
``output`` is the path of the output file (null for skips and misses).

Each row is one ``os.write`` on a file opened with ``O_APPEND``, so rows from
concurrent processes never interleave. A line torn by a crash is skipped when
reading, and the next append starts on a fresh line so it cannot glue itself
onto the torn one.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Generator, List, Optional

from .errors import StoreError
from .paths import HomePaths

Row = Dict[str, Any]

#: Bytes read per step when scanning the file backwards.
_BLOCK = 64 * 1024


class RunLedger:
    """Append-only record of every run, skip and miss."""

    def __init__(self, paths: HomePaths) -> None:
        self.paths = paths
        self.path = paths.runs

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
            finally:
                os.close(fd)
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot append a run record: {exc}") from None

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
        lines = self._lines_backwards()
        for line in lines:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if not isinstance(row, dict):
                continue
            if job_id is not None and row.get("job_id") != job_id:
                continue
            rows.append(row)
            if limit is not None and len(rows) >= limit:
                break
        lines.close()  # release the file at once when stopping early
        return rows

    def _lines_backwards(self) -> Generator[bytes, None, None]:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot read the run ledger: {exc}") from None
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
