"""An extension plugin for the conformance tests: it formats a chat message per run."""

from __future__ import annotations

from typing import Any, Dict, List

from hermes_cron import hookimpl

MESSAGES: List[str] = []


@hookimpl
def run_finished(ctx: Any, job: Dict[str, Any], result: Any) -> None:
    row = result.row
    title = job.get("name") or job["id"]
    line = f"{title}: {row['status']} (fire {row.get('fire_at')})"
    if row.get("error"):
        line += f": {row['error']}"
    if result.output:
        line += "\n" + result.output[-500:]
    MESSAGES.append(line)
