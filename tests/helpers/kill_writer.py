"""Write in a tight loop until killed: add a job, print its id (only after add returned),
and mutate earlier jobs (pause, resume, claim, finish) in between. Args: HOME."""

from __future__ import annotations

import sys
from datetime import datetime

from common import make_store

from hermes_cron.schedules import parse_schedule
from hermes_cron.timeutil import UTC

home = sys.argv[1]
store = make_store(home)
i = 0
while True:
    now = datetime.now(UTC)
    job = store.add(parse_schedule("every 1h", now=now), command=["true", str(i)])
    sys.stdout.write(job["id"] + "\n")
    sys.stdout.flush()
    store.pause(job["id"])
    store.resume(job["id"])
    store.claim_manual(job["id"], "writer")
    store.finish_run(job["id"], "writer", status="ok", error=None, started_at=now)
    i += 1
