"""filetick: a hermes-cron trigger provider that fires due jobs when a file is touched.

Something outside the scheduler decides *when* to look at the jobs: a system
crontab line, a CI hook, a git hook, a human. It touches the trigger file, and
filetick fires every job that is due at that moment through the shared run body
(claim, run, record), so duplicates, overlaps and missed runs are handled as
with any other provider.

Configuration (``$HERMES_HOME/config.yaml``)::

    cron:
      provider: filetick
      filetick:
        path: /run/user/1000/hermes-tick   # default: $HERMES_HOME/cron/filetick
        poll: 1.0                          # seconds between two looks at the file
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from hermes_cron import cfg_get, hookimpl
from hermes_cron.paths import hermes_home
from hermes_cron.timeutil import to_iso

#: Seconds between two looks at the trigger file, unless ``cron.filetick.poll`` says otherwise.
DEFAULT_POLL = 1.0


def trigger_path(config: Dict[str, Any]) -> Path:
    """The trigger file: ``cron.filetick.path``, else ``$HERMES_HOME/cron/filetick``."""
    configured = cfg_get(config, "cron", "filetick", "path", default="")
    if configured:
        return Path(str(configured)).expanduser()
    return hermes_home() / "cron" / "filetick"


def _stamp(path: Path) -> Optional[Tuple[int, int, int]]:
    """What changes when the file is touched; None while it does not exist."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def fire_due_jobs(ctx: Any) -> int:
    """Fire every job due now through the shared run body; return how many ran."""
    ran = 0
    for job_id, due_at in ctx.store.due(ctx.clock.now()):
        result = ctx.run_one_job(job_id, to_iso(due_at))
        ran += int(result.ran)
    return ran


@hookimpl
def is_available(config: Dict[str, Any]) -> bool:
    """Available when the trigger file's folder exists (a local check, no network)."""
    return trigger_path(config).parent.is_dir()


@hookimpl
def start(ctx: Any, stop_event: threading.Event) -> Dict[str, Any]:
    """Watch the trigger file until ``stop_event`` is set; fire due jobs on every touch."""
    path = trigger_path(ctx.config)
    poll = float(cfg_get(ctx.config, "cron", "filetick", "poll", default=DEFAULT_POLL))
    seen = _stamp(path)
    touches = fired = 0
    ctx.logger.info("filetick: watching %s every %g s", path, poll)
    # ctx.clock.wait returns True as soon as stop_event is set: the loop ends promptly.
    while not ctx.clock.wait(stop_event, poll):
        stamp = _stamp(path)
        if stamp is None or stamp == seen:
            continue
        seen = stamp
        touches += 1
        fired += fire_due_jobs(ctx)
    return {"provider": "filetick", "path": str(path), "touches": touches, "fired": fired}
