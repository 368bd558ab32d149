"""``hermes-cron add`` with the job options of SPEC §4.1, and ``hermes-cron edit``: each
option stored and checked, a bad value one line and exit 2 with jobs.json unchanged
(byte for byte), only the fields given changed, and the provider told."""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest
from helpers.servicekit import run_cli, write_config, write_user_plugin

from hermes_cron.cli import main
from hermes_cron.store.rules import jitter_offset
from hermes_cron.timeutil import parse_iso


class CLI:
    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *argv: str) -> Tuple[int, str, str]:
        self.capsys.readouterr()
        code = main(list(argv))
        out, err = self.capsys.readouterr()
        return code, out, err

    def json(self, *argv: str) -> Any:
        code, out, err = self("--json", *argv)
        assert code == 0, err
        return json.loads(out)


@pytest.fixture
def cli(home: Path, capsys: pytest.CaptureFixture[str]) -> CLI:
    return CLI(capsys)


def jobs_bytes(home: Path) -> bytes:
    return (home / "cron" / "jobs.json").read_bytes()


def test_the_report_job_of_the_issue(home: Path) -> None:
    """``hermes-cron add 'every 1h' --jitter 2m --retries 3 --timeout 10m -- ./report.sh``
    does what it says, and ``edit`` changes it in place."""
    added = run_cli(
        home, "add", "every 1h", "--jitter", "2m", "--retries", "3", "--timeout", "10m",
        "--", "./report.sh",
    )  # fmt: skip
    assert added.returncode == 0 and added.stderr == "", added.stderr
    job_id = added.stdout.strip()
    job = json.loads(run_cli(home, "show", job_id, "--json").stdout)
    assert (job["jitter"], job["retries"], job["timeout"]) == (120, 3, 600)
    assert job["command"] == ["./report.sh"] and job["retry_delay"] is None
    scheduled = parse_iso(job["next_scheduled_at"])
    assert scheduled == parse_iso(job["schedule"]["anchor"]) + timedelta(hours=1)
    assert parse_iso(job["next_run_at"]) == scheduled + jitter_offset(job_id, scheduled, 120)

    edited = run_cli(home, "edit", job_id, "--jitter", "5m", "--retry-delay", "1m", "--json")
    assert edited.returncode == 0, edited.stderr
    after = json.loads(edited.stdout)
    assert after["id"] == job_id and after["created_at"] == job["created_at"]
    assert (after["jitter"], after["retries"], after["retry_delay"]) == (300, 3, 60)
    assert parse_iso(after["next_scheduled_at"]) == scheduled
    assert parse_iso(after["next_run_at"]) == scheduled + jitter_offset(job_id, scheduled, 300)
    assert [j["id"] for j in json.loads(run_cli(home, "list", "--json").stdout)] == [job_id]


def test_add_stores_every_option(cli: CLI, tmp_path: Path) -> None:
    job = cli.json(
        "add", "every 30m", "--tz", "Europe/Paris",
        "--misfire-grace", "90", "--timeout", "1h30m", "--jitter", "45s",
        "--overlap", "queue", "--retries", "2", "--retry-delay", "2m",
        "--cwd", str(tmp_path), "--env", "A=1", "--env", "B=x=y",
        "--until", "2027-01-01T09:00",
        "--", "true",
    )  # fmt: skip
    assert job["misfire_grace"] == 90 and job["timeout"] == 5400 and job["jitter"] == 45
    assert job["overlap"] == "queue" and job["retries"] == 2 and job["retry_delay"] == 120
    assert job["cwd"] == str(tmp_path) and job["env"] == {"A": "1", "B": "x=y"}
    assert job["until"] == "2027-01-01T08:00:00+00:00"  # 09:00 in Paris, stored in UTC
    plain = cli.json("add", "every 30m", "--", "true")
    for key in ("jitter", "overlap", "retries", "retry_delay", "cwd", "env", "until"):
        assert plain[key] is None, key  # null: the default


