"""The plugin manager: one factory, the validation of provider plugins, and hook tracing.

``get_plugin_manager()`` builds a fresh ``pluggy.PluginManager`` every time it
is called (there is no manager built at import time): the service, the CLI,
tests and embedding agents all call it. It registers, in this order:

1. the plugins passed in (an embedding agent's ``run_job``, for example);
2. the default executor (``hermes_cron.executor.DefaultExecutor``, a
   ``trylast`` ``run_job``);
3. the built-in provider (``hermes_cron.builtin_provider.BuiltinProvider``,
   ``trylast`` implementations of every provider hook).

Order matters because among ``trylast`` implementations pluggy calls the one
registered *first* first: the defaults are registered last so that they answer
last. ``register_plugin()`` keeps it that way for plugins added later.

A provider plugin (discovered by ``hermes_cron.discovery`` and selected by the
resolver) is registered with ``register_provider()``, which refuses what would
break subset calling or the fallback guarantee: ``trylast`` or ``specname`` on
a provider hook, an implementation of ``run_job`` (providers decide *when*,
never *what*), or a hook name that is not in the specification. A refused
plugin is never left registered. A provider may observe runs (``run_finished``).

An extension (a discovered plugin that implements no provider hook: only
``run_job`` and/or ``run_finished``) is registered with ``register_extension()``
whatever provider is selected. ``plugin_kind()`` tells the two apart.

No plugin may wrap ``run_finished`` (``wrapper``/``hookwrapper``): observers are
called one by one, off the scheduling path, so there is no call to wrap.

``HERMES_CRON_TRACE_PLUGINS=1`` logs every hook call, its implementations and
its result to the ``hermes_cron.plugins`` logger.
"""

from __future__ import annotations

import importlib
import logging
import os
from typing import Any, Iterable, List, Optional

import pluggy

from .config import BUILTIN_NAME  # the built-in's registered name (reserved)
from .errors import PluginError
from .hookspec import EXECUTION_HOOKS, OBSERVER_HOOKS, PROJECT_NAME, PROVIDER_HOOKS

#: Name the default executor is registered under.
EXECUTOR_NAME = "hermes_cron.executor"
#: Environment variable that turns on hook-call tracing.
TRACE_ENV = "HERMES_CRON_TRACE_PLUGINS"

trace_log = logging.getLogger("hermes_cron.plugins")

_ALL_HOOKS = frozenset(PROVIDER_HOOKS + EXECUTION_HOOKS + OBSERVER_HOOKS)

PROVIDER = "provider"
EXTENSION = "extension"


def get_plugin_manager(
    *, plugins: Iterable[Any] = (), trace: Optional[bool] = None
) -> pluggy.PluginManager:
    """Build a plugin manager with the hook specs, ``plugins``, and the built-in defaults.

    :param plugins: objects or modules with ``@hookimpl`` functions, registered
        before the defaults (an agent's ``run_job`` goes here). A plugin may also
        be a ``(plugin, name)`` pair.
    :param trace: log every hook call to ``hermes_cron.plugins``; None reads
        ``HERMES_CRON_TRACE_PLUGINS`` (``1``/``true``/``yes``).
    :raises PluginError: when a plugin does not match the hook specification.
    """
    pm = pluggy.PluginManager(PROJECT_NAME)
    # By module path: ``hermes_cron.hookspec`` as a package attribute is the marker.
    pm.add_hookspecs(importlib.import_module("hermes_cron.hookspec"))
    for item in plugins:
        plugin, name = item if isinstance(item, tuple) else (item, None)
        _register_checked(pm, plugin, name)
    _register_defaults(pm)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(_one_line(exc)) from None
    if trace is None:
        trace = os.environ.get(TRACE_ENV, "").strip().lower() in ("1", "true", "yes", "on")
    if trace:
        enable_tracing(pm)
    return pm


def _register_defaults(pm: pluggy.PluginManager) -> None:
    from .builtin_provider import BuiltinProvider
    from .executor import DefaultExecutor

    pm.register(DefaultExecutor(), name=EXECUTOR_NAME)
    pm.register(BuiltinProvider(), name=BUILTIN_NAME)


def builtin_provider(pm: pluggy.PluginManager) -> Any:
    """The built-in provider instance registered on ``pm``."""
    plugin = pm.get_plugin(BUILTIN_NAME)
    if plugin is None:
        raise PluginError("the built-in provider is not registered on this plugin manager")
    return plugin


