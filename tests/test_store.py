"""The job store: records, mutations, caching, atomic writes.

Tests taking ``store`` run on every backend (``store_kind``: json, postgresql); the
``file_store`` ones check what only ``jobs.json`` has (its bytes, its stat cache).
"""

from __future__ import annotations

import json
import re
import stat
import sys
from datetime import timedelta
from typing import Any, Callable

import pytest
from helpers.contract import JOB_FIELDS
from helpers.storekit import new_store, sched

import hermes_cron.store.file as store_mod
from hermes_cron.clock import FakeClock
from hermes_cron.errors import JobNotFoundError, UsageError
from hermes_cron.paths import HomePaths
from hermes_cron.store import JobStore
from hermes_cron.timeutil import parse_iso


@pytest.fixture
def store(make_store: Callable[..., Any]) -> Any:
    return make_store()


@pytest.fixture
def file_store(paths: HomePaths, clock: FakeClock) -> JobStore:
    return new_store(paths, clock)


def test_a_new_store_is_empty(store: Any) -> None:
    assert store.list_jobs() == []
    assert store.snapshot().quarantined == []
    assert store.due(store.clock.now()) == []
    assert store.next_due_at() is None
    assert store.upcoming(5) == []
    assert store.export_records() == []
    assert store.runs.read() == []


def test_missing_file_is_an_empty_store(file_store: JobStore) -> None:
    assert file_store.list_jobs() == []
    assert file_store.change_token() == (0, 0, 0)
    assert not file_store.path.exists()


def test_add_writes_the_documented_record(store: Any, clock: FakeClock, store_kind: str) -> None:
    job = store.add(sched("every 90s", clock), command=["echo", "hello world"])
    assert JOB_FIELDS <= set(job)
    assert re.fullmatch(r"[a-z0-9]{10}", job["id"])
    assert job["name"] == "echo 'hello world'"
    assert job["command"] == ["echo", "hello world"] and job["prompt"] is None
    assert job["enabled"] is True and job["state"] == "scheduled"
    assert job["repeat"] == {"times": None, "completed": 0}
    assert parse_iso(job["next_run_at"]) == clock.now() + timedelta(seconds=90)
    assert job["fire_claim"] is None and job["last_status"] is None
    assert parse_iso(job["created_at"]) == clock.now()
    assert store.export_records() == [job]
    assert list(store.export_records()[0]) == list(job)  # the same field order
    if store_kind == "json":
        doc = json.loads(store.path.read_text())
        assert doc["version"] == 1 and doc["jobs"] == [job]
        assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert store.get(job["id"]) == job


def test_add_prompt_job_with_repeat_and_name(store: Any, clock: FakeClock) -> None:
    job = store.add(
        sched("0 9 * * *", clock, tz="Europe/Paris"),
        prompt="Summarise the news\nin three lines",
        repeat=3,
        misfire_grace=120,
        timeout=30,
    )
    assert job["name"] == "Summarise the news"
    assert job["repeat"] == {"times": 3, "completed": 0}
    assert job["schedule"]["tz"] == "Europe/Paris"
    assert job["misfire_grace"] == 120 and job["timeout"] == 30
    # 09:00 Paris is 08:00 UTC in March (before the DST switch).
    assert job["next_run_at"] == "2026-03-03T08:00:00+00:00"
    named = store.add(sched("every 1h", clock), command=["true"], name="  nightly  ")
    assert named["name"] == "nightly"
    long = store.add(sched("every 1h", clock), prompt="x" * 500)
    assert len(long["name"]) <= 60


