"""Fuzz the text a user hands the command line: names, prompts, commands and schedules
with any characters, including bytes that are not UTF-8 (which arrive in ``sys.argv`` as
lone surrogates, ``"\\udcff"``).

Promise: ``add`` either stores a job or exits 2 with one line; nothing it stores can
break a later write, ``list``, ``show`` or a run; what the CLI prints is UTF-8.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fuzzkit import a_home, clean_stderr, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hermes_cron.builtin_provider import run_due_once
from hermes_cron.clock import FakeClock
from hermes_cron.service import CronService
from hermes_cron.timeutil import UTC, to_iso

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
#: Any code point, lone surrogates included (how undecodable argv bytes look).
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=[]), max_size=12)
UNDECODABLE = st.binary(min_size=1, max_size=6).map(lambda b: b.decode("utf-8", "surrogateescape"))
TEXT = st.one_of(ANY_TEXT, UNDECODABLE, st.tuples(ANY_TEXT, UNDECODABLE).map("".join))


def _printable(out: str) -> bool:
    try:
        out.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@FUZZ
@given(name=TEXT, prompt=TEXT, arg=TEXT, schedule=st.one_of(st.just("every 1h"), TEXT))
def test_any_text_on_the_command_line_is_stored_or_refused_in_one_line(
    name: str, prompt: str, arg: str, schedule: str
) -> None:
    with a_home() as home:
        base = ["--home", str(home)]
        for argv in (
            ["add", schedule, "--name", name, "--prompt", prompt or "p"],
            ["add", "every 1h", "--name", name, "--", "echo", arg],
        ):
            code, out, err = run_cli(*base, *argv)
            assert code in (0, 2), (argv, err)
            assert clean_stderr(err), err
            assert _printable(out)
        for argv in (["list", "--all"], ["--json", "list"], ["status"]):
            code, out, err = run_cli(*base, *argv)
            assert code == 0 and clean_stderr(err), (argv, err)
            assert _printable(out), argv
        for job in json.loads(run_cli(*base, "--json", "list")[1]):
            code, out, err = run_cli(*base, "show", job["id"])
            assert code == 0 and _printable(out), err


def test_an_escaped_lone_surrogate_in_jobs_json_is_quarantined(home: Path) -> None:
    now = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    service = CronService.from_home(home, clock=FakeClock(now))
    good = service.add_job("every 1m", prompt="fine")
    jobs_file = home / "cron" / "jobs.json"
    doc = json.loads(jobs_file.read_text())
    bad = dict(doc["jobs"][0], id="surrogate1", prompt="bad \udcff byte")
    bad["next_run_at"] = to_iso(now - timedelta(seconds=1))
    doc["jobs"].append(bad)
    jobs_file.write_text(json.dumps(doc))  # ensure_ascii: written as "\udcff"
    assert "\\udcff" in jobs_file.read_text()
    service = CronService.from_home(home, clock=FakeClock(now + timedelta(minutes=2)))
    snap = service.store.snapshot()
    assert [j["id"] for j in snap.jobs] == [good["id"]]
    assert [q.job_id for q in snap.quarantined] == ["surrogate1"]
    assert "surrogate" in snap.quarantined[0].error
    run_due_once(service.ctx)  # writes claims and results: never trips on the bad record
    assert "\\udcff" in jobs_file.read_text()  # kept as it was
    code, out, err = run_cli("--home", str(home), "list")
    assert code == 0 and _printable(out) and _printable(err)


@pytest.mark.parametrize("field", ["prompt", "name", "command"])
def test_undecodable_bytes_are_refused_by_the_service_too(home: Path, field: str) -> None:
    service = CronService.from_home(home)
    kwargs = {"prompt": "p"} if field != "command" else {}
    if field == "command":
        kwargs["command"] = ["echo", "\udcff"]
    else:
        kwargs[field] = "x\udcfey"
    from hermes_cron.errors import UsageError

    with pytest.raises(UsageError, match="not UTF-8 text"):
        service.add_job("every 1h", **kwargs)
    assert service.store.list_jobs() == []
