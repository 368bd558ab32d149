"""Add COUNT jobs after a barrier; print each id. Args: HOME BARRIER NAME COUNT."""

from __future__ import annotations

import sys
from datetime import datetime

from common import barrier, make_store

from hermes_cron.schedules import parse_schedule
from hermes_cron.timeutil import UTC

home, folder, name, count = sys.argv[1:5]
store = make_store(home)
store.snapshot()
barrier(folder, name)
for i in range(int(count)):
    schedule = parse_schedule("every 1h", now=datetime.now(UTC))
    job = store.add(schedule, command=["true", name, str(i)], name=f"{name}-{i}")
    print(job["id"], flush=True)
store.close()
