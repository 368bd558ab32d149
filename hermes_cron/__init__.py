"""hermes-cron: a pluggable cron scheduler for AI agents, and a better user crontab.

``hookimpl`` marks a plugin's hook implementations::

    from hermes_cron import hookimpl

    @hookimpl
    def run_job(ctx, job):
        ...

Heavier names (the service, the resolver, the plugin manager) are imported on
first use so that ``hermes-cron`` starts fast.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

from .config import cfg_get, load_config

__version__ = "0.1.0"

_LAZY = {
    # The markers too: they import pluggy, which a command that only reads jobs.json
    # does not need (issue 12).
    "PROJECT_NAME": "hermes_cron.hookspec",
    "hookimpl": "hermes_cron.hookspec",
    "hookspec": "hermes_cron.hookspec",
    "CronService": "hermes_cron.service",
    "CronContext": "hermes_cron.context",
    "get_plugin_manager": "hermes_cron.plugin_manager",
    "resolve_cron_scheduler": "hermes_cron.resolver",
    "run_one_job": "hermes_cron.runner",
    "RunOutcome": "hermes_cron.runner",
    "RunResult": "hermes_cron.runner",
    "RunReport": "hermes_cron.observers",
    "JobStore": "hermes_cron.store",
    "Store": "hermes_cron.store",
    "open_store": "hermes_cron.store",
    "parse_schedule": "hermes_cron.schedules",
    "Schedule": "hermes_cron.schedules",
    "FakeClock": "hermes_cron.clock",
    "SystemClock": "hermes_cron.clock",
    "get_provider_auth_state": "hermes_cron.auth",
    "resolve_nous_access_token": "hermes_cron.auth",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hermes_cron' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


class _Package(types.ModuleType):
    """Keeps ``hermes_cron.hookspec`` the marker (SPEC §6): importing the submodule of
    that name would otherwise make the package attribute the module."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "hookspec" and isinstance(value, types.ModuleType):
            value = value.hookspec
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


__all__ = ["PROJECT_NAME", "__version__", "cfg_get", "hookimpl", "hookspec", "load_config", *_LAZY]
