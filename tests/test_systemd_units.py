"""The systemd units and the alert rule in docs/operations.md are ready to use: each unit
starts the installed ``hermes-cron``, and ``systemd-analyze verify`` accepts it (where
systemd-analyze exists)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
OPERATIONS = ROOT / "docs" / "operations.md"
FENCE = re.compile(r"^```(?P<lang>[\w-]*)(?P<attrs>[^\n]*)\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)
TITLE = re.compile(r'title="(?P<title>[^"]+)"')


def doc_blocks(lang: str) -> List[Tuple[str, str]]:
    """``(attrs, body)`` of every ```lang block of docs/operations.md."""
    text = OPERATIONS.read_text(encoding="utf-8")
    return [(m["attrs"], m["body"]) for m in FENCE.finditer(text) if m["lang"] == lang]


def units() -> Dict[str, str]:
    """Unit text by the file name its block's title gives."""
    found = {}
    for attrs, body in doc_blocks("ini"):
        title = TITLE.search(attrs)
        if title and "[Service]" in body:
            found[title["title"]] = body
    return found


def installed_command() -> str:
    """The ``hermes-cron`` script installed beside the interpreter running the tests."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which("hermes-cron", path=search)
    assert found, "hermes-cron is not installed in this environment"
    return str(Path(found).resolve())


def exec_start(unit: str) -> List[str]:
    lines = [ln for ln in unit.splitlines() if ln.startswith("ExecStart=")]
    assert len(lines) == 1, "one ExecStart= per unit"
    return lines[0].split("=", 1)[1].split()


def test_the_docs_show_a_user_unit_a_system_unit_and_a_serve_unit() -> None:
    names = set(units())
    assert "~/.config/systemd/user/hermes-cron.service" in names
    assert "/etc/systemd/system/hermes-cron.service" in names
    assert "/etc/systemd/system/hermes-cron-serve.service" in names


@pytest.mark.parametrize("title", sorted(units()))
def test_exec_start_names_the_installed_command(title: str) -> None:
    argv = exec_start(units()[title])
    assert Path(argv[0]).name == Path(installed_command()).name == "hermes-cron"
    assert argv[0].startswith(("/", "%h/")), "systemd wants an absolute ExecStart path"
    command = "serve" if title.endswith("-serve.service") else "daemon"
    assert argv[1] == command
    # The options given are real options of the command.
    from hermes_cron.cli import build_parser

    build_parser().parse_args(argv[1:])
    assert "KillMode=mixed" in units()[title], "SIGTERM to the daemon only: jobs finish"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
@pytest.mark.parametrize("title", sorted(units()))
def test_systemd_analyze_verify_accepts_the_unit(title: str, tmp_path: Path) -> None:
    unit = units()[title]
    argv = exec_start(unit)
    real = installed_command()
    text = unit.replace(f"ExecStart={argv[0]} ", f"ExecStart={real} ", 1)
    assert real in text
    path = tmp_path / Path(title).name
    path.write_text(text, encoding="utf-8")
    user = "/systemd/user/" in title
    env = dict(os.environ)
    command = ["systemd-analyze", "verify", str(path)]
    if user:
        runtime = tmp_path / "runtime"
        runtime.mkdir(mode=0o700)
        env["XDG_RUNTIME_DIR"] = str(runtime)
        command.insert(1, "--user")
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    if user and "Failed to initialize manager" in proc.stderr:
        # No user manager can start in this environment: the checks of the unit file are
        # the same in system mode.
        command.remove("--user")
        proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    # systemd only warns about a bad line and exits 0: any word about our file fails.
    assert path.name not in output, output


def test_the_alert_rule_is_valid_yaml_about_our_metrics(tmp_path: Path) -> None:
    rules = [yaml.safe_load(body) for _a, body in doc_blocks("yaml") if "alert:" in body]
    assert len(rules) == 1
    alerts = {r["alert"]: r for group in rules[0]["groups"] for r in group["rules"]}
    stale = alerts["HermesCronHeartbeatStale"]
    assert "hermes_cron_heartbeat_timestamp_seconds" in stale["expr"]
    assert stale["for"] and stale["annotations"]["summary"]
    from datetime import datetime

    from hermes_cron.service import CronService
    from hermes_cron.status_file import write_heartbeat
    from hermes_cron.timeutil import UTC

    service = CronService.from_home(tmp_path, extensions=False)
    write_heartbeat(service.paths, now=datetime.now(UTC), provider="builtin")
    scraped = service.metrics.render().decode()
    assert re.search(r"^hermes_cron_heartbeat_timestamp_seconds \S+$", scraped, re.M), scraped
