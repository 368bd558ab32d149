"""The context handed to every hook: what a provider or runner needs, nothing global."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional

import attrs

from .clock import Clock
from .config import Config
from .paths import HomePaths
from .runner import RunResult, run_one_job
from .store import Store
from .store.protocol import RunLog

if TYPE_CHECKING:
    from .observers import Observers


@attrs.define(eq=False)
class CronContext:
    """Passed as ``ctx`` to hooks.

    :ivar config: the loaded configuration.
    :ivar store: the job store.
    :ivar ledger: the run ledger (``store.runs``).
    :ivar clock: the clock (inject ``FakeClock`` in tests).
    :ivar logger: the logger hooks should use.
    :ivar paths: every path under the home folder.
    :ivar hook: the plugin manager's hook relay (``ctx.hook.run_job``).
    :ivar provider_name: the active provider (``builtin`` or a plugin name).
    :ivar state: scratch space the active provider may keep between calls in this process.
    :ivar claim_listeners: callables ``(ctx, claim)`` that ``run_one_job`` calls right
        after each claim, before the run (Chronos arms the next one-shot there).
    :ivar observers: delivers every written ledger row to the ``run_finished``
        observers, off the scheduling path (``hermes_cron.observers``); made on first
        use, so a command that records no run never imports it.
    """

    config: Config
    store: Store
    ledger: RunLog
    clock: Clock
    logger: logging.Logger
    paths: HomePaths
    hook: Any
    provider_name: str = "builtin"
    state: Dict[str, Any] = attrs.field(factory=dict)
    claim_listeners: List[Callable[[CronContext, Any], None]] = attrs.field(factory=list)
    _observers: Optional[Observers] = attrs.field(default=None, alias="observers")

    @property
    def observers(self) -> Observers:
        if self._observers is None:
            from .observers import Observers

            self._observers = Observers(self)
        return self._observers

    @property
    def observers_started(self) -> bool:
        """True once ``observers`` was used (so there may be reports to flush)."""
        return self._observers is not None

    @property
    def home(self) -> Path:
        return self.paths.home

    def run_one_job(
        self, job_id: str, fire_at: Optional[str], *, manual: bool = False
    ) -> RunResult:
        """The shared run body: claim, run, record (see ``hermes_cron.runner``)."""
        return run_one_job(self, job_id, fire_at, manual=manual)
