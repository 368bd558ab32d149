"""A corrupt jobs.json is never touched; a bad record is quarantined, the rest keep working.

The quarantine tests run on every store (a bad row edited by hand in PostgreSQL is
quarantined like a bad record in jobs.json); the corrupt-file ones are about the file.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, List, Tuple

import pytest
from helpers.storekit import hand_edit, hand_insert, new_store, sched

from hermes_cron.clock import FakeClock
from hermes_cron.errors import StoreCorruptError, UsageError
from hermes_cron.paths import HomePaths
from hermes_cron.store import GONE, WON, JobStore
from hermes_cron.timeutil import parse_iso

CORRUPT: List[Tuple[str, bytes, str]] = [
    ("truncated", b'{"version": 1, "jobs": [\n  {"id": "abc",', "line 2 column"),
    ("trailing comma", b'{"version": 1,\n "jobs": [1,]\n}', "line 2 column"),
    ("garbage", b"hello", "line 1 column 1"),
    ("empty", b"", "empty"),
    ("extra data", b'{"version": 1, "jobs": []} {}', "Extra data"),
    ("top-level list", b"[]", "top level is a list"),
    ("jobs not a list", b'{"version": 1, "jobs": {}}', "'jobs' is an object"),
    ("no jobs", b'{"version": 1}', "no 'jobs' list"),
    ("future version", b'{"version": 2, "jobs": []}', "unsupported version 2"),
    ("not utf-8", b'{"version": 1, "jobs": [{"name": "\xff\xfe"}]}', "not UTF-8"),
]


def _operations(store: JobStore, clock: FakeClock) -> List[Callable[[], object]]:
    now = clock.now()
    return [
        store.snapshot,
        store.list_jobs,
        lambda: store.get("abc"),
        lambda: store.due(now),
        store.next_due_at,
        lambda: store.add(sched("every 1h", clock), command=["a"]),
        lambda: store.update("abc", name="x"),
        lambda: store.pause("abc"),
        lambda: store.resume("abc"),
        lambda: store.remove("abc"),
        lambda: store.claim("abc", now, "me"),
        lambda: store.claim_many([("abc", now)], "me"),
        lambda: store.claim_manual("abc", "me"),
        lambda: store.renew_claim("abc", "me"),
        lambda: store.finish_run("abc", "me", status="ok", error=None, started_at=now),
        lambda: store.catch_up(),
    ]


@pytest.mark.parametrize("label, content, fault", CORRUPT, ids=[c[0] for c in CORRUPT])
def test_corrupt_file_fails_every_operation_and_is_never_touched(
    paths: HomePaths, clock: FakeClock, label: str, content: bytes, fault: str
) -> None:
    paths.cron_dir.mkdir(parents=True)
    paths.jobs.write_bytes(content)
    before = paths.jobs.stat()
    store = new_store(paths, clock)
    for op in _operations(store, clock):
        with pytest.raises(StoreCorruptError) as info:
            op()
        message = str(info.value)
        assert message.startswith(f"{paths.jobs}: "), message
        assert fault in message, message
        assert "\n" not in message
    assert paths.jobs.read_bytes() == content
    after = paths.jobs.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_unreadable_file_is_reported(paths: HomePaths, clock: FakeClock) -> None:
    paths.jobs.mkdir(parents=True)  # a folder where the file should be: cannot be read
    store = new_store(paths, clock)
    for op in _operations(store, clock):
        with pytest.raises(StoreCorruptError, match="cannot read"):
            op()
    assert paths.jobs.is_dir() and list(paths.jobs.iterdir()) == []


def test_a_store_that_became_corrupt_stops_writing(paths: HomePaths, clock: FakeClock) -> None:
    store = new_store(paths, clock)
    job = store.add(sched("every 1h", clock), command=["a"])
    broken = paths.jobs.read_bytes()[:-20]
    paths.jobs.write_bytes(broken)
    with pytest.raises(StoreCorruptError):
        store.pause(job["id"])
    with pytest.raises(StoreCorruptError):
        store.get(job["id"])
    assert paths.jobs.read_bytes() == broken


def _write_jobs(path: Path, records: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = ",\n    ".join(json.dumps(r) for r in records)
    path.write_text('{"version": 1, "jobs": [\n    ' + body + "\n]}\n")


BAD_RECORDS = [
    ("not an object", ["just", "a", "list"], "record is a list"),
    ("bad id", {"id": "../../etc", "command": ["a"]}, "id:"),
    ("bad schedule", {"schedule": {"kind": "sometimes"}}, "schedule:"),
    ("both command and prompt", {"prompt": "p"}, "both command and prompt"),
    ("neither", {"command": None}, "needs a command or a prompt"),
    ("command not strings", {"command": ["a", 1]}, "command:"),
    ("bad state", {"state": "sleeping"}, "state:"),
    ("bad repeat", {"repeat": {"times": 0, "completed": 0}}, "repeat.times"),
    ("bad time", {"next_run_at": "tomorrow"}, "next_run_at:"),
    ("naive time", {"next_run_at": "2026-03-02T12:00:00"}, "next_run_at:"),
    ("bad claim", {"fire_claim": {"owner": "x"}}, "fire_claim"),
    ("bad status", {"last_status": "great"}, "last_status"),
    ("bad enabled", {"enabled": "yes"}, "enabled"),
    ("bad timeout", {"timeout": -3}, "timeout"),
]


@pytest.mark.parametrize("label, change, fault", BAD_RECORDS, ids=[b[0] for b in BAD_RECORDS])
def test_bad_record_is_quarantined_and_preserved(
    make_store: Callable[..., Any],
    store_kind: str,
    clock: FakeClock,
    label: str,
    change: object,
    fault: str,
) -> None:
    store = make_store()
    good = store.add(sched("every 1h", clock), command=["good"])
    victim = store.add(sched("every 1h", clock), command=["victim"])
    other = store.add(sched("every 1h", clock), command=["other"])
    bad = change if not isinstance(change, dict) else {**victim, **change}
    hand_edit(store, victim["id"], bad)
    bad_text = json.dumps(bad)

    fresh = make_store()
    snap = fresh.snapshot()
    assert [j["id"] for j in snap.jobs] == [good["id"], other["id"]]
    assert len(snap.quarantined) == 1
    q = snap.quarantined[0]
    assert q.index == 1 and q.record == bad
    assert fault in q.error and q.error.startswith("record #2") and "\n" not in q.error

    # Other jobs keep working, and every mutation writes the bad record back verbatim.
    fresh.pause(good["id"])
    fresh.add(sched("every 1h", clock), command=["new"])
    clock.advance(3600)
    claim = fresh.claim(other["id"], parse_iso(other["next_run_at"]), "me")
    assert claim.outcome == WON
    fresh.finish_run(other["id"], "me", status="ok", error=None, started_at=clock.now())
    fresh.remove(good["id"])
    fresh.catch_up()
    if store_kind == "json":
        assert bad_text in fresh.path.read_text()
    # Still in its position (first, since "good" was removed), unchanged.
    assert fresh.export_records()[0] == bad
    # It never runs and cannot be changed through the store.
    assert all(job_id != victim["id"] for job_id, _ in fresh.due(clock.now() + timedelta(days=9)))
    if isinstance(change, dict) and "id" not in change:
        assert fresh.claim(victim["id"], clock.now(), "me").outcome == GONE
        with pytest.raises(UsageError, match="quarantined"):
            fresh.pause(victim["id"])
        with pytest.raises(UsageError, match="quarantined"):
            fresh.remove(victim["id"])
    assert fresh.export_records()[0] == bad
    assert [q.record for q in fresh.snapshot().quarantined] == [bad]


def test_duplicate_ids_quarantine_the_later_record(paths: HomePaths, clock: FakeClock) -> None:
    store = new_store(paths, clock)
    a = store.add(sched("every 1h", clock), command=["first"])
    b = store.add(sched("every 1h", clock), command=["second"])
    twin = {**b, "id": a["id"], "name": "twin"}
    _write_jobs(paths.jobs, [a, twin, b])
    fresh = new_store(paths, clock)
    snap = fresh.snapshot()
    assert [j["name"] for j in snap.jobs] == [a["name"], b["name"]]
    assert len(snap.quarantined) == 1
    assert "duplicate id" in snap.quarantined[0].error
    assert snap.quarantined[0].record["name"] == "twin"
    fresh.pause(a["id"])
    assert fresh.get(a["id"])["name"] == a["name"]
    assert json.loads(paths.jobs.read_text())["jobs"][1] == twin
    # A new id never collides with a quarantined one either.
    assert fresh.add(sched("every 1h", clock), command=["c"])["id"] not in (a["id"], b["id"])


def test_hand_written_minimal_record_gets_defaults(
    make_store: Callable[..., Any], clock: FakeClock
) -> None:
    store = make_store()
    full = store.add(sched("every 1h", clock), command=["a"])
    minimal = {"id": "handmade", "schedule": full["schedule"], "command": ["echo", "hi"]}
    store.remove(full["id"])
    hand_insert(store, minimal)
    fresh = make_store()
    job = fresh.get("handmade")
    assert job["state"] == "scheduled" and job["enabled"] is True
    assert job["name"] == "echo hi" and job["repeat"] == {"times": None, "completed": 0}
    assert job["next_run_at"] is None
    # catch_up gives an active job without a next run its next time.
    fresh.catch_up()
    assert parse_iso(fresh.get("handmade")["next_run_at"]) > clock.now()
