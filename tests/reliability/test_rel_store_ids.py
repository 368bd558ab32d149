"""A new job never takes an id already used by a job or by a quarantined record
(checked per candidate, without building a set of every id on each add)."""

from __future__ import annotations

import json
from typing import Iterator

import pytest
from helpers.storekit import new_store, sched

import hermes_cron.store.file as store_module
from hermes_cron.clock import FakeClock
from hermes_cron.paths import HomePaths


def test_a_new_id_skips_ids_in_use_and_quarantined(
    paths: HomePaths, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = new_store(paths, clock)
    existing = store.add(sched("every 1h", clock), command=["true"])["id"]
    doc = json.loads(paths.jobs.read_text())
    doc["jobs"].append({"id": "quarantine1", "schedule": "not a schedule"})
    paths.jobs.write_text(json.dumps(doc))
    assert [q.job_id for q in store.snapshot().quarantined] == ["quarantine1"]

    candidates: Iterator[str] = iter([existing, "quarantine1", existing, "freshid001"])
    monkeypatch.setattr(store_module, "new_id", lambda: next(candidates))
    job = store.add(sched("every 2h", clock), command=["true"])
    assert job["id"] == "freshid001"
    assert store.snapshot().quarantined[0].record["schedule"] == "not a schedule"