def test_one_shot_next_run_is_its_time(store: Any, clock: FakeClock) -> None:
    job = store.add(sched("+90s", clock), command=["true"])
    assert parse_iso(job["next_run_at"]) == clock.now() + timedelta(seconds=90)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "exactly one"),
        ({"command": ["a"], "prompt": "b"}, "exactly one"),
        ({"command": []}, "empty"),
        ({"command": "echo hi"}, "list of arguments"),
        ({"command": ["echo", 3]}, "list of arguments"),
        ({"prompt": "   "}, "empty"),
        ({"command": ["a"], "repeat": 0}, "repeat"),
        ({"command": ["a"], "repeat": True}, "repeat"),
        ({"command": ["a"], "timeout": 0}, "timeout"),
        ({"command": ["a"], "misfire_grace": -1}, "misfire_grace"),
    ],
)
def test_add_rejects_bad_input_and_writes_nothing(
    store: Any, clock: FakeClock, kwargs: dict, message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        store.add(sched("every 1h", clock), **kwargs)
    assert store.export_records() == []


def test_repeat_is_refused_on_a_one_shot(store: Any, clock: FakeClock) -> None:
    with pytest.raises(UsageError, match="recurring"):
        store.add(sched("+5m", clock), command=["a"], repeat=2)


def test_ids_are_unique_even_when_the_generator_collides(
    store: Any, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = store.add(sched("every 1h", clock), command=["a"])
    sequence = iter([first["id"], first["id"], "freshid000"])
    monkeypatch.setattr(sys.modules[type(store).__module__], "new_id", lambda: next(sequence))
    second = store.add(sched("every 1h", clock), command=["b"])
    assert second["id"] == "freshid000"


def test_unknown_id_raises_job_not_found(store: Any, clock: FakeClock) -> None:
    store.add(sched("every 1h", clock), command=["a"])
    for call in (store.get, store.pause, store.resume, store.remove):
        with pytest.raises(JobNotFoundError, match="no job with id 'nope'"):
            call("nope")
    with pytest.raises(JobNotFoundError):
        store.update("nope", name="x")


def test_pause_resume_keeps_interval_rate(store: Any, clock: FakeClock) -> None:
    job = store.add(sched("every 10m", clock), command=["a"])
    anchor = clock.now()
    paused = store.pause(job["id"])
    assert paused["state"] == "paused"
    assert paused["next_run_at"] == job["next_run_at"]  # kept for display
    assert store.due(clock.now() + timedelta(days=1)) == []
    assert store.next_due_at() is None
    clock.advance(37 * 60)
    resumed = store.resume(job["id"])
    assert resumed["state"] == "scheduled"
    # Fixed rate: the next multiple of 10 minutes after the anchor, not now + 10 min.
    assert parse_iso(resumed["next_run_at"]) == anchor + timedelta(minutes=40)


def test_pause_and_resume_are_idempotent_without_rewriting(store: Any, clock: FakeClock) -> None:
    job = store.add(sched("every 10m", clock), command=["a"])
    store.pause(job["id"])
    token = store.change_token()
    before = store.export_records()
    clock.advance(60)
    assert store.pause(job["id"])["state"] == "paused"
    assert store.change_token() == token and store.export_records() == before
    store.resume(job["id"])
    token = store.change_token()
    assert store.resume(job["id"])["state"] == "scheduled"
    assert store.change_token() == token
    assert store.update(job["id"], name=job["name"]) == store.get(job["id"])
    assert store.change_token() == token


def test_completed_job_cannot_be_resumed_or_paused_but_can_be_removed(
    store: Any, clock: FakeClock
) -> None:
    job = store.add(sched("+1m", clock), command=["a"])
    clock.advance(60)
    claim = store.claim(job["id"], clock.now(), "me")
    assert claim.won
    store.finish_run(job["id"], "me", status="ok", error=None, started_at=clock.now())
    assert store.get(job["id"])["state"] == "completed"
    with pytest.raises(UsageError, match="completed"):
        store.resume(job["id"])
    with pytest.raises(UsageError, match="completed"):
        store.pause(job["id"])
    assert store.list_jobs() == []
    assert [j["id"] for j in store.list_jobs(include_completed=True)] == [job["id"]]
    removed = store.remove(job["id"])
    assert removed["id"] == job["id"]
    assert store.list_jobs(include_completed=True) == []


def test_remove_keeps_the_others(store: Any, clock: FakeClock) -> None:
    ids = [store.add(sched("every 1h", clock), command=["a", str(i)])["id"] for i in range(4)]
    store.remove(ids[1])
    assert [j["id"] for j in store.list_jobs()] == [ids[0], ids[2], ids[3]]
    store.pause(ids[3])  # positions after the removed record still resolve
    assert store.get(ids[3])["state"] == "paused"


def test_update_changes_only_what_it_means_to(store: Any, clock: FakeClock) -> None:
    job = store.add(sched("every 1h", clock), command=["a"])
    clock.advance(90)
    changed = store.update(job["id"], name="renamed", timeout=5)
    assert changed["name"] == "renamed" and changed["timeout"] == 5
    assert changed["next_run_at"] == job["next_run_at"]
    new = store.update(job["id"], schedule=sched("every 5m", clock))
    assert parse_iso(new["next_run_at"]) == clock.now() + timedelta(minutes=5)
    disabled = store.update(job["id"], enabled=False)
    assert store.due(clock.now() + timedelta(days=1)) == []
    clock.advance(3600)
    enabled = store.update(job["id"], enabled=True)
    assert parse_iso(enabled["next_run_at"]) > clock.now()
    assert disabled["enabled"] is False
    with pytest.raises(UsageError, match="cannot update id"):
        store.update(job["id"], id="other")
    with pytest.raises(UsageError, match="exactly one|both"):
        store.update(job["id"], prompt="also a prompt")
    with pytest.raises(UsageError, match="repeat"):
        store.update(job["id"], repeat=0)
    switched = store.update(job["id"], command=None, prompt="now a prompt")
    assert switched["command"] is None and switched["prompt"] == "now a prompt"


def test_untouched_records_keep_their_bytes(file_store: JobStore, clock: FakeClock) -> None:
    store = file_store
    a = store.add(sched("every 1h", clock), command=["a"])
    b = store.add(sched("every 1h", clock), command=["b"])
    # Hand-edit record a into a different (valid) layout with an extra field.
    text = store.path.read_text()
    line = next(ln for ln in text.splitlines() if a["id"] in ln)
    record = json.loads(line.strip().rstrip(","))
    record["note"] = "kept by hand"
    custom = json.dumps(record, indent=1)
    store.path.write_text(text.replace(line.strip().rstrip(","), custom))
    store.pause(b["id"])
    after = store.path.read_text()
    assert custom in after
    assert store.get(a["id"])["note"] == "kept by hand"
    # Unknown top-level keys survive too.
    doc = json.loads(after)
    doc["owner_note"] = {"x": 1}
    store.path.write_text(json.dumps(doc))
    store.resume(b["id"])
    assert json.loads(store.path.read_text())["owner_note"] == {"x": 1}


def test_reads_are_cached_on_the_file_stat(
    file_store: JobStore, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = file_store
    for i in range(3):
        store.add(sched("every 1h", clock), command=["a", str(i)])
    fresh = new_store(store.paths, clock)
    calls = []
    real = store_mod._scan_document
    monkeypatch.setattr(store_mod, "_scan_document", lambda text: calls.append(1) or real(text))
    for _ in range(5):
        fresh.list_jobs()
        fresh.snapshot()
        fresh.due(clock.now())
    assert len(calls) == 1
    store.add(sched("every 1h", clock), command=["b"])  # another "process" writes
    assert len(fresh.list_jobs()) == 4
    assert len(calls) == 2


def test_returned_records_are_private_copies(store: Any, clock: FakeClock) -> None:
    job = store.add(sched("every 1h", clock), command=["a"])
    job["name"] = "mutated"
    got = store.get(job["id"])
    got["repeat"]["completed"] = 99
    listed = store.list_jobs()[0]
    listed["state"] = "paused"
    again = store.get(job["id"])
    assert again["name"] != "mutated" and again["repeat"]["completed"] == 0
    assert again["state"] == "scheduled"


def test_due_and_next_due_at(store: Any, clock: FakeClock) -> None:
    a = store.add(sched("every 10m", clock), command=["a"])
    b = store.add(sched("every 5m", clock), command=["b"])
    c = store.add(sched("every 1m", clock), command=["c"])
    store.pause(c["id"])
    assert store.next_due_at() == clock.now() + timedelta(minutes=5)
    assert store.due(clock.now()) == []
    later = clock.now() + timedelta(minutes=10)
    assert [d[0] for d in store.due(later)] == [b["id"], a["id"]]
    assert store.upcoming(1) == [(b["id"], clock.now() + timedelta(minutes=5))]


def test_temp_files_from_a_dead_writer_are_cleaned(file_store: JobStore, clock: FakeClock) -> None:
    store = file_store
    store.add(sched("every 1h", clock), command=["a"])
    leftover = store.path.parent / ".jobs.json.abc123.tmp"
    leftover.write_text("half a write")
    store.add(sched("every 1h", clock), command=["b"])
    assert not leftover.exists()


def test_from_config_reads_cron_keys(
    paths: HomePaths, clock: FakeClock, store_kind: str, request: pytest.FixtureRequest
) -> None:
    from hermes_cron.store import open_store

    cfg: dict = {"cron": {"claim_ttl": 42, "misfire_grace": 7}}
    if store_kind == "postgresql":
        cfg["cron"]["store"] = request.getfixturevalue("pg_url")
    store = open_store(paths, cfg, clock=clock)
    try:
        assert store.claim_ttl == 42.0 and store.misfire_grace == 7.0
        assert store.describe().startswith("json:" if store_kind == "json" else "postgresql://")
    finally:
        store.close()
