"""Run every benchmark, check each figure against its goal, write one markdown report.

    python bench/run_all.py [--full] [--only store,lateness,...] [--out PATH] [--strict]

Each bench script runs as its own process, exactly as a user would run it, with
short options by default (about a minute in all, for CI or a quick look) or the
durations the goals were set for with ``--full`` (several minutes). The headline
figures are read from each script's output and checked against their goals:

* store: a full next-fire recompute of 10,000 jobs < 1 s; create, claim+finish and
  list rates at 100 / 1,000 / 10,000 jobs (and 100,000 with ``--full``);
* store-peers: per fire and per add at 1,000 / 10,000 jobs (and 100,000 with
  ``--full``) on the file store, the PostgreSQL store (a throwaway cluster), and
  APScheduler 3's SQLAlchemy store on SQLite and on the same PostgreSQL: ours on
  PostgreSQL at the largest size at least APScheduler-on-SQLite's rate, and flat;
* lateness: the built-in loop's fire lateness p99 <= 0.8x APScheduler 3's on the
  same work in the same run, and < 50 ms (a burst of fires due together, fires
  spread out, and 50 command jobs through a real daemon);
* load: 10,000 jobs every minute through ``hermes-cron daemon`` (40 s per scheduler;
  120 s with ``--full``): on the file store, p99 lateness <= 0.8x APScheduler 3 on
  SQLite's in the same run; on PostgreSQL (one daemon, and two sharing the database),
  p99 < 50 ms, shown next to APScheduler 3 on the same server; nothing missed or
  doubled;
* idle: an idle daemon holding many hourly jobs uses < 1 % of a core;
* chronos: a warm reconcile after one change costs 1 NAS request; a cold start
  with 10 jobs not armed costs 1 list + 10 provisions;
* startup: ``hermes-cron status``, ``list``, ``add`` and ``next`` each within 3x a bare
  ``python -c pass`` (medians of the same run).

The report (a table of figures and verdicts, then every script's full output) is
printed and written to ``bench/results/latest.md``. ``--strict`` exits 1 when a
goal is missed (default: 0, since timing goals depend on the machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import attrs

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
NUMBER = r"(-?[\d.]+(?:e[-+]?\d+)?|nan|inf)"


@attrs.define
class Figure:
    """One measured value and its goal."""

    bench: str
    name: str
    value: str
    goal: str = ""
    met: Optional[bool] = None  # None: no goal, or the value could not be read

    @property
    def verdict(self) -> str:
        return {True: "met", False: "**missed**", None: "-"}[self.met]


@attrs.define
class Run:
    """One bench script's run: its command line, output and figures."""

    name: str
    argv: List[str]
    seconds: float = 0.0
    code: int = 0
    output: str = ""
    figures: List[Figure] = attrs.field(factory=list)


def _num(text: str) -> float:
    return float(text)


def _grab(pattern: str, text: str) -> Optional[re.Match]:
    return re.search(pattern, text, re.M)


def _missing(bench: str, what: str) -> Figure:
    return Figure(bench, what, "not found in the output", "", None)


# -- the benches -------------------------------------------------------------------------


def store_args(full: bool, scratch: Path) -> List[str]:
    args = ["--sizes", "100,1000,10000", "--ops", "20" if full else "10"]
    return args + (["--with-100k"] if full else []) + ["--json", str(scratch / "store.json")]


def store_figures(run: Run, scratch: Path) -> List[Figure]:
    try:
        data: Dict[str, Dict[str, float]] = json.loads((scratch / "store.json").read_text())
    except (OSError, ValueError):
        return [_missing("store", "figures")]
    out = []
    for size, row in sorted(data.items(), key=lambda kv: int(kv[0])):
        n = f"{int(size):,}"
        out.append(
            Figure(
                "store",
                f"{n} jobs: create / claim+finish / list",
                f"{row['create']:.0f} / {row['claim+finish']:.0f} / {row['list']:.1f} ops/s",
            )
        )
        out.append(
            Figure(
                "store",
                f"{n} jobs: cold read / catch-up",
                f"{row['cold read'] * 1000:.0f} ms / {row['catch-up'] * 1000:.0f} ms "
                f"({row['file MB']:.1f} MB)",
            )
        )
        if int(size) == 10_000:
            seconds = row["recompute"]
            out.append(
                Figure(
                    "store",
                    "10,000 jobs: full next-fire recompute",
                    f"{seconds * 1000:.1f} ms",
                    "< 1 s",
                    seconds < 1.0,
                )
            )
    return out


def peers_args(full: bool, scratch: Path) -> List[str]:
    sizes = "1000,10000,100000" if full else "1000,10000"
    return ["--sizes", sizes, "--start-pg", "--json", str(scratch / "peers.json")]


