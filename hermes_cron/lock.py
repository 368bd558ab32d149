"""File primitives the store relies on: a bounded cross-process lock and atomic replace.

``FileLock`` wraps ``fcntl.flock`` on a dedicated lock file (``cron/.jobs.lock``).
Each acquisition opens its own file descriptor, and ``flock`` locks belong to
the open file description, so two threads of one process exclude each other
exactly like two processes do. Waiting is a loop of non-blocking attempts with
a short backoff, bounded by ``timeout``: on expiry ``LockTimeoutError`` names
the lock file and, when known, the process holding it. There is no fallback
to running unlocked.

``atomic_write`` replaces a file so a reader (or a crash) only ever sees the
old bytes or the new bytes: temp file in the same folder, write, fsync,
``os.replace``, fsync the folder.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Callable, Dict, Optional, Sequence, Tuple, Type, Union

from .errors import LockTimeoutError

PathArg = Union[str, os.PathLike[str]]  # not a string: typing would compile it

#: Backoff between attempts: starts small so an uncontended wait is short, caps
#: so a waiter does not spin on a busy machine.
_FIRST_DELAY = 0.001
_MAX_DELAY = 0.05

#: One in-process lock per lock file: threads of this process queue on it (woken the
#: moment it is released) before polling ``flock``, so they never wait out a backoff
#: sleep for each other; the ``flock`` polling is left to contention between processes.
_THREAD_LOCKS: Dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


def _thread_lock(path: Path) -> threading.Lock:
    key = os.path.abspath(path)
    with _THREAD_LOCKS_GUARD:
        lock = _THREAD_LOCKS.get(key)
        if lock is None:
            lock = _THREAD_LOCKS[key] = threading.Lock()
        return lock


class FileLock:
    """An exclusive ``flock`` on ``path`` with a bounded wait.

    Not re-entrant: acquiring it again on a thread that already holds it raises
    ``RuntimeError`` at once (it would otherwise wait for itself until timeout).

    Usage::

        with FileLock(paths.jobs_lock, timeout=10):
            ...
    """

    def __init__(self, path: PathArg, timeout: float = 10.0) -> None:
        self.path = Path(path)
        self.timeout = float(timeout)
        self._local = threading.local()

    @property
    def held(self) -> bool:
        """True when the calling thread holds this lock."""
        return getattr(self._local, "fd", None) is not None

    def acquire(self, timeout: Optional[float] = None) -> None:
        """Take the lock, waiting at most ``timeout`` seconds (default: the lock's own).

        Raises ``LockTimeoutError`` when the wait expires, and ``OSError`` when the
        lock file cannot be opened (the store turns that into a ``StoreError``).
        """
        if self.held:
            raise RuntimeError(f"{self.path}: lock already held by this thread (not re-entrant)")
        limit = self.timeout if timeout is None else float(timeout)
        deadline = time.monotonic() + max(0.0, limit)
        in_process = _thread_lock(self.path)
        if not in_process.acquire(timeout=max(0.0, limit)):
            holder = self._holder()
            who = f" (held by {holder})" if holder else ""
            raise LockTimeoutError(
                f"{self.path}: could not acquire the lock within {limit:g} s{who}; "
                "another hermes-cron process is busy or stuck"
            )
        try:
            self._acquire_file(limit, deadline)
        except BaseException:
            in_process.release()
            raise

    def _acquire_file(self, limit: float, deadline: float) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            delay = _FIRST_DELAY
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                        raise
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    holder = self._holder()
                    who = f" (held by {holder})" if holder else ""
                    raise LockTimeoutError(
                        f"{self.path}: could not acquire the lock within {limit:g} s{who}; "
                        "another hermes-cron process is busy or stuck"
                    )
                time.sleep(min(delay, remaining))
                delay = min(delay * 2, _MAX_DELAY)
        except BaseException:
            os.close(fd)
            raise
        # Note who holds it, so a waiter that times out can say so. Best effort only.
        try:
            os.ftruncate(fd, 0)
            # os.uname().nodename is the host name socket.gethostname() gives, without
            # importing socket in every command that writes jobs.json (issue 12).
            os.pwrite(fd, f"pid {os.getpid()} on {os.uname().nodename}\n".encode(), 0)
        except OSError:
            pass
        self._local.fd = fd

    def release(self) -> None:
        """Release the lock held by this thread."""
        fd = getattr(self._local, "fd", None)
        if fd is None:
            raise RuntimeError(f"{self.path}: lock not held by this thread")
        self._local.fd = None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
            _thread_lock(self.path).release()

    def _holder(self) -> str:
        try:
            with open(self.path, encoding="utf-8", errors="replace") as fh:
                return fh.read(200).strip()
        except OSError:
            return ""

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.release()


def fsync_dir(directory: PathArg) -> None:
    """fsync a folder so a rename inside it is durable."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_dead_temps(path: PathArg) -> int:
    """Delete the temp files ``atomic_write`` left beside ``path`` when a writer was killed.

    Call it only while holding the lock every writer of ``path`` takes: a writer makes
    its temp file only while it holds that lock, so any temp file that exists then
    belongs to a process that died mid-write. Returns how many were removed.
    """
    target = Path(path)
    prefix = f".{target.name}."
    try:
        names = os.listdir(target.parent)
    except OSError:
        return 0
    removed = 0
    for name in names:
        if name.startswith(prefix) and name.endswith(".tmp"):
            try:
                os.unlink(target.parent / name)
                removed += 1
            except OSError:
                pass
    return removed


#: How ``_new_temp`` opens a file: created here and now, never through a symlink.
_TEMP_FLAGS = (
    os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
)


def _new_temp(folder: Path, prefix: str, suffix: str) -> Tuple[int, str]:
    """What ``tempfile.mkstemp(suffix, prefix, folder)`` does (a new file with a random
    name, mode 0600, opened exclusively), without importing tempfile, shutil and random
    into every command that writes ``jobs.json`` (issue 12)."""
    for _ in range(100):
        name = os.path.join(folder, f"{prefix}{os.urandom(6).hex()}{suffix}")
        try:
            return os.open(name, _TEMP_FLAGS, 0o600), name
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no unused temporary file name", str(folder))


def _write_all(
    fd: int, data: Union[bytes, Sequence[bytes]], step: Callable[[], None] = lambda: None
) -> None:
    """Write ``data`` (bytes, or pieces of it in order) to ``fd``, all of it, calling
    ``step`` before each system call (``punctual.Pacer``).

    Pieces go to the kernel a thousand per ``writev`` call, without joining them
    first: each call releases the GIL, where a join of megabytes holds it.
    """
    pieces: Sequence[bytes] = [data] if isinstance(data, (bytes, bytearray)) else data
    writev = getattr(os, "writev", None)
    i = 0
    while i < len(pieces):
        step()
        group = pieces[i : i + _IOV_MAX]
        written = writev(fd, group) if writev is not None and len(group) > 1 else 0
        if written == sum(map(len, group)):
            i += len(group)
            continue
        # A short write (or no writev): finish the piece it stopped in, go on after it.
        for piece in group:
            i += 1
            if written >= len(piece):
                written -= len(piece)
                continue
            view = memoryview(piece)[written:]
            written = 0
            while view:
                view = view[os.write(fd, view) :]
            break


#: Pieces per ``writev`` call (the POSIX minimum of IOV_MAX is 16; Linux allows 1024).
_IOV_MAX = 1024


def atomic_write(
    path: PathArg,
    data: Union[bytes, Sequence[bytes]],
    *,
    mode: Optional[int] = None,
    before_replace: Optional[Callable[[os.stat_result], None]] = None,
    step: Callable[[], None] = lambda: None,
) -> None:
    """Replace ``path`` with ``data`` (bytes, or its pieces in order) atomically and
    durably.

    ``mode``: permission bits for the new file; None keeps the existing file's
    bits, or 0600 for a new file (job records can hold prompts and commands).
    ``before_replace`` is called with the new file's ``fstat`` once it is written
    and synced, just before it is renamed into place (a rename keeps its inode,
    mtime and size). ``step`` is called before each write and sync (a pacer: the
    megabytes of a large file disturb a run about to start, in the GIL and the VM).
    Raises ``OSError`` on failure; the old file is then untouched and no temp file
    is left behind.
    """
    target = Path(path)
    folder = target.parent
    if mode is None:
        try:
            mode = os.stat(target).st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o600
    fd, tmp = _new_temp(folder, f".{target.name}.", ".tmp")
    try:
        try:
            _write_all(fd, data, step)
            os.fchmod(fd, mode)
            step()
            os.fsync(fd)
            if before_replace is not None:
                before_replace(os.fstat(fd))
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(folder)
