"""Where things live under ``HERMES_HOME``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

from ._frozen import Frozen

# Not the string "os.PathLike[str]": typing would compile it at import (issue 12).
PathLike = Union[str, os.PathLike[str]]


def hermes_home(home: Optional[PathLike] = None) -> Path:
    """The home folder: ``home`` if given, else ``$HERMES_HOME``, else ``~/.hermes``."""
    if home is not None:
        return Path(home).expanduser()
    env = os.environ.get("HERMES_HOME")
    if env:
        return Path(env).expanduser()
    return Path("~/.hermes").expanduser()


class HomePaths(Frozen):
    """Every file and folder the project keeps under one home (immutable)."""

    __slots__ = ("home",)

    home: Path

    def __init__(self, home: Path) -> None:
        self._set(home=home)

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