def peers_figures(run: Run, scratch: Path) -> List[Figure]:
    """Per fire and per add, each store next to APScheduler 3's SQLAlchemy store on
    SQLite and on the same PostgreSQL server (``bench_store_peers.py``)."""
    bench = "store vs APScheduler 3"
    try:
        data: Dict[str, Dict[str, Dict[str, float]]] = json.loads(
            (scratch / "peers.json").read_text()
        )
    except (OSError, ValueError):
        return [_missing(bench, "figures")]

    def best(row: Dict[str, float]) -> float:
        return max(row["fire"], row.get("fire batched", 0.0))

    names = ("file", "postgres", "aps-sqlite", "aps-postgres")
    out = []
    sizes = sorted(data, key=int)
    for size in sizes:
        row = data[size]
        shown = [name for name in names if name in row]
        out.append(
            Figure(
                bench,
                f"{int(size):,} jobs: fires/s ({' / '.join(shown)}; ours at their best of "
                "one by one and batched)",
                " / ".join(f"{best(row[name]):.0f}" for name in shown),
            )
        )
        out.append(
            Figure(
                bench,
                f"{int(size):,} jobs: adds/s ({' / '.join(shown)})",
                " / ".join(f"{row[name]['add']:.0f}" for name in shown),
            )
        )
    first, last = data[sizes[0]], data[sizes[-1]]
    n = f"{int(sizes[-1]):,}"
    if "postgres" in last and "aps-sqlite" in last:
        ratio = best(last["postgres"]) / last["aps-sqlite"]["fire"]
        out.append(
            Figure(
                bench,
                f"PostgreSQL store per fire at {n} jobs / APScheduler 3 on SQLite (same run)",
                f"{ratio:.2f}x",
                ">= 1x",
                ratio >= 1.0,
            )
        )
    if "postgres" in first and "postgres" in last and len(sizes) > 1:
        flat = last["postgres"]["fire"] / first["postgres"]["fire"]
        out.append(
            Figure(
                bench,
                f"PostgreSQL claim cost: fire rate at {n} jobs / at {int(sizes[0]):,}",
                f"{flat:.2f}x",
                ">= 0.7x (flat)",
                flat >= 0.7,
            )
        )
    return out


def lateness_args(full: bool, spread: bool, command: bool = False) -> List[str]:
    if command:
        # 50 command jobs every 2 s, spread, through a real daemon.
        args = ["--duration", "60" if full else "10", "--jobs", "50", "--workers", "8"]
        return args + ["--spread", "--command"]
    args = ["--duration", "60", "--jobs", "100"] if full else ["--duration", "6", "--jobs", "50"]
    return args + (["--spread"] if spread else [])


#: Lateness goal: hermes-cron's p99 at most this times its peer's, in the same run.
GOAL_RATIO = 0.8


def lateness_figures(run: Run) -> List[Figure]:
    label = "spread" if "--spread" in run.argv else "burst"
    if "--command" in run.argv:
        label = "command jobs, daemon"
    row = r"\s+(\d+)\s+" + r"\s+".join([NUMBER] * 5)
    mine = _grab(r"^hermes-cron built-in" + row, run.output)
    theirs = _grab(r"^APScheduler 3" + row, run.output)
    if not mine or not theirs:
        return [_missing(f"lateness ({label})", "p99")]
    p99, aps = _num(mine.group(4)), _num(theirs.group(4))
    return [
        Figure(
            f"lateness ({label})",
            f"p50 / p99 / max, {mine.group(1)} runs",
            f"{_num(mine.group(2)):.2f} / {p99:.2f} / {_num(mine.group(5)):.2f} ms",
        ),
        Figure(
            f"lateness ({label})",
            "APScheduler 3 p50 / p99 / max",
            f"{_num(theirs.group(2)):.2f} / {aps:.2f} / {_num(theirs.group(5)):.2f} ms",
        ),
        Figure(
            f"lateness ({label})",
            "p99 / APScheduler's p99 (same run), and absolute",
            f"{p99:.2f} ms / {aps:.2f} ms = {p99 / aps if aps else float('inf'):.2f}x",
            f"<= {GOAL_RATIO}x and < 50 ms",
            p99 <= GOAL_RATIO * aps and p99 < 50,
        ),
    ]


def load_args(full: bool, scratch: Path) -> List[str]:
    return ["--duration", "120" if full else "40", "--json", str(scratch / "load.json")]


