"""Claim one fire after a barrier; print the outcome.

Args: HOME NOW JOB_ID FIRE_AT BARRIER NAME [claim|claim_many]."""

from __future__ import annotations

import json
import sys

from common import barrier, make_store

from hermes_cron.timeutil import parse_iso

home, now, job_id, fire_at, folder, name = sys.argv[1:7]
call = sys.argv[7] if len(sys.argv) > 7 else "claim"
store = make_store(home, now)
store.snapshot()  # warm up: import and parse before the start line
barrier(folder, name)
if call == "claim":
    claim = store.claim(job_id, parse_iso(fire_at), f"racer-{name}")
else:
    [claim] = store.claim_many([(job_id, parse_iso(fire_at))], f"racer-{name}")
store.close()
print(json.dumps({"name": name, "outcome": claim.outcome, "reason": claim.reason}), flush=True)
