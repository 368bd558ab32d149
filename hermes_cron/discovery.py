"""Finding plugins (providers and extensions): bundled, user folders, installed packages.

Sources, in precedence order (an earlier source wins a name collision):

1. ``bundled``: the subpackages of ``hermes_cron_builtin_plugins`` (the source
   folder ``builtin_plugins/``) that hold a ``plugin.yaml``;
2. ``user``: ``$HERMES_HOME/plugins/cron/<folder>/`` with ``plugin.yaml``
   (``name``, ``description``, ``version``) and ``__init__.py``, imported from
   its file under a module name of its own (``hermes_cron_user_plugins.<name>_<hash>``);
3. ``entrypoint``: installed distributions that declare an entry point in the
   group ``hermes_cron``; the entry point's name is the provider's name.

Discovery reads metadata only (``plugin.yaml`` files and entry point tables); a
plugin's module is imported when ``ProviderRecord.load()`` is called, so a
command that needs only the selected provider imports only that one. Every
collision is kept as a record with ``shadowed_by`` set (and logged as a
warning), and every failure (bad ``plugin.yaml``, missing ``__init__.py``,
import error) becomes the record's one-line ``error`` while the others still load.

We read entry points with ``importlib.metadata`` rather than pluggy's
``load_setuptools_entrypoints``, which skips collisions silently and stops at the
first broken package.

Whether a plugin is a provider or an extension (``ProviderRecord.kind``) is known
once it is imported: a provider implements a provider hook. A folder plugin may
say so in its ``plugin.yaml`` (``kind: provider``), which lets a process that
only registers extensions skip importing it (the bundled Chronos does).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import re
import sys
import types
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import attrs

from .paths import HomePaths, PathLike

log = logging.getLogger("hermes_cron.discovery")

BUNDLED_PACKAGE = "hermes_cron_builtin_plugins"
USER_PACKAGE = "hermes_cron_user_plugins"
ENTRY_POINT_GROUP = "hermes_cron"
PLUGIN_YAML = "plugin.yaml"

SOURCES = ("bundled", "user", "entrypoint")
#: What a plugin is: a provider implements a provider hook; an extension does not.
KINDS = ("provider", "extension")
#: Names no discovered plugin may take.
RESERVED_NAMES = frozenset({"builtin", ""})
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@attrs.define(eq=False)
class ProviderRecord:
    """One discovered provider (possibly shadowed, possibly broken).

    :ivar name: the provider's name (``plugin.yaml`` ``name``, or the entry point's name).
    :ivar source: ``bundled``, ``user`` or ``entrypoint``.
    :ivar path: the plugin's folder, or the entry point's module file once loaded
        (``module:attr`` text before).
    :ivar module: the imported plugin object, None until loaded or when loading failed.
    :ivar error: one line saying why it failed to load or validate; None when fine.
    :ivar shadowed_by: the source of the record that won the name, or None.
    :ivar declared_kind: the ``kind`` its ``plugin.yaml`` declares (``provider`` or
        ``extension``), or None.
    :ivar registered: True once registered as an extension on a plugin manager.
    :ivar disabled: True when ``cron.disabled_plugins`` names it (never imported then).
    """

    name: str
    source: str
    path: Optional[str]
    description: str = ""
    version: str = ""
    module: Any = None
    error: Optional[str] = None
    shadowed_by: Optional[str] = None
    declared_kind: Optional[str] = None
    registered: bool = False
    disabled: bool = False
    _loader: Optional[Callable[[], Any]] = attrs.field(default=None, repr=False)
    _loaded: bool = attrs.field(default=False, repr=False)

    @property
    def loaded(self) -> bool:
        """True once ``load()`` ran (whether it succeeded or not)."""
        return self._loaded

    @property
    def kind(self) -> Optional[str]:
        """``provider`` or ``extension``: from its hooks once imported, else what its
        ``plugin.yaml`` declares; None when unknown (not imported, or failed to)."""
        if self.module is not None:
            from .plugin_manager import plugin_kind

            return plugin_kind(self.module)
        return self.declared_kind

    def load(self) -> Any:
        """Import the plugin (once); returns the plugin object or None with ``error`` set."""
        if self._loaded or self.error is not None:
            return self.module
        self._loaded = True
        if self._loader is None:
            self.error = "nothing to load"
            return None
        try:
            module = self._loader()
        except BaseException as exc:  # a plugin may even call sys.exit at import
            if isinstance(exc, KeyboardInterrupt):
                raise
            self.error = f"import failed: {_one_line(exc)}"
            log.warning("plugin %r (%s, %s): %s", self.name, self.source, self.path, self.error)
            return None
        self.module = module
        if self.source == "entrypoint":
            where = getattr(module, "__file__", None)
            if where:
                self.path = str(where)
        return module

    def as_dict(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "path": self.path,
            "description": self.description,
            "version": self.version,
            "shadowed_by": self.shadowed_by,
            "error": self.error,
        }


def discover_providers(
    home: Optional[PathLike] = None, *, load: bool = False
) -> List[ProviderRecord]:
    """Every provider found, in precedence order, collisions marked.

    :param home: the HERMES_HOME whose ``plugins/cron/`` is searched (None: the default).
    :param load: import every winning (not shadowed) plugin now.
    :returns: records in the order bundled, user, entry point; within a source
        sorted by folder name (entry points in the order the metadata lists them).
    """
    records = _bundled() + _user(HomePaths.at(home).user_plugins) + _entry_points()
    winners: Dict[str, ProviderRecord] = {}
    for record in records:
        if record.error is not None and record.name in RESERVED_NAMES:
            continue  # a record with a bad name cannot shadow or be shadowed
        first = winners.get(record.name)
        if first is None:
            winners[record.name] = record
            continue
        record.shadowed_by = first.source
        log.warning(
            "provider %r from %s (%s) is shadowed by the one from %s (%s)",
            record.name,
            record.source,
            record.path,
            first.source,
            first.path,
        )
    if load:
        for record in records:
            if record.shadowed_by is None:
                record.load()
    return records


#: The same records describe providers and extensions.
PluginRecord = ProviderRecord
discover_plugins = discover_providers


def find_provider(name: str, home: Optional[PathLike] = None) -> Optional[ProviderRecord]:
    """The record that wins ``name`` (loaded), or None when no source has it."""
    for record in discover_providers(home):
        if record.name == name and record.shadowed_by is None:
            record.load()
            return record
    return None


# ---------------------------------------------------------------------------
# Sources


def _bundled() -> List[ProviderRecord]:
    try:
        spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return []
    out: List[ProviderRecord] = []
    for location in spec.submodule_search_locations:
        base = Path(location)
        if not base.is_dir():
            continue
        for folder in sorted(p for p in base.iterdir() if p.is_dir()):
            if not (folder / PLUGIN_YAML).is_file():
                continue  # not a plugin (e.g. __pycache__)
            record = _folder_record(folder, "bundled")
            if record.error is None:
                record._loader = _import_bundled(folder.name)
            out.append(record)
    return out


def _import_bundled(folder_name: str) -> Callable[[], Any]:
    def load() -> Any:
        return importlib.import_module(f"{BUNDLED_PACKAGE}.{folder_name}")

    return load


def _user(base: Path) -> List[ProviderRecord]:
    try:
        folders = sorted(p for p in base.iterdir() if p.is_dir())
    except FileNotFoundError:
        return []
    except OSError as exc:
        log.warning("cannot list user plugins in %s: %s", base, exc)
        return []
    out: List[ProviderRecord] = []
    for folder in folders:
        if folder.name.startswith((".", "_")):
            continue
        record = _folder_record(folder, "user")
        if record.error is None:
            init = folder / "__init__.py"
            if not init.is_file():
                record.error = f"{folder}: no __init__.py"
            else:
                record._loader = _import_user(record.name, folder)
        if record.error is not None:
            log.warning("user provider in %s: %s", folder, record.error)
        out.append(record)
    return out


def _import_user(name: str, folder: Path) -> Callable[[], Any]:
    def load() -> Any:
        # One module name per folder: two homes (or two plugins with similar names) in one
        # process never share a module, and loading the same folder twice reuses it.
        digest = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:8]
        safe = re.sub(r"\W", "_", name)
        module_name = f"{USER_PACKAGE}.{safe}_{digest}"
        existing = sys.modules.get(module_name)
        if existing is not None:
            return existing
        if USER_PACKAGE not in sys.modules:
            parent = types.ModuleType(USER_PACKAGE)
            parent.__path__ = []  # a namespace for user plugins; nothing is found through it
            sys.modules[USER_PACKAGE] = parent
        spec = importlib.util.spec_from_file_location(
            module_name, folder / "__init__.py", submodule_search_locations=[str(folder)]
        )
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {folder / '__init__.py'}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # relative imports inside the plugin need this
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(module_name, None)
            raise
        return module

    return load


def _folder_record(folder: Path, source: str) -> ProviderRecord:
    """A record from ``folder/plugin.yaml`` (error set when it is unusable)."""
    meta_path = folder / PLUGIN_YAML
    record = ProviderRecord(name=folder.name, source=source, path=str(folder))
    try:
        import yaml

        data = yaml.safe_load(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        record.error = f"{meta_path}: missing"
        return record
    except Exception as exc:  # yaml errors, unreadable file, bad encoding
        record.error = f"{meta_path}: cannot read: {_one_line(exc)}"
        return record
    if not isinstance(data, dict):
        record.error = f"{meta_path}: expected a mapping with name, description, version"
        return record
    name = data.get("name")
    if name is None:
        record.error = f"{meta_path}: 'name' is missing"
        return record
    if not isinstance(name, str) or not name.strip():
        # YAML reads ``name: off`` as a boolean: say so, since the fix is to quote it.
        record.error = f"{meta_path}: 'name' must be text, got {name!r} (quote it)"
        return record
    name = name.strip()
    record.name = name
    record.description = str(data.get("description") or "")
    record.version = str(data.get("version") or "")
    kind = data.get("kind")
    if kind is not None:
        if kind not in KINDS:
            record.error = f"{meta_path}: kind must be one of {', '.join(KINDS)}, not {kind!r}"
            return record
        record.declared_kind = kind
    if name in RESERVED_NAMES:
        record.error = f"{meta_path}: the name {name!r} is reserved for the built-in provider"
    elif not _NAME_RE.match(name):
        record.error = f"{meta_path}: name {name!r} is not 1-64 of A-Z a-z 0-9 _ . -"
    return record


def _entry_points() -> List[ProviderRecord]:
    from importlib import metadata

    try:
        eps = metadata.entry_points()
        if hasattr(eps, "select"):
            group = list(eps.select(group=ENTRY_POINT_GROUP))
        else:  # Python 3.9: a dict of group -> entry points
            group = list(eps.get(ENTRY_POINT_GROUP, ()))  # type: ignore[attr-defined]
    except Exception as exc:  # a broken distribution's metadata must not hide the others
        log.warning("cannot read installed entry points: %s", _one_line(exc))
        return []
    out: List[ProviderRecord] = []
    seen = set()
    for ep in group:
        # The same distribution found twice on sys.path lists the same entry point twice:
        # that is not a collision.
        key = (ep.name, ep.value)
        if key in seen:
            continue
        seen.add(key)
        dist = getattr(ep, "dist", None)  # Python 3.10+
        version = str(getattr(dist, "version", "") or "") if dist is not None else ""
        record = ProviderRecord(name=ep.name, source="entrypoint", path=ep.value, version=version)
        if ep.name in RESERVED_NAMES:
            record.error = (
                f"entry point {ep.name!r}: the name is reserved for the built-in provider"
            )
        elif not _NAME_RE.match(ep.name):
            record.error = f"entry point {ep.name!r}: not 1-64 of A-Z a-z 0-9 _ . -"
        else:
            record._loader = ep.load
        out.append(record)
    return out


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


__all__ = [
    "BUNDLED_PACKAGE",
    "ENTRY_POINT_GROUP",
    "KINDS",
    "SOURCES",
    "PluginRecord",
    "ProviderRecord",
    "discover_plugins",
    "discover_providers",
    "find_provider",
]
