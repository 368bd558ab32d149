"""Extension plugins: discovered plugins that implement no provider hook.

An extension implements only ``run_job`` and/or ``run_finished`` (it runs prompt
jobs, delivers outputs, raises alerts). Unlike a provider, which is registered
only when ``cron.provider`` selects it, every extension found by discovery
(bundled, ``$HERMES_HOME/plugins/cron/<name>/``, entry point group
``hermes_cron``) is registered on the service's plugin manager, whatever the
provider, unless ``cron.disabled_plugins`` names it.

Knowing a plugin's kind means importing it (its hooks say), so
``load_extensions`` imports every plugin that is not shadowed, not disabled, and
does not declare ``kind: provider`` in its ``plugin.yaml``; the service does
this once, when it is built. A plugin that fails to import, or to register, is
logged and recorded on its record (``error``), never fatal: the service and the
other plugins go on.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Iterable, List, Optional, Set

import pluggy

from .config import Config, cfg_get
from .discovery import PluginRecord, discover_plugins
from .errors import PluginError
from .paths import PathLike
from .plugin_manager import EXTENSION, PROVIDER, register_extension

log = logging.getLogger("hermes_cron.extensions")


def disabled_plugins(config: Config) -> Set[str]:
    """The names in ``cron.disabled_plugins`` (anything that is not a name is ignored)."""
    names = cfg_get(config, "cron", "disabled_plugins", default=[]) or []
    if not isinstance(names, (list, tuple)):
        return set()
    return {str(n).strip() for n in names if isinstance(n, str) and n.strip()}


def load_extensions(
    pm: pluggy.PluginManager, home: Optional[PathLike], config: Config
) -> List[PluginRecord]:
    """Register every discovered extension on ``pm``; returns every discovered record.

    Records of extensions that were registered have ``registered`` set; disabled ones
    ``disabled`` (and were not imported); a plugin that failed to import or to
    register has ``error`` set (and a warning was logged).
    """
    disabled = disabled_plugins(config)
    records = discover_plugins(home)
    for record in records:
        if record.shadowed_by is not None or record.error is not None:
            continue
        if record.name in disabled:
            record.disabled = True
            continue
        if record.declared_kind == PROVIDER:
            continue  # registered only when selected: no need to import it here
        plugin = record.load()
        if plugin is None:
            continue  # the import failed: logged and kept in record.error
        if record.kind != EXTENSION:
            if record.declared_kind == EXTENSION:
                record.error = "plugin.yaml says kind: extension, but it implements provider hooks"
                log.warning("plugin %r (%s): %s", record.name, record.source, record.error)
            continue
        try:
            register_extension(pm, plugin, record.name)
        except PluginError as exc:
            record.error = str(exc)
            log.warning(
                "extension %r (%s, %s) not loaded: %s",
                record.name,
                record.source,
                record.path,
                exc,
            )
            continue
        record.registered = True
        log.info("extension %r (%s, %s) registered", record.name, record.source, record.path)
    return records


def plugin_rows(
    records: Iterable[PluginRecord], *, config: Config, active: Optional[str] = None
) -> List[Dict[str, Any]]:
    """SPEC §8 ``plugins``: ``{name, kind, source, path, loaded, error}`` per record (plus
    ``shadowed_by``, ``disabled``, ``registered``, ``active``, ``description``,
    ``version``).

    Imports every plugin that is not shadowed or disabled, to tell its kind.
    ``loaded`` is true when the plugin was imported without error and (for an
    extension) registered.
    """
    disabled = disabled_plugins(config)
    rows: List[Dict[str, Any]] = []
    for record in records:
        if record.shadowed_by is None and record.error is None and record.name not in disabled:
            record.load()
        kind = record.kind
        if (
            record.error is None
            and record.module is not None
            and record.declared_kind
            and kind != record.declared_kind
        ):
            article = "an" if kind == EXTENSION else "a"
            record.error = (
                f"plugin.yaml says kind: {record.declared_kind}, but its hooks make it "
                f"{article} {kind}"
            )
        if kind == EXTENSION:
            loaded = record.registered and record.error is None
        else:
            loaded = record.module is not None and record.error is None
        rows.append(
            {
                "name": record.name,
                "kind": kind,
                "source": record.source,
                "path": record.path,
                "loaded": bool(loaded),
                "error": record.error,
                "shadowed_by": record.shadowed_by,
                "disabled": record.name in disabled,
                "active": kind == PROVIDER and record.name == active,
                "description": record.description,
                "version": record.version,
            }
        )
    return rows


__all__ = ["disabled_plugins", "load_extensions", "plugin_rows"]
