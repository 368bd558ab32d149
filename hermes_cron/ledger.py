"""The run ledger ``cron/runs.jsonl``: one JSON line per run, skip or miss. (STUB)

Row: ``{job_id, fire_at, provider, started_at, finished_at, status, output, error, owner}``;
``output`` is the path of the output file (null for skips and misses).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from .paths import HomePaths


class RunLedger:
    def __init__(self, paths: HomePaths) -> None:
        raise NotImplementedError

    def append(self, row: Dict[str, Any]) -> None:
        """Append one row (a single O_APPEND write, so concurrent processes never interleave)."""

    def read(self, job_id: Optional[str] = None, limit: Optional[int] = None) -> List[Dict[str, Any]]:
        """Rows newest first, optionally for one job; a torn or bad line is skipped."""
        raise NotImplementedError
