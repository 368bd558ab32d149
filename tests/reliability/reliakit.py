"""Helpers for the reliability tests (real processes, injected faults, bounded time).

``CHAOS_SECONDS`` is how long the chaos phase of a test lasts: the
``HERMES_CRON_CHAOS_SECONDS`` environment variable, default ``DEFAULT_CHAOS_SECONDS``
(short enough for CI, which runs the whole suite six times on two cores). A longer
soak: ``HERMES_CRON_CHAOS_SECONDS=60 pytest tests/reliability``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

from helpers.servicekit import cli_cmd, wait_for

#: Seconds of chaos per test when ``HERMES_CRON_CHAOS_SECONDS`` is not set.
DEFAULT_CHAOS_SECONDS = 15.0


def chaos_seconds(default: float = DEFAULT_CHAOS_SECONDS) -> float:
    """The chaos duration: ``$HERMES_CRON_CHAOS_SECONDS`` (at least 1 s) or ``default``."""
    raw = os.environ.get("HERMES_CRON_CHAOS_SECONDS", "").strip()
    if not raw:
        return default
    try:
        return max(1.0, float(raw))
    except ValueError:
        raise ValueError(
            f"HERMES_CRON_CHAOS_SECONDS must be a number of seconds, not {raw!r}"
        ) from None


class Daemon:
    """One ``hermes-cron daemon`` process on ``home``, logging to a file of its own."""

    def __init__(self, home: Path, name: str) -> None:
        self.home = home
        self.name = name
        self.generation = 0
        self.proc: Optional[subprocess.Popen] = None
        self.pids: List[int] = []
        self.log = home / f"daemon-{name}.log"

    def start(self) -> Daemon:
        self.generation += 1
        env = dict(os.environ, HERMES_HOME=str(self.home))
        env.pop("HERMES_CRON_DEBUG", None)
        with open(self.log, "ab") as log:
            log.write(f"--- start {self.generation}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                cli_cmd("daemon"),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=str(self.home),
            )
        self.pids.append(self.proc.pid)
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL, no cleanup of any kind, and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def wait_started(self, timeout: float = 60.0) -> None:
        """Until this start's daemon runs its scheduler (its SIGTERM handler is in place
        well before), or has exited."""
        marker = f"--- start {self.generation}\n"

        def started() -> bool:
            text = self.log.read_text(errors="replace")
            return "scheduler started" in text[text.rfind(marker) :] or not self.alive

        wait_for(started, timeout, 0.02, what=f"daemon {self.name} to start")

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait for a clean exit; returns the exit code. A daemon started a
        moment ago is let reach its scheduler first: a SIGTERM before the interpreter
        has run our code kills it by signal, which is not what this asks about."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.wait_started()
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)
            raise AssertionError(
                f"daemon {self.name} did not stop on SIGTERM:\n{self.tail()}"
            ) from None

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def fire_lines(path: Path) -> List[Tuple[str, str, int]]:
    """``(job_id, fire_at, pid of the daemon that ran it)`` per line the jobs wrote, each
    line ``$HERMES_CRON_JOB_ID $HERMES_CRON_FIRE_AT $HERMES_CRON_OWNER``.

    The pid comes from the claim's owner token (``host:pid:random``), which the daemon
    wrote into the claim before it started the job: unlike the job's ``$PPID`` (1 once
    the daemon is SIGKILLed before the job's shell reads it) it names the daemon that
    ran the fire whatever happened to it since, and it is the ``owner`` of the fire's
    ledger row. A line torn by a kill (not three fields, no complete token) is ignored:
    it cannot be matched to a fire anyway and its job's next line starts fresh.
    """
    if not path.exists():
        return []
    out = []
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) == 3:
            pid = owner_pid(parts[2])
            if pid:
                out.append((parts[0], parts[1], pid))
    return out


def owner_pid(owner: Any) -> int:
    """The pid in a claim owner token ``host:pid:random``; 0 when it is not one."""
    parts = str(owner or "").split(":")
    if len(parts) >= 3 and parts[-2].isdigit() and parts[-1]:
        return int(parts[-2])
    return 0


def duplicates(pairs: Iterable[Tuple[str, str]]) -> Dict[Tuple[str, str], int]:
    """Pairs seen more than once, with their count."""
    return {pair: n for pair, n in Counter(pairs).items() if n > 1}


def ledger(home: Path) -> List[Dict[str, Any]]:
    """Every complete row of ``cron/runs.jsonl``, oldest first (torn lines skipped)."""
    path = home / "cron" / "runs.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def is_run(row: Dict[str, Any]) -> bool:
    """A ledger row for a run that started (not a skip, a miss or a reaped interruption)."""
    if row.get("status") not in ("ok", "error", "timeout"):
        return False
    return not str(row.get("error") or "").startswith(("interrupted", "not started"))


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until truthy; fail naming ``what`` after ``timeout`` seconds."""
    return wait_for(predicate, timeout, interval, what=what)


