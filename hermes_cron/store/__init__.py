"""Where jobs live: the store protocol, the rules every store applies, its backends.

* ``records.py``: what a job record is and how it is checked;
* ``rules.py``: what a claim, a finish, a catch-up or a miss does to one record;
* ``base.py``: the public mutations, written once over a backend's primitives;
* ``protocol.py``: ``Store``, what callers may use;
* ``file.py``: ``jobs.json`` (the default); ``postgres.py``: PostgreSQL;
* ``open_store``: the factory that reads ``cron.store`` / ``HERMES_CRON_STORE``.
"""

from __future__ import annotations

import os
from typing import Any

from ..clock import Clock
from ..config import Config, cfg_get
from ..errors import UsageError
from ..paths import HomePaths
from .file import JobStore
from .protocol import Store
from .records import Job, Quarantined, Snapshot, derive_name
from .rules import (
    CLAIM_OUTCOMES,
    GONE,
    INACTIVE,
    INTERRUPTED,
    LOST,
    MISSED,
    SKIPPED,
    WON,
    Claim,
    Policy,
)

#: The environment variable that overrides ``cron.store`` (keeps a password out of files).
STORE_ENV = "HERMES_CRON_STORE"


def store_url(config: Config) -> str:
    """The store the config selects: ``HERMES_CRON_STORE`` or ``cron.store`` ("" = file)."""
    env = os.environ.get(STORE_ENV)
    if env is not None and env.strip():
        return env.strip()
    value = cfg_get(config, "cron", "store", default="")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise UsageError(f"cron.store: expected text (json or a postgresql:// URL), got {value!r}")
    return value.strip()


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def open_store(
    paths: HomePaths, config: Config, *, clock: Clock, default_tz: str = "UTC", **kwargs: Any
) -> Store:
    """The store ``cron.store`` selects: ``jobs.json`` under the home, or PostgreSQL."""
    url = store_url(config)
    if url in ("", "json"):
        return JobStore.from_config(paths, config, clock=clock, default_tz=default_tz, **kwargs)
    if is_postgres_url(url):
        try:
            from .postgres import PostgresStore
        except ImportError as exc:
            raise UsageError(
                f"cron.store is a PostgreSQL URL but its driver is missing ({exc}): "
                "pip install 'hermes-cron[postgres]'"
            ) from None
        return PostgresStore.from_config(url, paths, config, clock=clock, default_tz=default_tz)
    raise UsageError(
        f"cron.store: {url.split('://')[0]!r} is not a store (use json or a postgresql:// URL)"
    )


__all__ = [
    "CLAIM_OUTCOMES",
    "GONE",
    "INACTIVE",
    "INTERRUPTED",
    "LOST",
    "MISSED",
    "SKIPPED",
    "STORE_ENV",
    "WON",
    "Claim",
    "Job",
    "JobStore",
    "Policy",
    "Quarantined",
    "Snapshot",
    "Store",
    "derive_name",
    "open_store",
    "store_url",
]
