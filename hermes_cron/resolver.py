"""Choosing the active provider, and the typed facade every caller uses to reach it.

``resolve_cron_scheduler()`` reads ``cron.provider`` and returns an
``ActiveScheduler``. Empty or ``builtin`` selects the built-in provider. Any
other name is looked up by ``hermes_cron.discovery``; when the name is unknown,
the plugin fails to import or to validate, or its ``is_available`` returns
False, raises, or does not answer within ``AVAILABILITY_TIMEOUT`` seconds, the
built-in provider is used instead: a warning is logged and the reason is kept
as ``fallback_reason``. Cron is never left without a trigger.

``is_available`` runs on a helper thread so that a hanging implementation
delays resolution by at most ``AVAILABILITY_TIMEOUT`` (5 s); the thread is a
daemon thread and is abandoned if it never returns.

``ActiveScheduler`` calls each provider hook through pluggy's subset calling:
only the selected provider and the built-in see a provider hook call, so the
built-in's ``trylast`` implementation is the default for any hook the provider
leaves out. A provider that raises is contained:

* ``reconcile`` / ``on_jobs_changed``: the error is logged and recorded
  (``last_error``, and the error sink, which the service points at
  ``cron/status.json``); the call returns None. A CLI mutation whose store
  write succeeded therefore never fails because a provider failed to react.
* ``start``: the provider is dropped, the reason recorded as
  ``fallback_reason``, and the built-in's ``start`` runs instead.
* ``fire_due``: logged and recorded, then re-raised to the caller (the run
  itself is recorded by the shared run body whatever a wrapper does after it).
  An answer that is not a ``RunResult`` is recorded and the built-in default
  fires instead (the claim drops it if the provider had fired after all).
* ``is_available`` answering anything but True or False counts as unavailable.

Failures are logged on one line; the plugin's traceback only at DEBUG level.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Sequence, Union

from ._frozen import Frozen
from .config import BUILTIN_NAME, Config, cfg_get, load_config_or_defaults
from .errors import PluginError
from .paths import PathLike
from .timeutil import UTC, to_iso

# pluggy and the plugin manager (which imports the built-in provider and the runner) are
# imported where a hook is called: with the built-in selected, a command that only reads
# or adds jobs never calls one, and importing them would cost it about a bare interpreter
# start (issue 12).
if TYPE_CHECKING:
    import pluggy

    PluginManagerSource = Union[pluggy.PluginManager, Callable[[], pluggy.PluginManager]]

log = logging.getLogger("hermes_cron.resolver")

#: Longest wait for a provider's ``is_available`` answer, in seconds.
AVAILABILITY_TIMEOUT = 5.0


class HookError(Frozen):
    """A provider hook that raised: when (wall time, ISO 8601), which hook, and why."""

    __slots__ = ("at", "hook", "message")

    at: str
    hook: str
    message: str

    def __init__(self, at: str, hook: str, message: str) -> None:
        self._set(at=at, hook=hook, message=message)


class ActiveScheduler:
    """The active provider, called through pluggy's subset calling.

    ``pm`` is the plugin manager, or a function that builds it on first use (see
    ``pm``).

    :ivar name: the active provider (``builtin`` or a plugin name).
    :ivar requested: the ``cron.provider`` value as configured (``""`` when unset).
    :ivar fallback_reason: None, or why the built-in runs instead of ``requested``.
    :ivar source: where the active provider came from (``builtin``, ``bundled``,
        ``user``, ``entrypoint``).
    :ivar plugin: the selected provider plugin object (None for the built-in).
    :ivar requested_available: what the requested provider's ``is_available`` answered
        (None when it was not asked or did not answer).
    :ivar errors: provider hook failures in this process, oldest first (last 20).
    """

    def __init__(
        self,
        pm: PluginManagerSource,
        *,
        name: str = BUILTIN_NAME,
        requested: str = "",
        plugin: Any = None,
        source: str = "builtin",
        path: Optional[str] = None,
        fallback_reason: Optional[str] = None,
        error_sink: Optional[Callable[[str], None]] = None,
    ) -> None:
        self._pm: Optional[pluggy.PluginManager] = None if callable(pm) else pm
        self._pm_factory = pm if callable(pm) else None
        self._pm_lock = threading.Lock()
        self.name = name
        self.requested = requested
        self.plugin = plugin
        self.source = source
        self.path = path
        self.fallback_reason = fallback_reason
        #: The selected provider's ``is_available`` answer (None: not asked, or it failed).
        self.requested_available: Optional[bool] = None
        self.errors: List[HookError] = []
        self.error_sink = error_sink
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"ActiveScheduler(name={self.name!r}, requested={self.requested!r}, "
            f"fallback_reason={self.fallback_reason!r})"
        )

    @property
    def pm(self) -> pluggy.PluginManager:
        """The plugin manager, built on first use when a factory was given."""
        with self._pm_lock:
            if self._pm is None:
                assert self._pm_factory is not None
                self._pm = self._pm_factory()
            return self._pm

    @property
    def builtin(self) -> Any:
        """The built-in provider instance."""
        from .plugin_manager import builtin_provider

        return builtin_provider(self.pm)

    @property
    def last_error(self) -> Optional[HookError]:
        with self._lock:
            return self.errors[-1] if self.errors else None

    # -- subset calling ---------------------------------------------------------

    def hook_caller(self, hook_name: str) -> Any:
        """The hook caller for ``hook_name`` restricted to the selected provider + built-in."""
        keep = {id(self.builtin)}
        if self.plugin is not None:
            keep.add(id(self.plugin))
        others = [p for p in self.pm.get_plugins() if id(p) not in keep]
        return self.pm.subset_hook_caller(hook_name, remove_plugins=others)

    # -- hooks ------------------------------------------------------------------

    def is_available(self, config: Config, *, timeout: float = AVAILABILITY_TIMEOUT) -> bool:
        """Ask the provider whether it can run (on a helper thread, bounded by ``timeout``).

        :raises PluginError: when the provider raised or did not answer in time (the
            message says which).
        """
        caller = self.hook_caller("is_available")
        box: dict = {}

        def ask() -> None:
            try:
                box["result"] = caller(config=config)
            except BaseException as exc:  # reported to the caller below
                box["error"] = exc

        thread = threading.Thread(
            target=ask, name=f"hermes-cron-is-available-{self.name}", daemon=True
        )
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            raise PluginError(f"is_available did not answer within {timeout:g} s")
        if "error" in box:
            exc = box["error"]
            raise PluginError(f"is_available raised {type(exc).__name__}: {_one_line(exc)}")
        result = box.get("result")
        if not isinstance(result, bool):
            # "no", 0, a list...: a provider that cannot say yes clearly is not selected.
            raise PluginError(f"is_available returned {_describe(result)}, expected True or False")
        return result

    def start(self, ctx: Any, stop_event: threading.Event) -> Any:
        """Start triggering. Blocks for the built-in (until ``stop_event``); an external
        provider returns its summary at once. A provider whose ``start`` raises is
        dropped and the built-in's ``start`` runs instead."""
        try:
            return self.hook_caller("start")(ctx=ctx, stop_event=stop_event)
        except Exception as exc:
            if self.plugin is None:
                raise  # the built-in itself failed: a bug, not a provider to drop
            reason = f"provider {self.name!r}: start raised {type(exc).__name__}: {_one_line(exc)}"
            self._record("start", reason, exc)
            self.fall_back(reason, ctx=ctx)
            return self.hook_caller("start")(ctx=ctx, stop_event=stop_event)

    def reconcile(self, ctx: Any) -> Any:
        """Converge the provider's triggers toward ``jobs.json``; None when the provider failed
        (the failure is logged and recorded)."""
        try:
            return self.hook_caller("reconcile")(ctx=ctx)
        except Exception as exc:
            self._record(
                "reconcile", f"reconcile raised {type(exc).__name__}: {_one_line(exc)}", exc
            )
            return None

    def on_jobs_changed(self, ctx: Any, job_ids: Sequence[str]) -> Any:
        """Tell the provider which jobs changed; None when it failed (logged and recorded)."""
        try:
            return self.hook_caller("on_jobs_changed")(ctx=ctx, job_ids=list(job_ids))
        except Exception as exc:
            self._record(
                "on_jobs_changed",
                f"on_jobs_changed({', '.join(job_ids)}) raised {type(exc).__name__}: "
                f"{_one_line(exc)}",
                exc,
            )
            return None

    def fire_due(self, ctx: Any, job_id: str, fire_at: str) -> Any:
        """Fire ``job_id`` for ``fire_at`` (claim, run, record); returns the ``RunResult``.

        Store errors (``UsageError`` for a bad ``fire_at``, ``StoreCorruptError``...) and a
        provider wrapper's failure are raised after being recorded.
        """
        from .errors import HermesCronError
        from .runner import RunResult

        try:
            result = self.hook_caller("fire_due")(ctx=ctx, job_id=job_id, fire_at=fire_at)
        except HermesCronError:
            raise
        except Exception as exc:
            self._record(
                "fire_due", f"fire_due({job_id}) raised {type(exc).__name__}: {_one_line(exc)}", exc
            )
            raise
        if self.plugin is not None and not isinstance(result, RunResult):
            # The provider answered without firing: fire through the built-in default so
            # the fire is not lost. Safe even if the provider did run it: the claim makes
            # a second attempt at the same fire a no-op (LOST).
            self._record(
                "fire_due",
                f"fire_due({job_id}) returned {_describe(result)}, expected a RunResult; "
                "the built-in default fired it",
                None,
            )
            return self.builtin.fire_due(ctx=ctx, job_id=job_id, fire_at=fire_at)
        return result

    # -- fallback and errors --------------------------------------------------------

    def fall_back(self, reason: str, *, ctx: Any = None) -> None:
        """Drop the selected provider and use the built-in from now on."""
        plugin, name = self.plugin, self.name
        log.warning("cron provider %r: %s; using the built-in provider", name, reason)
        if plugin is not None:
            try:
                if self.pm.is_registered(plugin):
                    self.pm.unregister(plugin)
            except Exception:  # pragma: no cover - best effort
                pass
        self.plugin = None
        self.name = BUILTIN_NAME
        self.source = "builtin"
        self.path = None
        self.fallback_reason = reason
        if ctx is not None:
            ctx.provider_name = BUILTIN_NAME

    def _record(self, hook: str, message: str, exc: Optional[BaseException]) -> None:
        # One line in the log; the plugin's traceback only when debugging (--debug).
        debug = exc is not None and log.isEnabledFor(logging.DEBUG)
        log.error("cron provider %r: %s", self.name, message, exc_info=exc if debug else None)
        with self._lock:
            self.errors.append(HookError(to_iso(datetime.now(UTC)), hook, message))
            del self.errors[:-20]
        if self.error_sink is not None:
            try:
                self.error_sink(f"provider {self.name!r}: {message}")
            except Exception:  # recording must never turn into a second failure
                log.exception("cannot record a provider error")