BAD_OPTIONS: List[Tuple[List[str], str]] = [
    (["--jitter", "2x"], "jitter: '2x' is not a duration"),
    (["--jitter", "-5"], "jitter"),
    (["--timeout", "0"], "timeout: must be more than 0"),
    (["--timeout", "nan"], "timeout"),
    (["--misfire-grace", "soon"], "misfire-grace"),
    (["--retry-delay", "0s"], "retry-delay"),
    (["--retries", "three"], "retries"),
    (["--retries", "101"], "retries"),
    (["--overlap", "both"], "overlap: 'both' is not one of skip, queue, replace"),
    (["--cwd", "relative/dir"], "cwd: 'relative/dir' is not an absolute path"),
    (["--env", "NOEQUALS"], "env: 'NOEQUALS' is not KEY=VALUE"),
    (["--env", "1X=2"], "env"),
    (["--until", "tomorrow"], "until: 'tomorrow' is not an ISO 8601 time"),
    (["--until", "2020-01-01T00:00"], "never fires before --until"),
    (["--jitter", "200y"], "jitter"),
]


@pytest.mark.parametrize("option, words", BAD_OPTIONS)
def test_a_bad_option_on_add_is_one_line_and_writes_nothing(
    home: Path, option: List[str], words: str
) -> None:
    keep = run_cli(home, "add", "every 1h", "--", "true")
    assert keep.returncode == 0
    before = jobs_bytes(home)
    proc = run_cli(home, "add", "every 1h", *option, "--", "true")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and words in proc.stderr, proc.stderr
    assert jobs_bytes(home) == before


@pytest.mark.parametrize(
    "option, words",
    [
        *BAD_OPTIONS[:-2],
        (["--schedule", "every 0s"], "at least 1 second"),
        (["--tz", "Mars/Olympus"], "unknown time zone"),
        (["--repeat", "0"], "repeat"),
        (["--clear", "colour"], "--clear: 'colour' is not an option"),
        (["--jitter", "1m", "--clear", "jitter"], "both set and cleared"),
        ([], "nothing to change"),
        (["--prompt", "p", "--", "true"], "not both"),
        (["--repeat", "2", "--schedule", "+5m"], "one-shot"),
    ],
)
def test_a_bad_edit_is_one_line_and_leaves_jobs_json_byte_identical(
    home: Path, option: List[str], words: str
) -> None:
    job_id = run_cli(home, "add", "every 1h", "--", "true").stdout.strip()
    run_cli(home, "add", "every 2h", "--", "true")
    before = jobs_bytes(home)
    proc = run_cli(home, "edit", job_id, *option)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and words in proc.stderr, proc.stderr
    assert jobs_bytes(home) == before


def test_edit_of_an_unknown_or_quarantined_job_is_refused(cli: CLI, home: Path) -> None:
    code, out, err = cli("edit", "nope", "--name", "x")
    assert code == 2 and "no job with id 'nope'" in err
    job = cli.json("add", "every 1h", "--", "true")
    path = home / "cron" / "jobs.json"
    data = json.loads(path.read_text())
    data["jobs"][0]["jitter"] = "a lot"  # hand-edited: quarantined
    path.write_text(json.dumps(data))
    before = path.read_bytes()
    code, out, err = cli("edit", job["id"], "--jitter", "1m")
    assert code == 2 and "quarantined" in err and "jitter" in err
    assert path.read_bytes() == before


def test_edit_changes_only_the_fields_given(cli: CLI) -> None:
    job = cli.json("add", "every 1h", "--name", "n", "--retries", "1", "--", "echo", "a")
    renamed = cli.json("edit", job["id"], "--name", "report")
    assert _diff(job, renamed) == {"name", "updated_at"}
    timed = cli.json("edit", job["id"], "--timeout", "5m", "--overlap", "replace")
    assert _diff(renamed, timed) == {"timeout", "overlap", "updated_at"}
    assert timed["next_run_at"] == job["next_run_at"]
    cleared = cli.json("edit", job["id"], "--clear", "retries", "--clear", "timeout")
    assert _diff(timed, cleared) == {"retries", "timeout", "updated_at"}
    assert cleared["retries"] is None and cleared["timeout"] is None
    command = cli.json("edit", job["id"], "--", "echo", "b", "--name", "not an option")
    assert command["command"] == ["echo", "b", "--name", "not an option"]
    assert command["name"] == "report"  # given by hand: kept
    prompt = cli.json("edit", job["id"], "--prompt", "summarize")
    assert prompt["prompt"] == "summarize" and prompt["command"] is None


