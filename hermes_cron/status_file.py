"""``cron/status.json``: the running provider's heartbeat and the last error.

Written by the process that runs a provider (the ``daemon``, an embedding
agent) every few seconds and whenever something fails; read by
``hermes-cron status``. Shape (every field optional)::

    {"provider": "builtin", "pid": 1234, "host": "box", "started_at": ISO,
     "heartbeat_at": ISO, "stopped_at": ISO or null, "running": 2,
     "last_error": "one line", "last_error_at": ISO, "last_error_source": "loop"}

Writers update only their own fields: each write re-reads the file under a
small lock (``cron/.status.lock``), merges, and replaces it atomically, so a
CLI command recording a provider error never erases the daemon's heartbeat
(and the other way round). The file is advisory: a write that cannot take the
lock within ``LOCK_TIMEOUT`` or cannot be written is logged and skipped, never
raised, because a status file must not stop a scheduler. A missing or
unreadable file reads as ``{}``.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime
from typing import Any, Dict, Optional

from .lock import FileLock, atomic_write, remove_dead_temps
from .paths import HomePaths
from .timeutil import to_iso

log = logging.getLogger("hermes_cron.status")

#: Longest wait for the status lock; the write is skipped after that.
LOCK_TIMEOUT = 2.0
#: How often a running provider refreshes its heartbeat, in seconds.
HEARTBEAT_INTERVAL = 5.0


def _lock(paths: HomePaths) -> FileLock:
    return FileLock(paths.cron_dir / ".status.lock", timeout=LOCK_TIMEOUT)


def read_status(paths: HomePaths) -> Dict[str, Any]:
    """The status file's content; ``{}`` when it is missing or unreadable."""
    try:
        data = json.loads(paths.status.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("%s: cannot read: %s", paths.status, exc)
        return {}
    return data if isinstance(data, dict) else {}


def update_status(paths: HomePaths, **fields: Any) -> bool:
    """Merge ``fields`` into the status file; returns False when the write was skipped."""
    try:
        paths.cron_dir.mkdir(parents=True, exist_ok=True)
        with _lock(paths):
            data = read_status(paths)
            data.update(fields)
            body = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
            # A writer killed mid-write left its temp file; we hold the lock, so it is dead.
            remove_dead_temps(paths.status)
            atomic_write(paths.status, body.encode("utf-8"))
        return True
    except Exception as exc:  # LockTimeoutError, OSError: advisory file, never fatal
        log.warning("%s: cannot update the status file: %s", paths.status, exc)
        return False


def write_heartbeat(
    paths: HomePaths,
    *,
    now: datetime,
    provider: str,
    started_at: Optional[datetime] = None,
    **extra: Any,
) -> bool:
    """Record that ``provider`` is alive in this process at ``now``."""
    fields: Dict[str, Any] = {
        "provider": provider,
        "pid": os.getpid(),
        "host": os.uname().nodename,  # socket.gethostname(), without importing socket
        "heartbeat_at": to_iso(now),
        "stopped_at": None,
    }
    if started_at is not None:
        fields["started_at"] = to_iso(started_at)
    fields.update(extra)
    return update_status(paths, **fields)


def scheduler_info(
    provider: str, now: datetime, started_at: Optional[datetime], *, stopped: bool = False
) -> Dict[str, Any]:
    """This process as ``Store.heartbeat`` records it."""
    return {
        "host": os.uname().nodename,  # socket.gethostname(), without importing socket
        "pid": os.getpid(),
        "provider": provider,
        "started_at": to_iso(started_at) if started_at else None,
        "heartbeat_at": to_iso(now),
        "stopped_at": to_iso(now) if stopped else None,
    }


def is_live(info: Dict[str, Any], now: datetime) -> bool:
    """A heartbeat within three intervals and no clean stop."""
    from .timeutil import parse_iso

    try:
        age = (now - parse_iso(info["heartbeat_at"])).total_seconds()
    except (KeyError, TypeError, ValueError):
        return False
    return not info.get("stopped_at") and age < 3 * HEARTBEAT_INTERVAL


def record_error(paths: HomePaths, message: str, *, now: datetime, source: str) -> bool:
    """Record ``message`` (one line) as the last error, with when and where it happened."""
    line = " ".join(str(message).split())
    return update_status(
        paths, last_error=line, last_error_at=to_iso(now), last_error_source=source
    )


def record_stopped(paths: HomePaths, *, now: datetime) -> bool:
    """Record that the provider in this process stopped cleanly."""
    return update_status(paths, stopped_at=to_iso(now), running=0, pid=os.getpid())


__all__ = [
    "HEARTBEAT_INTERVAL",
    "read_status",
    "record_error",
    "is_live",
    "record_stopped",
    "scheduler_info",
    "update_status",
    "write_heartbeat",
]
