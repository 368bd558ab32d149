"""Where things live under ``HERMES_HOME``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Union

PathLike = Union[str, "os.PathLike[str]"]


def hermes_home(home: Optional[PathLike] = None) -> Path:
    """The home folder: ``home`` if given, else ``$HERMES_HOME``, else ``~/.hermes``."""
    if home is not None:
        return Path(home).expanduser()
    env = os.environ.get("HERMES_HOME")
    if env:
        return Path(env).expanduser()
    return Path("~/.hermes").expanduser()


class HomePaths:
    """Every file and folder the project keeps under one home (immutable).

    A plain class rather than attrs: every command builds one, and importing attrs
    costs most of a bare interpreter start (issue 12).
    """

    __slots__ = ("home",)
    home: Path

    def __init__(self, home: Path) -> None:
        object.__setattr__(self, "home", home)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"HomePaths is immutable (cannot set {name!r})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"HomePaths is immutable (cannot delete {name!r})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HomePaths) or other.__class__ is not self.__class__:
            return NotImplemented
        return self.home == other.home

    def __hash__(self) -> int:
        return hash((HomePaths, self.home))

    def __repr__(self) -> str:
        return f"HomePaths(home={self.home!r})"

    def __reduce__(self) -> Any:
        return (HomePaths, (self.home,))

    @classmethod
    def at(cls, home: Optional[PathLike] = None) -> HomePaths:
        return cls(hermes_home(home))

    @property
    def config(self) -> Path:
        return self.home / "config.yaml"

    @property
    def auth(self) -> Path:
        return self.home / "auth.json"

    @property
    def cron_dir(self) -> Path:
        return self.home / "cron"

    @property
    def jobs(self) -> Path:
        return self.cron_dir / "jobs.json"

    @property
    def jobs_lock(self) -> Path:
        return self.cron_dir / ".jobs.lock"

    @property
    def runs(self) -> Path:
        return self.cron_dir / "runs.jsonl"

    @property
    def output_dir(self) -> Path:
        return self.cron_dir / "output"

    @property
    def status(self) -> Path:
        """Heartbeat and last error of the running provider, read by ``status``."""
        return self.cron_dir / "status.json"

    @property
    def user_plugins(self) -> Path:
        return self.home / "plugins" / "cron"
