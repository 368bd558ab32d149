"""The SPEC §4 job record fields, written out once, independently of the store's own list."""

from __future__ import annotations

JOB_FIELDS = frozenset(
    {
        "id",
        "name",
        "schedule",
        "command",
        "prompt",
        "enabled",
        "state",
        "repeat",
        "next_run_at",
        "last_run_at",
        "last_status",
        "last_error",
        "fire_claim",
        "created_at",
        "updated_at",
        # The job options of SPEC §4.1.
        "misfire_grace",
        "timeout",
        "jitter",
        "overlap",
        "retries",
        "retry_delay",
        "cwd",
        "env",
        "until",
    }
)