def test_edit_env_adds_variables_and_clear_env_replaces_them(cli: CLI) -> None:
    job = cli.json("add", "every 1h", "--env", "A=1", "--env", "B=2", "--", "true")
    added = cli.json("edit", job["id"], "--env", "B=3", "--env", "C=4")
    assert added["env"] == {"A": "1", "B": "3", "C": "4"}
    replaced = cli.json("edit", job["id"], "--clear", "env", "--env", "D=5")
    assert replaced["env"] == {"D": "5"}
    gone = cli.json("edit", job["id"], "--clear", "env")
    assert gone["env"] is None


def test_a_new_schedule_zone_or_jitter_recomputes_next_run_at(cli: CLI) -> None:
    job = cli.json("add", "0 9 * * *", "--tz", "UTC", "--", "true")
    schedule = cli.json("edit", job["id"], "--schedule", "30 10 * * *")
    assert schedule["schedule"]["expr"] == "30 10 * * *" and schedule["schedule"]["tz"] == "UTC"
    assert parse_iso(schedule["next_run_at"]).strftime("%H:%M") == "10:30"
    zone = cli.json("edit", job["id"], "--tz", "Asia/Tokyo")
    assert zone["schedule"]["expr"] == "30 10 * * *" and zone["schedule"]["tz"] == "Asia/Tokyo"
    assert parse_iso(zone["next_run_at"]).strftime("%H:%M") == "01:30"  # 10:30 JST in UTC
    jittered = cli.json("edit", job["id"], "--jitter", "1h")
    scheduled = parse_iso(zone["next_run_at"])
    assert jittered["next_scheduled_at"] == zone["next_run_at"]
    assert parse_iso(jittered["next_run_at"]) == scheduled + jitter_offset(
        job["id"], scheduled, 3600
    )
    both = cli.json("edit", job["id"], "--schedule", "0 8 * * *", "--tz", "America/New_York")
    assert both["schedule"]["tz"] == "America/New_York"


def test_edit_until_in_the_past_completes_the_job(cli: CLI) -> None:
    job = cli.json("add", "every 1h", "--", "true")
    done = cli.json("edit", job["id"], "--until", job["created_at"])
    assert done["state"] == "completed" and done["next_run_at"] is None
    code, out, _ = cli("list")
    assert job["id"] not in out  # completed: hidden


def test_edit_prints_what_changed(cli: CLI) -> None:
    job = cli.json("add", "every 1h", "--name", "daily report", "--", "true")
    code, out, err = cli("edit", job["id"], "--jitter", "10m")
    assert code == 0 and err == ""
    assert out.startswith(f"edited {job['id']} (daily report); next run ")


def test_show_lists_the_options_that_are_set(cli: CLI) -> None:
    job = cli.json(
        "add", "every 1h", "--jitter", "2m", "--retries", "3", "--overlap", "queue",
        "--env", "A=1", "--", "true",
    )  # fmt: skip
    code, out, _ = cli("show", job["id"])
    lines = dict(line.split(":", 1) for line in out.splitlines())
    assert lines["jitter"].strip() == "2m 0s"
    assert lines["retries"].strip() == "3 (first after 30s, doubling)"
    assert lines["overlap"].strip() == "queue" and lines["env"].strip() == "A=1"
    assert "timeout" not in lines and "cwd" not in lines


def test_edit_notifies_the_provider(home: Path) -> None:
    write_user_plugin(
        home,
        "recorder",
        f"""
        import json
        from hermes_cron import hookimpl

        @hookimpl
        def on_jobs_changed(ctx, job_ids):
            with open({str(home / "changed.jsonl")!r}, "a") as out:
                out.write(json.dumps(list(job_ids)) + "\\n")
            return True
        """,
    )
    write_config(home, {"cron": {"provider": "recorder"}})
    job_id = run_cli(home, "add", "every 1h", "--", "true").stdout.strip()
    assert run_cli(home, "edit", job_id, "--jitter", "1m").returncode == 0
    assert run_cli(home, "edit", job_id, "--bogus").returncode == 2  # refused: no notice
    lines = (home / "changed.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [[job_id], [job_id]]


def test_a_timeout_option_stops_the_run(cli: CLI, tmp_path: Path) -> None:
    job = cli.json("add", "every 1h", "--timeout", "1", "--", sys.executable, "-c", _SLEEP)
    code, out, err = cli("run", job["id"])
    assert code == 1 and "timeout" in out and "timed out after 1 s" in out


_SLEEP = "import time; time.sleep(60)"


def _diff(a: Dict[str, Any], b: Dict[str, Any]) -> set:
    return {k for k in set(a) | set(b) if a.get(k) != b.get(k)}