def resolve_cron_scheduler(
    config: Optional[Config] = None,
    *,
    home: Optional[PathLike] = None,
    pm: Optional[PluginManagerSource] = None,
    timeout: float = AVAILABILITY_TIMEOUT,
    error_sink: Optional[Callable[[str], None]] = None,
) -> ActiveScheduler:
    """Return the active provider for ``cron.provider``; never fails.

    :param config: the configuration (None: load it from ``home``; a malformed file
        means the defaults, hence the built-in).
    :param home: the HERMES_HOME searched for user plugins.
    :param pm: the plugin manager to register the selected provider on, or a function
        returning it (None: a new one from ``get_plugin_manager()``). It is built only
        when needed: never to select the built-in.
    :param timeout: longest wait for ``is_available``.
    :param error_sink: called with a one-line message whenever a provider hook fails
        later (the service records it in ``cron/status.json``).
    """
    if config is None:
        config, _ = load_config_or_defaults(home)
    if pm is None:
        from .plugin_manager import get_plugin_manager

        pm = get_plugin_manager
    started = time.monotonic()
    raw = cfg_get(config, "cron", "provider", default="")
    if raw is None:
        raw = ""
    if not isinstance(raw, str):
        return _fallback(
            pm, str(raw), f"cron.provider must be a provider name, not {raw!r}", error_sink
        )
    requested = raw.strip()
    if requested in ("", BUILTIN_NAME):
        return ActiveScheduler(pm, requested=raw, error_sink=error_sink)

    from .discovery import discover_providers
    from .plugin_manager import register_provider

    if callable(pm):
        pm = pm()
    records = discover_providers(home)
    record = next((r for r in records if r.name == requested and r.shadowed_by is None), None)
    if record is None:
        known = sorted({r.name for r in records if r.error is None})
        hint = f" (known: builtin, {', '.join(known)})" if known else " (known: builtin)"
        return _fallback(pm, raw, f"unknown provider {requested!r}{hint}", error_sink)
    plugin = record.load()
    if record.error is not None:
        return _fallback(
            pm,
            raw,
            f"provider {requested!r} ({record.source}) failed to load: {record.error}",
            error_sink,
        )
    try:
        register_provider(pm, plugin, requested)
    except PluginError as exc:
        record.error = str(exc)
        return _fallback(pm, raw, str(exc), error_sink)
    scheduler = ActiveScheduler(
        pm,
        name=requested,
        requested=raw,
        plugin=plugin,
        source=record.source,
        path=record.path,
        error_sink=error_sink,
    )
    try:
        available = scheduler.is_available(config, timeout=timeout)
    except PluginError as exc:
        scheduler.fall_back(f"provider {requested!r}: {exc}")
        return scheduler
    scheduler.requested_available = available
    if not available:
        scheduler.fall_back(
            f"provider {requested!r} is not available (is_available returned False)"
        )
        return scheduler
    log.debug("cron provider %r selected in %.3f s", requested, time.monotonic() - started)
    return scheduler


def _fallback(
    pm: PluginManagerSource,
    requested: str,
    reason: str,
    error_sink: Optional[Callable[[str], None]],
) -> ActiveScheduler:
    log.warning("cron provider %r: %s; using the built-in provider", requested, reason)
    return ActiveScheduler(pm, requested=requested, fallback_reason=reason, error_sink=error_sink)


def _describe(value: Any) -> str:
    """A short one-line picture of a value a hook returned, with its type."""
    try:
        text = " ".join(repr(value).split())
    except Exception:  # a hostile __repr__ must not turn a report into a crash
        text = "<unprintable>"
    if len(text) > 60:
        text = text[:59] + "…"
    return f"{text} ({type(value).__name__})"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


__all__ = ["AVAILABILITY_TIMEOUT", "ActiveScheduler", "HookError", "resolve_cron_scheduler"]
