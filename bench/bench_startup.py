"""Start-up time of ``hermes-cron status`` next to a bare ``python -c pass`` (not a test).

    python bench/bench_startup.py [--runs 10] [--jobs 100] [--json]

Each command runs ``--runs`` times as a fresh process, alternating the two so a
change in machine load hits both alike, in a temporary HERMES_HOME holding
``--jobs`` jobs; the figure is the median wall time of each, and their ratio.
Also measured: ``hermes-cron --help`` (argument parsing only) and
``python -X importtime`` of ``hermes_cron.cli`` (what every command imports first).

Goal: ``status`` within ``GOAL_RATIO`` times a bare interpreter start (what a
command a user types, or a system crontab entry, pays on each call).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

#: ``hermes-cron status`` may take at most this many times ``python -c pass``.
GOAL_RATIO = 10.0


def _time(argv: List[str], env: Dict[str, str]) -> float:
    began = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - began


def _populate(home: Path, jobs: int) -> None:
    from hermes_cron.service import CronService

    service = CronService.from_home(home)
    for i in range(jobs):
        service.add_job(f"every {60 + i}s", command=["true", str(i)])


def measure(runs: int, jobs: int) -> Dict[str, float]:
    """Median seconds of each command over ``runs`` fresh processes, and the ratio."""
    home = Path(tempfile.mkdtemp(prefix="hermes-cron-startup-"))
    try:
        _populate(home, jobs)
        env = dict(os.environ, HERMES_HOME=str(home))
        env.pop("HERMES_CRON_DEBUG", None)
        py = sys.executable
        commands = {
            "python -c pass": [py, "-c", "pass"],
            "hermes-cron --help": [py, "-m", "hermes_cron", "--help"],
            "hermes-cron status": [py, "-m", "hermes_cron", "status"],
        }
        samples: Dict[str, List[float]] = {name: [] for name in commands}
        for argv in commands.values():  # warm the page cache and the .pyc files
            _time(argv, env)
        for _ in range(runs):
            for name, argv in commands.items():
                samples[name].append(_time(argv, env))
        result = {name: statistics.median(values) for name, values in samples.items()}
        result["ratio"] = result["hermes-cron status"] / result["python -c pass"]
        result["import hermes_cron.cli"] = _import_time(env)
        return result
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _import_time(env: Dict[str, str]) -> float:
    """Seconds ``python -X importtime`` reports for importing ``hermes_cron.cli``."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import hermes_cron.cli"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    for line in reversed(proc.stderr.splitlines()):
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[2] == "hermes_cron.cli":
            return int(parts[1]) / 1e6  # cumulative microseconds
    return float("nan")


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="fresh processes per command")
    parser.add_argument("--jobs", type=int, default=100, help="jobs in the store")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    result = measure(args.runs, args.jobs)
    result["goal_ratio"] = GOAL_RATIO
    result["met"] = result["ratio"] <= GOAL_RATIO
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"start-up, median of {args.runs} runs, {args.jobs} jobs in the store")
    for name in ("python -c pass", "hermes-cron --help", "hermes-cron status"):
        print(f"  {name:22} {result[name] * 1000:8.1f} ms")
    print(f"  {'import hermes_cron.cli':22} {result['import hermes_cron.cli'] * 1000:8.1f} ms")
    print(f"ratio status / python -c pass: {result['ratio']:.1f}")
    print(f"goal (ratio <= {GOAL_RATIO:g}): {'met' if result['met'] else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