def register_plugin(pm: pluggy.PluginManager, plugin: Any, name: Optional[str] = None) -> str:
    """Register a non-provider plugin (e.g. an agent's ``run_job``) after the manager was built.

    When the plugin has ``trylast`` implementations, the defaults are registered
    again after it so that they still answer last.

    :returns: the name the plugin was registered under.
    :raises PluginError: when the plugin does not match the specification; nothing is
        left registered then.
    """
    opts = _impl_options(pm, plugin)
    if any(o.get("trylast") for _, o in opts):
        defaults = [(n, pm.get_plugin(n)) for n in (EXECUTOR_NAME, BUILTIN_NAME)]
        defaults = [(n, p) for n, p in defaults if p is not None]
        for _, p in defaults:
            pm.unregister(p)
        try:
            registered = _register_checked(pm, plugin, name)
        finally:
            for n, p in defaults:
                pm.register(p, name=n)
        return registered
    return _register_checked(pm, plugin, name)


def _register_checked(pm: pluggy.PluginManager, plugin: Any, name: Optional[str]) -> str:
    """``pm.register`` that turns pluggy's errors into ``PluginError`` and never leaves the
    plugin half registered."""
    label = name or _describe(plugin)
    if name == BUILTIN_NAME:
        raise PluginError(f"plugin name {BUILTIN_NAME!r} is reserved for the built-in provider")
    unknown = [
        attr
        for attr, opts in _impl_options(pm, plugin)
        if (opts.get("specname") or attr) not in _ALL_HOOKS and not opts.get("optionalhook")
    ]
    if unknown:
        raise PluginError(
            f"plugin {label!r}: {', '.join(sorted(unknown))} "
            f"{'is not a hook' if len(unknown) == 1 else 'are not hooks'} of hermes_cron "
            f"(known hooks: {', '.join(sorted(_ALL_HOOKS))})"
        )
    wrapping = [
        attr
        for attr, opts in _impl_options(pm, plugin)
        if (opts.get("specname") or attr) in OBSERVER_HOOKS
        and (opts.get("wrapper") or opts.get("hookwrapper"))
    ]
    if wrapping:
        raise PluginError(
            f"plugin {label!r}: {', '.join(sorted(wrapping))} cannot be a wrapper "
            "(observers are called one by one; drop wrapper=True)"
        )
    try:
        registered = pm.register(plugin, name=name)
    except ValueError as exc:  # a name or object already registered
        _unregister_quietly(pm, plugin)
        raise PluginError(f"plugin {label!r}: {_one_line(exc)}") from None
    except pluggy.PluginValidationError as exc:
        _unregister_quietly(pm, plugin)
        raise PluginError(f"plugin {label!r}: {_one_line(exc)}") from None
    if registered is None:
        raise PluginError(f"plugin {label!r}: its name is blocked on this plugin manager")
    return registered


def validate_provider(pm: pluggy.PluginManager, plugin: Any, name: str) -> None:
    """Refuse what a provider plugin must not do; raises ``PluginError`` naming the problem.

    * ``trylast`` on a provider hook: the built-in's ``trylast`` default must answer last;
    * ``specname``: pluggy's subset calling cannot exclude such an implementation;
    * ``run_job``: providers decide *when* jobs fire, never what running one means;
    * a provider with no provider hook at all is not a provider;
    * a hook name that is not in the specification.
    """
    if name == BUILTIN_NAME:
        raise PluginError(f"provider name {BUILTIN_NAME!r} is reserved for the built-in provider")
    opts = _impl_options(pm, plugin)
    problems: List[str] = []
    hooks_seen = set()
    for attr, o in opts:
        hook = o.get("specname") or attr
        hooks_seen.add(hook)
        if o.get("specname"):
            problems.append(
                f"{attr} uses specname={o['specname']!r} (not allowed on provider hooks: "
                "name the function after the hook)"
            )
        if hook in PROVIDER_HOOKS and o.get("trylast"):
            problems.append(f"{hook} is trylast (reserved for the built-in default; drop trylast)")
        if hook in EXECUTION_HOOKS:
            problems.append(f"implements {hook} (providers never implement run_job)")
        if hook not in _ALL_HOOKS and not o.get("optionalhook"):
            problems.append(f"{attr} is not a hook of hermes_cron")
    if not problems and not hooks_seen & set(PROVIDER_HOOKS):
        problems.append(
            f"implements no provider hook (expected some of {', '.join(PROVIDER_HOOKS)})"
        )
    if problems:
        raise PluginError(f"provider {name!r} refused: " + "; ".join(problems))