def load_figures(run: Run, scratch: Path) -> List[Figure]:
    try:
        data = json.loads((scratch / "load.json").read_text())
    except (OSError, ValueError):
        return [_missing("load", "figures")]
    bench = "load (10,000 jobs every minute)"
    out = []
    for label, row in data["figures"].items():
        out.append(
            Figure(
                bench,
                f"{label}: p50 / p99 / max, {row['n']} runs",
                f"{row['p50']:.1f} / {row['p99']:.1f} / {row['max']:.1f} ms",
            )
        )
    if "peer" in data:
        out.append(
            Figure(
                bench,
                f"hermes-cron p99 / {data['peer']} p99 (same run); missed, doubled",
                f"{data['ratio_p99']:.2f}x; {data['missed']} missed, {data['doubled']} doubled "
                f"of {data['expected']}",
                f"<= {data['goal_ratio']:g}x, none missed or doubled",
                bool(data["met"]),
            )
        )
    for pg in data.get("postgres", []):
        out.append(
            Figure(
                bench,
                f"{pg['label']}: p99 (and / {pg['peer']} p99, same run); missed, doubled",
                f"{pg['p99']:.1f} ms ({pg['ratio_p99']:.2f}x); {pg['missed']} missed, "
                f"{pg['doubled']} doubled of {pg['expected']}",
                f"< {pg['goal_ms']:g} ms, none missed or doubled",
                bool(pg["met"]),
            )
        )
    return out


def idle_args(full: bool) -> List[str]:
    return ["--jobs", "1000", "--duration", "30"] if full else ["--jobs", "200", "--duration", "8"]


def idle_figures(run: Run) -> List[Figure]:
    found = _grab(
        r"idle daemon over " + NUMBER + r" s: " + NUMBER + r" CPU s = " + NUMBER
        + r" % of one core; " + NUMBER + r" thread wake-ups/s",
        run.output,
    )  # fmt: skip
    jobs = _grab(r"^(\d+) hourly jobs", run.output)
    if not found:
        return [_missing("idle", "CPU share")]
    share = _num(found.group(3))
    return [
        Figure(
            "idle",
            f"idle daemon, {jobs.group(1) if jobs else '?'} hourly jobs, {found.group(1)} s",
            f"{share:.3f} % of a core, {_num(found.group(4)):.1f} wake-ups/s",
            "< 1 %",
            share < 1.0,
        )
    ]


def chronos_args(full: bool) -> List[str]:
    return (
        ["--jobs", "10000", "--tokens", "2000"] if full else ["--jobs", "1000", "--tokens", "200"]
    )


def _calls(text: str) -> Dict[str, int]:
    calls: Dict[str, int] = {}
    for count, name in re.findall(r"(\d+) (\w+)", text):
        calls[name] = calls.get(name, 0) + int(count)
    return calls


def chronos_figures(run: Run) -> List[Figure]:
    rows: Dict[str, List[str]] = {}
    for line in run.output.splitlines():
        cells = [c.strip() for c in re.split(r"\s{2,}", line.strip())]
        if len(cells) >= 4 and not set(cells[0]) <= {"-"}:
            rows[cells[0]] = cells
    out = []

    def row(prefix: str) -> Optional[List[str]]:
        return next((cells for key, cells in rows.items() if key.startswith(prefix)), None)

    cold = row("cold start")
    if cold:
        calls = _calls(cold[1])
        out.append(
            Figure(
                "chronos",
                cold[0],
                f"{cold[1]} ({cold[3]})",
                "1 list + 10 provision",
                calls == {"list": 1, "provision": 10},
            )
        )
    for prefix, want in (
        ("warm on_jobs_changed", 1),
        ("warm reconcile, nothing changed", 0),
        ("warm reconcile, 1 of", 1),
    ):
        cells = row(prefix)
        if cells:
            total = sum(_calls(cells[1]).values())
            out.append(
                Figure(
                    "chronos",
                    cells[0],
                    f"{cells[1]} ({cells[3]})",
                    f"{want} request{'s' if want != 1 else ''}",
                    total == want,
                )
            )
    verify = row("verify")
    if verify:
        out.append(
            Figure(
                "chronos",
                verify[0],
                f"{verify[3]}, {verify[1]}",
                "1 fetch",
                verify[1].startswith("1 "),
            )
        )
    return out or [_missing("chronos", "NAS requests")]


def startup_args(full: bool) -> List[str]:
    return ["--runs", "20" if full else "9", "--json"]


