"""Fuzz ``jobs.json`` records: real records with fields replaced, removed or added, and
arbitrary JSON values, beside one good job.

Promise (SPEC §4): every record is either a valid job or quarantined; nothing crashes
(reads, ``status``, ``list``, a tick); a quarantined record is never run, never
rewritten and never dropped by later writes; the good job keeps running.
"""

from __future__ import annotations

import json
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Dict, List

from fuzzkit import Recorder, clean_stderr, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hermes_cron.builtin_provider import run_due_once
from hermes_cron.clock import FakeClock
from hermes_cron.schedules import parse_schedule
from hermes_cron.service import CronService
from hermes_cron.timeutil import UTC, to_iso

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

FIELDS = [
    "id", "name", "schedule", "command", "prompt", "enabled", "state", "repeat", "next_run_at",
    "last_run_at", "last_status", "last_error", "fire_claim", "misfire_grace", "timeout",
    "jitter", "overlap", "retries", "retry_delay", "cwd", "env", "until", "next_scheduled_at",
    "pending_retry", "queued_fire", "created_at", "updated_at", "extra",
    # keys inside the bookkeeping objects
    "fire_at", "due_at", "resume_at", "attempt", "queued_at", "cancel_requested",
]  # fmt: skip
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(
        [
            "",
            "../x",
            "a/b",
            "..",
            "ok-id_1",
            "x" * 65,
            "scheduled",
            "paused",
            "completed",
            "2026-03-02T11:00:00+00:00",
            "2026-03-02T11:00:00",
            "every 90s",
            "UTC",
            "ok",
            "nope",
            "queue",
            "replace",
            "/tmp",
            "9999-12-31T23:59:59+00:00",
        ]  # fmt: skip
    ),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(max_size=8) | st.sampled_from(FIELDS), children, max_size=4)
    ),
    max_leaves=8,
)


def _good(n: int) -> Dict[str, Any]:
    schedule = parse_schedule("every 60s", now=NOW - timedelta(hours=1))
    return {
        "id": f"good{n}",
        "name": "good",
        "schedule": schedule.to_record(),
        "command": ["true"],
        "prompt": None,
        "enabled": True,
        "state": "scheduled",
        "repeat": {"times": None, "completed": 0},
        "next_run_at": to_iso(NOW - timedelta(seconds=30)),
        "last_run_at": None,
        "last_status": None,
        "last_error": None,
        "fire_claim": None,
        "misfire_grace": None,
        "timeout": None,
        "created_at": to_iso(NOW - timedelta(hours=1)),
        "updated_at": to_iso(NOW - timedelta(hours=1)),
    }


@st.composite
def records(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 3)) == 0:
        return draw(JSON)
    record = _good(draw(st.integers(1, 3)))
    for key in draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=4)):
        if draw(st.booleans()):
            record.pop(key, None)
        else:
            record[key] = draw(JSON)
    return record


@FUZZ
@given(bad=st.lists(records(), min_size=1, max_size=4))
def test_any_record_is_a_job_or_quarantined_and_only_valid_jobs_run(bad: List[Any]) -> None:
    with tempfile.TemporaryDirectory(prefix="hermes-fuzz-") as folder:
        home = Path(folder)
        good = _good(0)
        doc = {"version": 1, "jobs": [good, *bad]}
        jobs_file = home / "cron" / "jobs.json"
        jobs_file.parent.mkdir(parents=True)
        jobs_file.write_text(json.dumps(doc, allow_nan=False), encoding="utf-8")

        recorder = Recorder()
        clock = FakeClock(NOW)
        service = CronService.from_home(home, clock=clock, plugins=[recorder])
        snap = service.store.snapshot()
        valid = {job["id"] for job in snap.jobs}
        assert "good0" in valid
        assert len(snap.jobs) + len(snap.quarantined) == len(doc["jobs"])
        for q in snap.quarantined:
            assert q.error and "\n" not in q.error
        quarantined_raw = [json.dumps(q.record, allow_nan=False) for q in snap.quarantined]

        status = service.status()
        assert status["jobs"] == len(snap.jobs)
        assert len(status["quarantined"]) == len(snap.quarantined)
        service.store.list_jobs(include_completed=True)
        for argv in (["list", "--json"], ["status"], ["list", "--all"]):
            code, out, err = run_cli("--home", str(home), *argv)
            assert code == 0 and clean_stderr(err), (argv, err)

        summary = run_due_once(service.ctx)  # every valid job that is due runs, once
        assert set(recorder.ran) <= valid
        assert "good0" in recorder.ran
        assert len(recorder.ran) == len(set(recorder.ran))
        assert all(
            r["status"] is None or r["status"] in ("ok", "skipped", "missed", "error")
            for r in summary["results"]
        )

        # Later writes keep every quarantined record, untouched, in place.
        service.add_job("every 1h", command=["true"])
        after = json.loads(jobs_file.read_text(encoding="utf-8"))
        kept = [json.dumps(r, allow_nan=False) for r in after["jobs"]]
        for raw in quarantined_raw:
            assert raw in kept
        assert len(after["jobs"]) == len(doc["jobs"]) + 1
        # A second tick a second later: the good job's next fire is not due yet.
        clock.advance(1)
        before = len(recorder.ran)
        run_due_once(service.ctx)
        assert "good0" not in recorder.ran[before:]