def register_provider(pm: pluggy.PluginManager, plugin: Any, name: str) -> None:
    """Validate and register a provider plugin under ``name``.

    Registering the same object again under the same name is a no-op. On any
    failure the plugin is not left registered.

    :raises PluginError: when validation or registration fails.
    """
    # Validate first: the same object may already be registered as something else
    # (an extension), and that must not make it a provider without the checks.
    validate_provider(pm, plugin, name)
    if pm.get_plugin(name) is plugin:
        return
    _register_checked(pm, plugin, name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        _unregister_quietly(pm, plugin)
        raise PluginError(f"provider {name!r}: {_one_line(exc)}") from None


def plugin_kind(plugin: Any) -> str:
    """``provider`` when ``plugin`` implements a provider hook, else ``extension``."""
    pm = pluggy.PluginManager(PROJECT_NAME)
    hooks = {o.get("specname") or attr for attr, o in _impl_options(pm, plugin)}
    return PROVIDER if hooks & set(PROVIDER_HOOKS) else EXTENSION


def validate_extension(pm: pluggy.PluginManager, plugin: Any, name: str) -> None:
    """Refuse an extension that is not one; raises ``PluginError`` naming the problem.

    An extension implements only ``run_job`` and/or ``run_finished``: a plugin with a
    provider hook is a provider (registered only when selected), and one with no hook
    at all does nothing.
    """
    if name == BUILTIN_NAME:
        raise PluginError(f"plugin name {BUILTIN_NAME!r} is reserved for the built-in provider")
    hooks = {o.get("specname") or attr for attr, o in _impl_options(pm, plugin)}
    provider = sorted(hooks & set(PROVIDER_HOOKS))
    if provider:
        raise PluginError(
            f"plugin {name!r} implements provider hooks ({', '.join(provider)}): it is a "
            "provider, registered only when cron.provider selects it"
        )
    if not hooks:
        raise PluginError(
            f"plugin {name!r} implements no hook (an extension implements "
            f"{' and/or '.join(EXECUTION_HOOKS + OBSERVER_HOOKS)})"
        )


def register_extension(pm: pluggy.PluginManager, plugin: Any, name: str) -> str:
    """Validate and register an extension plugin under ``name`` (before the defaults, so
    the default executor still answers ``run_job`` last).

    :raises PluginError: when it is not an extension or does not match the
        specification; nothing is left registered then.
    """
    validate_extension(pm, plugin, name)
    registered = register_plugin(pm, plugin, name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        _unregister_quietly(pm, plugin)
        raise PluginError(f"plugin {name!r}: {_one_line(exc)}") from None
    return registered


def _impl_options(pm: pluggy.PluginManager, plugin: Any) -> list[tuple[str, dict]]:
    """``(attribute name, hookimpl options)`` of every ``@hookimpl`` on ``plugin``."""
    found = []
    for attr in dir(plugin):
        try:
            opts = pm.parse_hookimpl_opts(plugin, attr)
        except Exception:  # a property that raises, an odd module attribute: not a hook
            continue
        if opts is not None:
            found.append((attr, dict(opts)))
    return found


def _unregister_quietly(pm: pluggy.PluginManager, plugin: Any) -> None:
    # Older pluggy versions can leave a plugin registered after a validation error.
    try:
        if pm.is_registered(plugin):
            pm.unregister(plugin)
    except Exception:  # pragma: no cover - best effort cleanup
        pass


def _describe(plugin: Any) -> str:
    return getattr(plugin, "__name__", None) or type(plugin).__name__


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def enable_tracing(pm: pluggy.PluginManager) -> Any:
    """Log every hook call on ``pm`` to the ``hermes_cron.plugins`` logger (DEBUG level).

    The logger's level is lowered to DEBUG when it is not set, so that turning on
    ``HERMES_CRON_TRACE_PLUGINS`` is enough. Returns the function that undoes it.
    """
    if trace_log.level == logging.NOTSET:
        trace_log.setLevel(logging.DEBUG)

    def before(hook_name: str, hook_impls: Any, kwargs: Any) -> None:
        impls = ", ".join(f"{i.plugin_name}" for i in reversed(list(hook_impls)))
        args = ", ".join(f"{k}={_short(v)}" for k, v in kwargs.items())
        trace_log.debug("hook %s(%s) -> [%s]", hook_name, args, impls)

    def after(outcome: Any, hook_name: str, hook_impls: Any, kwargs: Any) -> None:
        exc = getattr(outcome, "exception", None)
        if exc is not None:
            trace_log.debug("hook %s raised %s: %s", hook_name, type(exc).__name__, exc)
        else:
            trace_log.debug("hook %s returned %s", hook_name, _short(outcome.get_result()))

    return pm.add_hookcall_monitoring(before, after)


def _short(value: Any, limit: int = 120) -> str:
    if type(value).__name__ == "CronContext":  # its full repr holds the whole config
        return f"<ctx {getattr(value, 'home', '?')} provider={value.provider_name}>"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = [
    "BUILTIN_NAME",
    "EXECUTOR_NAME",
    "EXTENSION",
    "PROVIDER",
    "TRACE_ENV",
    "builtin_provider",
    "enable_tracing",
    "get_plugin_manager",
    "plugin_kind",
    "register_extension",
    "register_plugin",
    "register_provider",
    "validate_extension",
    "validate_provider",
]