def startup_figures(run: Run) -> List[Figure]:
    try:
        data = json.loads(run.output.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return [_missing("startup", "ratio")]
    base = data["python -c pass"]
    out = []
    for name, ratio in (data.get("ratios") or {"status": data["ratio"]}).items():
        out.append(
            Figure(
                "startup",
                f"hermes-cron {name} / python -c pass (medians)",
                f"{data['hermes-cron ' + name] * 1000:.0f} ms / {base * 1000:.0f} ms "
                f"= {ratio:.1f}x",
                f"<= {data['goal_ratio']:g}x",
                ratio <= data["goal_ratio"],
            )
        )
    out.append(
        Figure(
            "startup",
            "hermes-cron --help; import hermes_cron.cli",
            f"{data['hermes-cron --help'] * 1000:.0f} ms; "
            f"{data['import hermes_cron.cli'] * 1000:.0f} ms",
        )
    )
    return out


#: name -> (script, args(full, scratch), figures(run, scratch))
BENCHES: Dict[str, Tuple[str, Callable[..., List[str]], Callable[..., List[Figure]]]] = {
    "store": ("bench_store.py", store_args, store_figures),
    "lateness": (
        "bench_lateness.py",
        lambda full, scratch: lateness_args(full, spread=False),
        lambda run, scratch: lateness_figures(run),
    ),
    "lateness-spread": (
        "bench_lateness.py",
        lambda full, scratch: lateness_args(full, spread=True),
        lambda run, scratch: lateness_figures(run),
    ),
    "lateness-command": (
        "bench_lateness.py",
        lambda full, scratch: lateness_args(full, spread=True, command=True),
        lambda run, scratch: lateness_figures(run),
    ),
    "store-peers": ("bench_store_peers.py", peers_args, peers_figures),
    "load": ("bench_load.py", load_args, load_figures),
    "idle": ("bench_idle_cpu.py", lambda f, s: idle_args(f), lambda r, s: idle_figures(r)),
    "chronos": ("bench_chronos.py", lambda f, s: chronos_args(f), lambda r, s: chronos_figures(r)),
    "startup": ("bench_startup.py", lambda f, s: startup_args(f), lambda r, s: startup_figures(r)),
}


def run_bench(name: str, full: bool, scratch: Path) -> Run:
    script, make_args, _ = BENCHES[name]
    argv = [sys.executable, str(BENCH / script), *make_args(full, scratch)]
    run = Run(name, argv)
    path = BENCH / script
    if not path.exists():
        run.code, run.output = -1, f"{path} does not exist"
        return run
    began = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=str(BENCH.parent))
    run.seconds = time.monotonic() - began
    run.code = proc.returncode
    run.output = proc.stdout + (proc.stderr if proc.returncode else "")
    return run


def _machine() -> str:
    try:
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    return (
        f"python {platform.python_version()} on {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} cores, load average {load}"
    )


def report(runs: List[Run], full: bool, started: datetime) -> str:
    figures = [f for run in runs for f in run.figures]
    missed = [f for f in figures if f.met is False]
    lines = [
        f"# hermes-cron benchmarks ({'full' if full else 'short'} run)",
        "",
        f"{started.strftime('%Y-%m-%d %H:%M UTC')}; {_machine()}.",
        f"Goals met: {sum(1 for f in figures if f.met)} of "
        f"{sum(1 for f in figures if f.met is not None)}"
        + (f"; missed: {', '.join(f'{f.bench}: {f.name}' for f in missed)}" if missed else "")
        + ".",
        "",
        "| bench | figure | value | goal | verdict |",
        "| --- | --- | --- | --- | --- |",
    ]
    for f in figures:
        cells = [f.bench, f.name, f.value, f.goal or "-", f.verdict]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines += ["", "## Output of each script", ""]
    for run in runs:
        command = " ".join(
            ["python", *[Path(a).name if a.endswith(".py") else a for a in run.argv[1:]]]
        )
        lines += [
            f"### {run.name}: `{command}`",
            "",
            f"exit code {run.code}, {run.seconds:.0f} s",
            "",
            "```text",
            run.output.rstrip(),
            "```",
            "",
        ]
    return "\n".join(lines)


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the goals' durations (minutes)")
    parser.add_argument("--only", help=f"comma-separated subset of: {', '.join(BENCHES)}")
    parser.add_argument("--out", default=str(RESULTS / "latest.md"), help="report path")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args(argv)
    names = list(BENCHES)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in BENCHES]
        if unknown:
            parser.error(f"unknown bench {', '.join(unknown)} (known: {', '.join(BENCHES)})")
    started = datetime.now(timezone.utc)
    runs: List[Run] = []
    with tempfile.TemporaryDirectory(prefix="hermes-cron-benches-") as folder:
        scratch = Path(folder)
        for name in names:
            print(f"running {name} ...", file=sys.stderr, flush=True)
            run = run_bench(name, args.full, scratch)
            if run.code == 0:
                run.figures = BENCHES[name][2](run, scratch)
            else:
                run.figures = [Figure(name, "run", f"failed (exit code {run.code})", "", False)]
            runs.append(run)
    text = report(runs, args.full, started)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n", encoding="utf-8")
    print(text)
    print(f"\n(written to {out})", file=sys.stderr)
    missed = any(f.met is False for run in runs for f in run.figures)
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
