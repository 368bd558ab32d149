"""The embedding example runs as documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from helpers.servicekit import REPO

from hermes_cron.ledger import RunLedger
from hermes_cron.paths import HomePaths


def test_embed_agent_example_runs_a_sub_minute_prompt_job_twice(home: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples" / "embed_agent.py"), str(home)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    runs = [line for line in proc.stdout.splitlines() if line.startswith("run of ")]
    assert len(runs) >= 2 and all(": ok, output " in line for line in runs)
    rows = [r for r in RunLedger(HomePaths.at(home)).read() if r["status"] == "ok"]
    assert len(rows) >= 2
    output = Path(rows[-1]["output"]).read_text(encoding="utf-8")
    assert "The answer is 42." in output
    # The fires of an "every 2s" job are on its 2 s grid (a run that outlasted the
    # interval on a loaded machine makes the next fire a skip, not an off-grid run).
    from hermes_cron.timeutil import parse_iso

    fires = sorted(parse_iso(r["fire_at"]) for r in rows)
    gap = (fires[1] - fires[0]).total_seconds()
    assert gap > 0 and gap % 2 == 0, gap
