"""Job ids and names can never reach outside ``cron/output/``.

Hostile ids (``../x``, ``a/b``, absolute paths, NUL, dots) in a hand-written
``jobs.json`` are quarantined and never run; the output writer keeps even an id that
bypassed the store inside the folder; a name with slashes is only text; the CLI treats a
path-like id as an unknown job.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Dict, List

import pytest
from fuzzkit import Recorder, a_home, clean_stderr, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hermes_cron.builtin_provider import run_due_once
from hermes_cron.clock import FakeClock
from hermes_cron.errors import UsageError
from hermes_cron.paths import HomePaths
from hermes_cron.runner import RunOutcome, render_output
from hermes_cron.schedules import parse_schedule
from hermes_cron.service import CronService
from hermes_cron.store import WON, Claim
from hermes_cron.store.outputs import OutputFiles
from hermes_cron.store.records import ID_RE
from hermes_cron.timeutil import UTC, to_iso

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HOSTILE = st.sampled_from(
    [
        "../x",
        "..",
        ".",
        "a/b",
        "/etc/passwd",
        "..\\x",
        "x/../../y",
        "\x00",
        "x\x00y",
        "~",
        "~root",
        "%2e%2e",
        "CON",
        "-",
        "_",
        "a" * 64,
        "a" * 65,
        " ",
        "",
        "./x",
        "x/",
        "\u2215x",
    ]  # fmt: skip
)
IDS = HOSTILE | st.text(max_size=80)


def _record(job_id: Any) -> Dict[str, Any]:
    schedule = parse_schedule("every 60s", now=NOW - timedelta(hours=1))
    return {
        "id": job_id,
        "schedule": schedule.to_record(),
        "command": ["true"],
        "prompt": None,
        "next_run_at": to_iso(NOW - timedelta(seconds=30)),
    }


def _everything_under(root: Path) -> List[Path]:
    found = []
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            found.append(Path(folder, name))
    return found


@FUZZ
@given(ids=st.lists(IDS, min_size=1, max_size=4, unique=True))
def test_hostile_ids_in_jobs_json_are_quarantined_and_never_run(ids: List[str]) -> None:
    with a_home() as root:
        home = root / "home"
        paths = HomePaths.at(home)
        paths.cron_dir.mkdir(parents=True)
        paths.jobs.write_text(json.dumps({"version": 1, "jobs": [_record(i) for i in ids]}))
        recorder = Recorder()
        service = CronService.from_home(home, clock=FakeClock(NOW), plugins=[recorder])
        snap = service.store.snapshot()
        for job in snap.jobs:
            assert ID_RE.match(job["id"])
        run_due_once(service.ctx)
        assert all(ID_RE.match(job_id) for job_id in recorder.ran)
        # Every file the run wrote is in cron/output/<a valid id>/, nothing anywhere else.
        assert [p.name for p in root.iterdir()] == ["home"]
        for path in _everything_under(home):
            rel = path.relative_to(home)
            assert rel.parts[0] == "cron", rel
            if len(rel.parts) > 2 and rel.parts[1] == "output":
                assert ID_RE.match(rel.parts[2]) and len(rel.parts) <= 4, rel


@FUZZ
@given(job_id=IDS)
def test_the_output_writer_keeps_any_id_inside_the_output_folder(job_id: str) -> None:
    with a_home() as root:
        home = root / "home"
        paths = HomePaths.at(home)
        outputs = OutputFiles(paths)
        claim = Claim(job_id, NOW, WON, "owner", job={"id": job_id, "name": job_id})
        outcome = RunOutcome(status="ok", output="out")
        try:
            path = Path(outputs.write(claim.job_id, NOW, render_output(claim, outcome, NOW, NOW)))
        except UsageError as exc:
            assert "\n" not in str(exc)
        else:
            base = paths.output_dir.resolve()
            assert path.resolve().parent.parent == base, path
        outside = [p for p in _everything_under(root) if paths.output_dir not in p.parents]
        assert all(p in (home, paths.cron_dir, paths.output_dir) for p in outside), outside


@pytest.mark.parametrize("name", ["../../evil", "/etc/cron.d/x", "a/b/c", "..", "x\\..\\y"])
def test_a_name_with_slashes_is_only_text(home: Path, name: str) -> None:
    code, out, err = run_cli(
        "--home", str(home), "add", "every", "1h", "--name", name, "--", "true"
    )
    assert code == 0, err
    job_id = out.strip()
    code, out, err = run_cli("--home", str(home), "--json", "run", job_id)
    assert code == 0, err
    output = Path(json.loads(out)["output_path"])
    assert output.parent == home / "cron" / "output" / job_id
    assert f"# {name}" in output.read_text()
    leftovers = [p for p in _everything_under(home) if home / "cron" not in p.parents]
    assert all(p == home / "cron" for p in leftovers), leftovers


@pytest.mark.parametrize("job_id", ["../x", "../../cron/jobs", "/etc/passwd", "a/b", ".."])
def test_the_cli_treats_a_path_like_id_as_an_unknown_job(home: Path, job_id: str) -> None:
    run_cli("--home", str(home), "add", "every", "1h", "--", "true")
    before = (home / "cron" / "jobs.json").read_bytes()
    for verb in ("show", "run", "pause", "resume", "remove", "runs"):
        code, out, err = run_cli("--home", str(home), verb, job_id)
        if verb == "runs":
            assert code == 0 and out.strip() == "no runs", (verb, out, err)
            continue
        assert code == 2 and clean_stderr(err) and "no job with id" in err, (verb, err)
    assert (home / "cron" / "jobs.json").read_bytes() == before
    assert not (home / "cron" / "output").exists()
