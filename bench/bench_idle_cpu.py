"""CPU use of an idle ``hermes-cron daemon`` holding many hourly jobs.

    python bench/bench_idle_cpu.py [--jobs 1000] [--duration 30]

Creates ``--jobs`` jobs ``every 1h`` in a temporary HERMES_HOME (none fires
during the measurement), starts a real ``hermes-cron daemon`` on it, waits for
its first heartbeat, then reads the daemon's CPU time (user + system, from
``/proc/<pid>/stat``) at the start and the end of a ``--duration`` second
window. Prints CPU seconds and the share of one core; the goal is < 1 %.
Also reports the daemon's wake-ups seen by the kernel (voluntary context
switches) during the window.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


def thread_switches(pid: int) -> int:
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += switches_of(task)
        except OSError:
            pass
    return total


def switches_of(task: Path) -> int:
    for line in (task / "status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches"):
            return int(line.split()[1])
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=30.0)
    args = parser.parse_args()

    from hermes_cron.service import CronService

    home = tempfile.mkdtemp(prefix="hermes-cron-idle-")
    service = CronService.from_home(home)
    started = time.monotonic()
    for i in range(args.jobs):
        service.add_job("every 1h", command=["echo", str(i)])
    print(f"{args.jobs} hourly jobs added in {time.monotonic() - started:.1f} s ({home})")

    env = dict(os.environ, HERMES_HOME=home)
    proc = subprocess.Popen(
        [sys.executable, "-m", "hermes_cron", "daemon"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    status = Path(home, "cron", "status.json")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if status.exists() and json.loads(status.read_text() or "{}").get("heartbeat_at"):
            break
        if proc.poll() is not None:
            print(proc.stderr.read() if proc.stderr else "", file=sys.stderr)
            return 1
        time.sleep(0.1)
    time.sleep(2)  # let start-up work (imports, catch-up) finish
    try:
        cpu0, wall0, sw0 = cpu_seconds(proc.pid), time.monotonic(), thread_switches(proc.pid)
        time.sleep(args.duration)
        cpu1, wall1, sw1 = cpu_seconds(proc.pid), time.monotonic(), thread_switches(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    used = cpu1 - cpu0
    share = used / (wall1 - wall0) * 100
    print(
        f"idle daemon over {wall1 - wall0:.1f} s: {used:.3f} CPU s = {share:.3f} % of one core; "
        f"{(sw1 - sw0) / (wall1 - wall0):.1f} thread wake-ups/s; exit code {proc.returncode}"
    )
    print(f"goal (< 1 %): {'met' if share < 1 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
