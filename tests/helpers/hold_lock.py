"""Take the jobs lock, say so, and hold it until killed. Args: HOME."""

from __future__ import annotations

import sys
import time

from common import make_store  # noqa: F401  (same import path as the other helpers)

from hermes_cron.lock import FileLock
from hermes_cron.paths import HomePaths

lock = FileLock(HomePaths.at(sys.argv[1]).jobs_lock, timeout=10)
lock.acquire()
print("locked", flush=True)
while True:
    time.sleep(60)
