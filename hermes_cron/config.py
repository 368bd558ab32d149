"""``config.yaml``: built-in defaults deep-merged with the user's file."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from .errors import ConfigError
from .paths import HomePaths, PathLike

Config = Dict[str, Any]

#: Key under which a loaded config records the home folder it belongs to.
HOME_KEY = "_home"

#: The built-in provider's name: ``cron.provider`` empty or this selects it.
BUILTIN_NAME = "builtin"

#: Every key we know, with its default. A key added here appears in an old
#: config with no migration, because loading deep-merges the file over this.
DEFAULTS: Config = {
    "cron": {
        "provider": "",
        "timezone": "",  # empty: the system's local zone
        "max_workers": 4,
        "job_timeout": 600,
        "misfire_grace": 3600,
        "claim_ttl": 300,
        "store": "",  # empty or json: cron/jobs.json; a postgresql:// URL: PostgreSQL
        "output_retention": 50,
        "output_max_bytes": 1048576,
        "ledger_max_bytes": 67108864,
        "metrics_port": 0,  # 0: the daemon serves no metrics
        "metrics_job_labels": False,
        "disabled_plugins": [],
        "chronos": {
            "portal_url": "",
            "callback_url": "",
            "expected_audience": "",
            "nas_jwks_url": "",
        },
    },
}


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> Config:
    """Return ``base`` with ``override`` merged in; nested mappings merge key by key."""
    merged: Config = copy.deepcopy(dict(base))
    for key, value in override.items():
        if value is None and isinstance(merged.get(key), Mapping):
            continue  # an empty section ("cron:" with nothing under it) keeps its defaults
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def read_config_file(path: Path) -> Config:
    """Parse ``path`` as YAML; raise ``ConfigError`` naming the file and line on any fault."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from exc
    # Imported here, only when there is a file to parse: importing yaml costs about half
    # a bare interpreter start, which every command would pay (issue 12).
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: malformed YAML: {problem}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: config must be a mapping, not {type(data).__name__}")
    cron = data.get("cron")
    if cron is not None and not isinstance(cron, dict):
        raise ConfigError(f"{path}: 'cron' must be a mapping, not {type(cron).__name__}")
    return data


def load_config(home: Optional[PathLike] = None) -> Config:
    """Return the defaults deep-merged with ``$HERMES_HOME/config.yaml``.

    Raises ``ConfigError`` (naming file and line) when the file is malformed;
    callers that must keep running use ``load_config_or_defaults``.

    The result also holds ``_home``, the folder it was loaded from: hooks such
    as ``is_available(config)`` get only the config and must find ``auth.json``
    beside it, not in whatever ``$HERMES_HOME`` says at call time.
    """
    paths = HomePaths.at(home)
    config = deep_merge(DEFAULTS, read_config_file(paths.config))
    config[HOME_KEY] = str(paths.home)
    return config


def load_config_or_defaults(home: Optional[PathLike] = None) -> tuple[Config, Optional[str]]:
    """Like ``load_config`` but never raises: a broken file yields the defaults and its error."""
    try:
        return load_config(home), None
    except ConfigError as exc:
        config = copy.deepcopy(DEFAULTS)
        config[HOME_KEY] = str(HomePaths.at(home).home)
        return config, str(exc)


def cfg_get(cfg: Mapping[str, Any], *keys: str, default: Any = None) -> Any:
    """Walk nested ``keys`` through ``cfg``; return ``default`` where any step is missing."""
    node: Any = cfg
    for key in keys:
        if not isinstance(node, Mapping) or key not in node:
            return default
        node = node[key]
    return node