class DiskFault:
    """Make file-system calls on chosen paths fail with one ``errno``, in this process.

    Patches ``os.open``, ``os.write`` (and ``os.writev`` with it), ``os.fsync``,
    ``os.mkdir``, ``os.replace`` and ``os.rename``: a call whose path (for
    ``write``/``fsync``: the path of the open file descriptor, from ``/proc/self/fd``)
    passes ``match`` raises ``OSError(errno)`` while
    the fault is on. Reads fail too only with ``reads=True`` (an ``open`` without write
    flags). Tests run as root, so ``chmod`` would not deny anything: this is how a
    permission error, a full disk or a read-only file system is simulated.

    ``hits`` counts the calls that failed.
    """

    _WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def __init__(
        self,
        monkeypatch: Any,
        match: Any,
        err: int,
        *,
        calls: Iterable[str] = ("open", "write", "fsync", "mkdir", "replace", "rename"),
        reads: bool = False,
    ) -> None:
        self.match = match
        self.err = err
        self.reads = reads
        self.active = True
        self.hits = 0
        self._real = {
            name: getattr(os, name)
            for name in ("open", "write", "writev", "fsync", "mkdir", "replace", "rename")
        }
        wrappers = {
            "open": self._open,
            "write": self._write,
            "fsync": self._fsync,
            "mkdir": self._mkdir,
            "replace": self._replace,
            "rename": self._rename,
        }
        for name in calls:
            monkeypatch.setattr(os, name, wrappers[name])
            if name == "write":
                monkeypatch.setattr(os, "writev", self._writev)

    def on(self) -> None:
        self.active = True

    def off(self) -> None:
        self.active = False

    def _fail(self, path: Any) -> None:
        if not self.active:
            return
        try:
            target = Path(os.fsdecode(path)).absolute()
        except (TypeError, ValueError):
            return
        if self.match(target):
            self.hits += 1
            raise OSError(self.err, os.strerror(self.err), str(target))

    def _fd_path(self, fd: int) -> str:
        try:
            return os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return ""

    def _open(self, path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if self.reads or flags & self._WRITE_FLAGS:
            self._fail(path)
        return self._real["open"](path, flags, *args, **kwargs)

    def _fail_fd(self, fd: Any) -> None:
        """``_fail`` for the file an open descriptor names."""
        if self.active and isinstance(fd, int):
            path = self._fd_path(fd)
            if path:
                self._fail(path)

    def _write(self, fd: int, data: Any) -> int:
        self._fail_fd(fd)
        return self._real["write"](fd, data)

    def _writev(self, fd: int, buffers: Any) -> int:
        self._fail_fd(fd)
        return self._real["writev"](fd, buffers)

    def _fsync(self, fd: Any) -> None:
        self._fail_fd(fd)
        return self._real["fsync"](fd)

    def _mkdir(self, path: Any, *args: Any, **kwargs: Any) -> None:
        self._fail(path)
        return self._real["mkdir"](path, *args, **kwargs)

    def _replace(self, src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        self._fail(dst)
        return self._real["replace"](src, dst, *args, **kwargs)

    def _rename(self, src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        self._fail(dst)
        return self._real["rename"](src, dst, *args, **kwargs)


def under(folder: Path) -> Any:
    """A ``DiskFault`` match for everything inside ``folder`` (and ``folder`` itself)."""
    root = folder.absolute()

    def match(path: Path) -> bool:
        return path == root or root in path.parents

    return match


def named(*names: str) -> Any:
    """A ``DiskFault`` match for files called one of ``names``, or temp files for them
    (``.<name>.*``, as ``atomic_write`` makes)."""

    def match(path: Path) -> bool:
        return path.name in names or any(path.name.startswith(f".{n}.") for n in names)

    return match
