"""A throwaway PostgreSQL server for tests: ``initdb`` in a temp folder, a free loopback
port, ``fsync=off``; stopped (``-m immediate``) and deleted at the end.

Usable without pytest::

    cluster = PgCluster.start()          # raises PgUnavailable when there are no binaries
    url = cluster.new_database()         # postgresql://postgres@127.0.0.1:PORT/t_1
    ...
    cluster.stop()

The server refuses to run as root: when the tests run as root, ``initdb`` and
``pg_ctl`` run as the ``postgres`` user (``runuser``), and the data folder is theirs.
"""

from __future__ import annotations

import glob
import itertools
import os
import queue
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional

__all__ = ["PgCluster", "PgUnavailable", "find_bindir"]

#: The environment variable that turns "no PostgreSQL here: skip" into a failure (CI).
REQUIRE_ENV = "HERMES_CRON_REQUIRE_POSTGRES"
#: Databases made ahead of ``new_database`` calls.
AHEAD = 2


class PgUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def find_bindir() -> Optional[Path]:
    """The folder holding ``initdb`` and ``pg_ctl``: ``pg_config --bindir``, else the
    newest ``/usr/lib/postgresql/*/bin`` (Debian installs them off ``PATH``)."""
    candidates: List[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            candidates.append(Path(out))
        except (OSError, subprocess.SubprocessError):
            pass

    def version(path: str) -> float:
        try:
            return float(Path(path).parent.name)
        except ValueError:
            return 0.0

    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version)][
        ::-1
    ]
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    return None


#: Ports tried by ``PgCluster.start`` when the one picked was taken meanwhile.
BIND_ATTEMPTS = 5


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgCluster:
    """One running server; ``new_database()`` gives each test a database of its own."""

    def __init__(self, bindir: Path, root: Path, port: int) -> None:
        self.bindir = bindir
        self.root = root
        self.data = root / "data"
        self.sockets = root / "sockets"
        self.log = root / "server.log"
        self.port = port
        self._names = itertools.count(1)
        self._as_postgres = os.geteuid() == 0
        self._ahead: Optional[queue.Queue[object]] = None
        self._ahead_lock = threading.Lock()
        self._server_lock = threading.Lock()
        self._stopping = False

    @classmethod
    def start(cls, bindir: Optional[Path] = None) -> PgCluster:
        """initdb and start a server on a free loopback port (waits until it accepts)."""
        bindir = bindir or find_bindir()
        if bindir is None:
            raise PgUnavailable("no PostgreSQL server binaries (initdb, pg_ctl) found")
        root = Path(tempfile.mkdtemp(prefix="hermes-cron-pg-"))
        cluster = cls(bindir, root, _free_port())
        try:
            cluster._init()
            for attempt in range(1, BIND_ATTEMPTS + 1):
                try:
                    cluster._ctl(
                        "start", "-w", "-t", "60", "-l", str(cluster.log), "-o", cluster._options()
                    )
                    break
                except RuntimeError as exc:
                    # The port was free when picked, but initdb takes seconds: another
                    # process (a parallel test run, an outgoing connection) may hold it now.
                    if "already in use" not in str(exc) or attempt == BIND_ATTEMPTS:
                        raise
                    cluster.port = _free_port()
        except BaseException:
            cluster.remove()
            raise
        return cluster

    def _run(self, argv: List[str], *, timeout: float = 120) -> None:
        if self._as_postgres:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        proc = subprocess.run(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if proc.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stdout}{log}")

    def _init(self) -> None:
        self.sockets.mkdir()
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.sockets, "postgres", "postgres")
        initdb = str(self.bindir / "initdb")
        self._run([initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync"])

    def _options(self) -> str:
        # fsync off is safe for a server that is crashed but never loses its OS (the
        # restart test); synchronous_commit stays on: with it off, a crash forgets
        # commits already acknowledged, and a claim could be lost after its run began.
        return (
            f"-c port={self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self.sockets} -c fsync=off "
            "-c full_page_writes=off -c max_connections=200"
        )

    def _ctl(self, *args: str) -> None:
        self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), *args])

    # -- for tests ------------------------------------------------------------------------

    def url(self, dbname: str = "postgres", *, password: str = "") -> str:
        auth = f"postgres:{password}" if password else "postgres"
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{dbname}"

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run ``sql`` as the superuser; returns what it printed (unaligned, no headers)."""
        proc = subprocess.run(
            [str(self.bindir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
            + ["-d", self.url(dbname), "-c", sql],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"psql failed: {proc.stderr.strip()}")
        return proc.stdout

    def _create(self) -> str:
        name = f"t_{os.getpid()}_{next(self._names)}"
        self.psql(f"CREATE DATABASE {name} TEMPLATE template0")
        return name

    def new_database(self) -> str:
        """A fresh empty database; returns its URL.

        ``CREATE DATABASE`` takes a tenth of a second: a thread keeps a few made ahead,
        so a test rarely waits for one.
        """
        with self._ahead_lock:
            if self._ahead is None:
                self._ahead = queue.Queue(maxsize=AHEAD)
                threading.Thread(target=self._make_ahead, name="pg-databases", daemon=True).start()
        item = self._ahead.get(timeout=120)
        if isinstance(item, BaseException):
            # The thread could not make one (a restart in the way?): make it here.
            return self.url(self._create())
        return self.url(str(item))

    def _make_ahead(self) -> None:
        assert self._ahead is not None
        while not self._stopping:
            with self._server_lock:
                try:
                    item: object = self._create()
                except Exception as exc:
                    item = exc
            self._ahead.put(item)

    def restart(self, down_for: float = 0.0) -> None:
        """Stop the server abruptly (every connection is cut), leave it down for
        ``down_for`` seconds, and start it again."""
        with self.down():
            time.sleep(down_for)

    @contextmanager
    def down(self) -> Iterator[None]:
        """The server stopped abruptly (every connection cut) for the ``with`` block,
        and started again when it ends."""
        with self._server_lock:
            self._ctl("stop", "-m", "immediate", "-w", "-t", "60")
            try:
                yield
            finally:
                self._ctl("start", "-w", "-t", "60", "-l", str(self.log), "-o", self._options())

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.psql("SELECT 1")
                return
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server at once and delete its folder."""
        self._stopping = True
        if self._ahead is not None:
            try:
                self._ahead.get_nowait()  # unblock the thread so it sees the flag
            except queue.Empty:
                pass
        try:
            if (self.data / "postmaster.pid").exists():
                self._ctl("stop", "-m", "immediate", "-w", "-t", "60")
        finally:
            self.remove()

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
