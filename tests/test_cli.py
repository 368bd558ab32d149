"""The command line, in process: every command, every --json shape, every error path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, List, Tuple

import pytest
from helpers.contract import JOB_FIELDS
from helpers.servicekit import write_config, write_user_plugin

from hermes_cron.cli import main
from hermes_cron.timeutil import parse_iso

RUN_KEYS = {
    "job_id",
    "fire_at",
    "provider",
    "started_at",
    "finished_at",
    "status",
    "output",
    "attempt",
}


class CLI:
    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *argv: str) -> Tuple[int, str, str]:
        self.capsys.readouterr()
        code = main(list(argv))
        out, err = self.capsys.readouterr()
        return code, out, err

    def json(self, *argv: str) -> Any:
        code, out, err = self("--json", *argv)  # before any "--"
        assert code == 0, err
        return json.loads(out)


@pytest.fixture
def cli(home: Path, capsys: pytest.CaptureFixture[str]) -> CLI:
    return CLI(capsys)


def jobs_file(home: Path) -> Path:
    return home / "cron" / "jobs.json"


def test_add_prints_the_id_and_json_prints_the_record(cli: CLI, home: Path) -> None:
    code, out, err = cli("add", "every", "5m", "--", "echo", "--name", "x")
    assert code == 0 and err == ""
    job_id = out.strip()
    record = cli.json("show", job_id)
    assert record["command"] == ["echo", "--name", "x"]  # everything after -- is the command
    assert record["schedule"]["text"] == "every 5m"
    added = cli.json("add", "0 9 * * 1-5", "--prompt", "standup notes", "--name", "standup")
    assert JOB_FIELDS <= set(added)
    assert added["prompt"] == "standup notes" and added["name"] == "standup"
    assert added["command"] is None and added["state"] == "scheduled"
    repeated = cli.json("add", "every 1h", "--repeat", "3", "--tz", "Asia/Tokyo", "--prompt", "p")
    assert repeated["repeat"] == {"times": 3, "completed": 0}
    assert repeated["schedule"]["tz"] == "Asia/Tokyo"


def test_list_show_pause_resume_remove(cli: CLI, home: Path) -> None:
    a = cli.json("add", "every", "1h", "--prompt", "a")
    b = cli.json("add", "every", "2h", "--prompt", "b")
    listed = cli.json("list")
    assert [j["id"] for j in listed] == [a["id"], b["id"]]
    assert all(JOB_FIELDS <= set(j) for j in listed)
    assert cli.json("pause", a["id"])["state"] == "paused"
    code, out, _ = cli("list")
    assert code == 0 and "paused" in out and b["id"] in out
    assert cli.json("resume", a["id"])["state"] == "scheduled"
    code, out, _ = cli("pause", a["id"])
    assert code == 0 and out.startswith(f"paused {a['id']}")
    removed = cli.json("remove", b["id"])
    assert removed["id"] == b["id"]
    assert [j["id"] for j in cli.json("list")] == [a["id"]]
    code, out, _ = cli("show", a["id"])
    assert code == 0 and f"id:          {a['id']}" in out and "state:       paused" in out


def test_completed_jobs_only_with_all(cli: CLI, home: Path) -> None:
    job = cli.json("add", "+1h", "--", "true")
    cli.json("run", job["id"])  # a manual run does not complete a one-shot
    assert [j["id"] for j in cli.json("list")] == [job["id"]]
    data = json.loads(jobs_file(home).read_text())
    data["jobs"][0]["state"] = "completed"
    data["jobs"][0]["next_run_at"] = None
    jobs_file(home).write_text(json.dumps(data))
    assert cli.json("list") == []
    assert [j["id"] for j in cli.json("list", "--all")] == [job["id"]]
    code, out, _ = cli("list")
    assert code == 0 and out == "no jobs\n"


def test_run_and_runs(cli: CLI, home: Path) -> None:
    ok = cli.json("add", "every", "1h", "--", sys.executable, "-c", "print('hello')")
    bad = cli.json("add", "every", "1h", "--", sys.executable, "-c", "raise SystemExit(3)")
    result = cli.json("run", ok["id"])
    assert result["status"] == "ok" and result["claim"] == "won"
    assert "hello" in Path(result["output_path"]).read_text()
    code, out, _ = cli("run", bad["id"])
    assert code == 1 and "error: exit code 3" in out
    rows = cli.json("runs")
    assert [r["job_id"] for r in rows] == [bad["id"], ok["id"]]  # newest first
    assert all(RUN_KEYS <= set(r) for r in rows)
    assert rows[1]["status"] == "ok" and rows[1]["provider"] == "builtin"
    assert [r["job_id"] for r in cli.json("runs", ok["id"])] == [ok["id"]]
    assert len(cli.json("runs", "--limit", "1")) == 1
    code, out, _ = cli("runs")
    assert code == 0 and "STATUS" in out and bad["id"] in out


def test_next(cli: CLI) -> None:
    times = cli.json(
        "next", "0 9 * * 1-5", "--after", "2026-03-06T10:00", "--tz", "Europe/Paris", "--count", "3"
    )
    assert times == [
        "2026-03-09T09:00:00+01:00",
        "2026-03-10T09:00:00+01:00",
        "2026-03-11T09:00:00+01:00",
    ]
    every = cli.json("next", "every", "90s", "--after", "2026-03-06T10:00:00Z", "--count", "2")
    assert [parse_iso(t).isoformat() for t in every] == [
        "2026-03-06T10:01:30+00:00",
        "2026-03-06T10:03:00+00:00",
    ]
    code, out, _ = cli("next", "@daily", "--after", "2026-03-06T10:00Z", "--tz", "UTC")
    assert code == 0 and "Sat 2026-03-07 00:00:00 UTC" in out


def test_status_and_providers(cli: CLI, home: Path) -> None:
    job = cli.json("add", "every", "1h", "--", "true")
    status = cli.json("status")
    assert {
        "provider",
        "requested",
        "fallback_reason",
        "heartbeat_at",
        "last_error",
        "jobs",
        "next_due",
    } <= set(status)
    assert status["jobs"] == 1 and status["next_due"][0]["id"] == job["id"]
    providers = cli.json("providers")
    assert [p["name"] for p in providers if p["active"]] == ["builtin"]
    for p in providers:
        assert {"name", "source", "path", "available", "active", "shadowed_by", "error"} <= set(p)
        assert p["source"] in ("builtin", "bundled", "user", "entrypoint")
        assert p["available"] in (True, False, None)
    code, out, _ = cli("providers")
    assert code == 0 and "* builtin" in out and "chronos" in out
    code, out, _ = cli("status")
    assert code == 0 and "provider:    builtin" in out and job["id"] in out


def test_status_shows_the_fallback_reason_heartbeat_and_last_error(cli: CLI, home: Path) -> None:
    write_config(home, {"cron": {"provider": "nonesuch"}})
    (home / "cron").mkdir()
    (home / "cron" / "status.json").write_text(
        json.dumps(
            {
                "heartbeat_at": "2026-03-02T12:00:00+00:00",
                "last_error": "scheduler iteration failed: boom",
                "last_error_at": "2026-03-02T11:59:00+00:00",
                "pid": 4242,
                "host": "box",
            }
        )
    )
    status = cli.json("status")
    assert status["provider"] == "builtin" and status["requested"] == "nonesuch"
    assert "unknown provider 'nonesuch'" in status["fallback_reason"]
    assert status["heartbeat_at"] == "2026-03-02T12:00:00+00:00"
    assert status["last_error"] == "scheduler iteration failed: boom"
    code, out, err = cli("status")
    assert code == 0
    assert "fallback:    unknown provider 'nonesuch'" in out
    assert "(stale: last seen" in out and "pid 4242 on box)" in out  # nobody beats it now
    assert "scheduler iteration failed: boom" in out
    assert cli.json("status")["running_process"]["alive"] is False
    assert "using the built-in provider" in err  # the fallback warning
    providers = cli.json("providers")
    assert [p["name"] for p in providers if p["active"]] == ["builtin"]


def test_user_provider_is_active_in_providers(cli: CLI, home: Path) -> None:
    write_user_plugin(
        home,
        "mine",
        "from hermes_cron import hookimpl\n\n"
        "@hookimpl\ndef is_available(config):\n    return True\n",
    )
    write_config(home, {"cron": {"provider": "mine"}})
    providers = cli.json("providers")
    assert [p["name"] for p in providers if p["active"]] == ["mine"]
    assert cli.json("status")["provider"] == "mine"


BAD_INPUT: List[Tuple[List[str], str]] = [
    (["add", "every", "0s", "--", "true"], "every"),
    (["add", "61", "*", "*", "*", "*", "--", "true"], "61"),
    (["add", "every", "1h", "--tz", "Mars/Base", "--", "true"], "Mars/Base"),
    (["add", "every", "1h"], "--prompt"),
    (["add", "every", "1h", "--prompt", "x", "--", "true"], "not both"),
    (["add", "every", "1h", "--"], "empty"),
    (["add", "every", "1h", "--repeat", "0", "--", "true"], "repeat"),
    (["add", "every", "1h", "--repeat", "x", "--", "true"], "invalid int"),
    (["add", "+5m", "--repeat", "2", "--", "true"], "repeat"),
    (["add", "--prompt", "x"], "SCHEDULE"),
    (["show", "nope"], "no job with id 'nope'"),
    (["pause", "nope"], "nope"),
    (["resume", "nope"], "nope"),
    (["remove", "nope"], "nope"),
    (["run", "nope"], "nope"),
    (["next", "bogus"], "bogus"),
    (["next", "every", "1h", "--count", "0"], "--count"),
    (["next", "every", "1h", "--after", "yesterday"], "--after"),
    (["runs", "--limit", "0"], "--limit"),
    (["frobnicate"], "invalid choice"),
    ([], "a command is required"),
]


@pytest.mark.parametrize("argv, fragment", BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_exits_2_with_one_line_and_changes_nothing(
    cli: CLI, home: Path, argv: List[str], fragment: str
) -> None:
    job = cli.json("add", "every", "1h", "--", "true")
    before = jobs_file(home).read_bytes()
    code, out, err = cli(*argv)
    assert code == 2
    assert out == ""
    assert err.startswith("hermes-cron: ") and err.count("\n") == 1, err
    assert fragment in err
    assert jobs_file(home).read_bytes() == before
    assert cli.json("show", job["id"]) == job


NEEDS_JOBS = [
    ["add", "every", "1h", "--", "true"],
    ["list"],
    ["show", "abc"],
    ["pause", "abc"],
    ["resume", "abc"],
    ["remove", "abc"],
    ["run", "abc"],
    ["status"],
    ["tick"],
    ["daemon"],
    ["list", "--json"],
    ["status", "--json"],
]


@pytest.mark.parametrize("argv", NEEDS_JOBS, ids=[" ".join(a) for a in NEEDS_JOBS])
def test_corrupt_jobs_file_exits_2_naming_it_and_keeps_its_bytes(
    cli: CLI, home: Path, argv: List[str]
) -> None:
    path = jobs_file(home)
    path.parent.mkdir(parents=True)
    corrupt = b'{"version": 1, "jobs": [ {"id": "abc", '
    path.write_bytes(corrupt)
    code, out, err = cli(*argv)
    assert code == 2, (out, err)
    assert out == ""
    last = err.strip().splitlines()[-1]
    assert last.startswith("hermes-cron: ") and str(path) in last and "not valid JSON" in last
    assert path.read_bytes() == corrupt


def test_quarantined_records_are_reported_by_list(cli: CLI, home: Path) -> None:
    job = cli.json("add", "every", "1h", "--", "true")
    data = json.loads(jobs_file(home).read_text())
    data["jobs"].append({"id": "bad1", "schedule": {"kind": "cron"}, "command": ["true"]})
    jobs_file(home).write_text(json.dumps(data))
    code, out, err = cli("list")
    assert code == 0 and job["id"] in out
    assert "warning: quarantined record #2 (id 'bad1')" in err
    code, out, err = cli("list", "--json")
    assert [j["id"] for j in json.loads(out)] == [job["id"]]
    assert "bad1" in err
    assert cli.json("status")["quarantined"][0]["id"] == "bad1"


def test_unexpected_errors_are_one_line_and_debug_shows_the_traceback(
    cli: CLI, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hermes_cron.service import CronService

    def broken(self: Any) -> Any:
        raise ZeroDivisionError("division by zero in status")

    monkeypatch.setattr(CronService, "status", broken)
    code, out, err = cli("status")
    assert code == 1 and out == ""
    assert err.count("\n") == 1
    assert "internal error: ZeroDivisionError: division by zero in status" in err
    code, _, err = cli("--debug", "status")
    assert code == 1 and "Traceback (most recent call last)" in err
    monkeypatch.setenv("HERMES_CRON_DEBUG", "1")
    code, _, err = cli("status")
    assert code == 1 and "Traceback" in err


def test_malformed_config_warns_and_still_works(cli: CLI, home: Path) -> None:
    (home / "config.yaml").write_text("cron: [unclosed\n", encoding="utf-8")
    code, out, err = cli("add", "every", "1h", "--", "true")
    assert code == 0 and out.strip()
    assert str(home / "config.yaml") in err and "malformed YAML" in err
    assert "malformed YAML" in cli.json("status")["config_error"]


def test_home_option(cli: CLI, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    job = cli.json("--home", str(other), "add", "every", "1h", "--", "true")
    assert (other / "cron" / "jobs.json").exists()
    assert cli.json("list", "--home", str(other))[0]["id"] == job["id"]


def test_tick_json(cli: CLI, home: Path) -> None:
    summary = cli.json("tick")
    assert summary["results"] == [] and summary["provider"] == "builtin"


def test_help_exits_0(cli: CLI) -> None:
    code, out, _ = cli("--help")
    assert code == 0 and "providers" in out and "daemon" in out


#: What a command that only reads or adds jobs, with the built-in selected, never imports
#: (issue 12: each of these costs a noticeable part of a bare interpreter start).
NOT_AT_START_UP = (
    "attr",
    "attrs",
    "pluggy",
    "yaml",
    "httpx",
    "starlette",
    "uvicorn",
    "jwt",
    "cryptography",
    "hashlib",
    "builtin_plugins",
    "hermes_cron.discovery",
    "hermes_cron.plugin_manager",
    "hermes_cron.builtin_provider",
    "hermes_cron.runner",
    "hermes_cron.context",
)


@pytest.mark.parametrize(
    "argv",
    [["status"], ["list"], ["add", "every 5m", "--", "true"], ["next", "0 9 * * 1-5"]],
    ids=lambda argv: argv[0],
)
def test_quick_commands_import_only_what_they_use(home: Path, argv: List[str]) -> None:
    # Jobs of every kind in the store (a cron expression, plain English, an interval).
    assert main(["add", "*/5 * * * *", "--", "true"]) == 0
    assert main(["add", "every day at 9am", "--", "true"]) == 0
    assert main(["add", "every 90s", "--", "true"]) == 0
    code = (
        "import sys\n"
        "from hermes_cron.cli import main\n"
        f"rc = main({argv!r})\n"
        f"loaded = sorted(m for m in {NOT_AT_START_UP!r} if m in sys.modules)\n"
        "print('LOADED', loaded)\n"
        "raise SystemExit(rc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stdout, proc.stdout


def test_cli_startup_imports_no_http_stack(home: Path) -> None:
    code = (
        "import sys\n"
        "from hermes_cron.cli import main\n"
        "rc = main(['status'])\n"
        "heavy = sorted(m for m in ('httpx', 'starlette', 'uvicorn', 'jwt') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
        "raise SystemExit(rc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["status"],
        ["--json", "list", "--all"],
        ["--home", "/elsewhere", "runs", "--limit", "3"],
        ["--home=/elsewhere", "show", "abc"],
        ["add", "every 5m", "--name", "n", "--repeat", "2"],
        ["next", "0 9 * * 1-5", "--count", "2"],
        ["store", "export", "jobs.json"],
        ["store"],
        ["statu"],
        ["list", "--bogus"],
        ["--ho", "/elsewhere", "status"],
    ],
)
def test_the_parser_built_for_one_command_parses_as_the_full_one(argv: List[str]) -> None:
    """``main`` builds only the named command's parser (start-up, issue 12): same result,
    same error, for every command line."""
    from hermes_cron import cli as cli_module
    from hermes_cron.errors import UsageError

    def parse(how: Any) -> Any:
        try:
            ns = how(list(argv))
        except UsageError as exc:
            return ("error", str(exc))
        func = getattr(ns, "func", None)
        return ({k: v for k, v in vars(ns).items() if k != "func"}, getattr(func, "__name__", None))

    assert parse(cli_module._parse) == parse(lambda a: cli_module.build_parser().parse_args(a))
