"""The cross-process lock and atomic replace."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path
from typing import Any, List

import pytest
from helpers.storekit import new_store, spawn

from hermes_cron.errors import LockTimeoutError
from hermes_cron.lock import FileLock, atomic_write
from hermes_cron.paths import HomePaths


def test_lock_excludes_other_threads(tmp_path: Path) -> None:
    lock = FileLock(tmp_path / "x.lock", timeout=30)
    inside = 0
    most = 0
    guard = threading.Lock()

    def work() -> None:
        nonlocal inside, most
        for _ in range(20):
            with lock:
                with guard:
                    inside += 1
                    most = max(most, inside)
                time.sleep(0.0005)
                with guard:
                    inside -= 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most == 1


def test_lock_is_not_reentrant(tmp_path: Path) -> None:
    lock = FileLock(tmp_path / "x.lock", timeout=5)
    with lock:
        assert lock.held
        with pytest.raises(RuntimeError, match="not re-entrant"):
            lock.acquire()
    assert not lock.held


def test_lock_timeout_between_threads(tmp_path: Path) -> None:
    holder = FileLock(tmp_path / "x.lock", timeout=5)
    waiter = FileLock(tmp_path / "x.lock", timeout=0.2)
    holder.acquire()
    try:
        result: list = []
        t = threading.Thread(target=lambda: result.append(_try(waiter)))
        t.start()
        t.join(30)
        assert isinstance(result[0], LockTimeoutError)
    finally:
        holder.release()
    waiter.acquire()  # free again
    waiter.release()


def _try(lock: FileLock) -> object:
    try:
        lock.acquire()
    except LockTimeoutError as exc:
        return exc
    lock.release()
    return None


def test_lock_held_by_another_process_times_out_with_clear_message(paths: HomePaths, clock) -> None:
    proc = spawn("hold_lock.py", str(paths.home))
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "locked"
        store = new_store(paths, clock, lock_timeout=0.5)
        started = time.monotonic()
        with pytest.raises(LockTimeoutError) as info:
            store.pause("anything")
        waited = time.monotonic() - started
        assert 0.4 <= waited < 10
        message = str(info.value)
        assert str(paths.jobs_lock) in message
        assert "0.5 s" in message
        assert f"pid {proc.pid}" in message
        assert "\n" not in message
        # Reads do not need the lock.
        assert store.list_jobs() == []
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    # The kernel released the lock with the process: writes work again.
    with pytest.raises(Exception, match="no job with id"):
        new_store(paths, clock, lock_timeout=5).pause("anything")


def test_atomic_write_replaces_and_keeps_mode(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    atomic_write(target, b"one")
    assert target.read_bytes() == b"one"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    os.chmod(target, 0o640)
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]


def test_atomic_write_failure_leaves_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "f.json"
    target.write_bytes(b"old")

    class Boom(Exception):
        pass

    def bad_write(fd: int, data: object) -> int:
        raise Boom()

    monkeypatch.setattr(os, "write", bad_write)
    with pytest.raises(Boom):
        atomic_write(target, b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_atomic_write_steps_before_each_write_and_the_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write of many pieces calls ``step`` (a pacer) before each system call that
    moves its bytes to the kernel or the disk: a run about to start is not disturbed."""
    pieces = [f"record {i},".encode() for i in range(2500)]
    order: List[str] = []
    real_writev, real_fsync = os.writev, os.fsync

    def writev(fd: int, buffers: List[bytes]) -> int:
        order.append("writev")
        return real_writev(fd, buffers)

    def fsync(fd: int) -> None:
        order.append("fsync")
        real_fsync(fd)

    monkeypatch.setattr(os, "writev", writev)
    monkeypatch.setattr(os, "fsync", fsync)
    atomic_write(tmp_path / "f.json", pieces, step=lambda: order.append("step"))
    monkeypatch.undo()
    assert (tmp_path / "f.json").read_bytes() == b"".join(pieces)
    # 2,500 pieces: three writev calls of at most 1,024, then the file's fsync (the
    # folder's fsync after the rename is not paced: the file is in place by then).
    assert order[:8] == ["step", "writev"] * 3 + ["step", "fsync"]


def test_atomic_write_of_pieces_writes_them_all_in_order_even_when_writes_come_short(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``jobs.json`` goes out as one piece per record (``os.writev``, a thousand pieces a
    call); a short write, which the kernel may give, continues where it stopped."""
    pieces = [f"record {i};".encode() * (i % 7) for i in range(2500)]  # some empty
    whole = b"".join(pieces)
    real_writev, real_write = os.writev, os.write
    calls = {"writev": 0, "write": 0}

    def short_writev(fd: int, buffers: List[bytes]) -> int:
        calls["writev"] += 1
        # Half of what was asked, cut inside a piece where it can.
        want = sum(map(len, buffers))
        return real_writev(fd, [b"".join(buffers)[: max(1, want // 2)]]) if want else 0

    def short_write(fd: int, data: Any) -> int:
        calls["write"] += 1
        return real_write(fd, bytes(data)[:5])

    monkeypatch.setattr(os, "writev", short_writev)
    monkeypatch.setattr(os, "write", short_write)
    seen: List[os.stat_result] = []
    atomic_write(tmp_path / "f.json", pieces, before_replace=seen.append)
    monkeypatch.undo()
    assert (tmp_path / "f.json").read_bytes() == whole
    assert calls["writev"] >= 3 and calls["write"] > 0
    # The stat handed over before the rename is the file's own after it.
    st = os.stat(tmp_path / "f.json")
    assert [(s.st_ino, s.st_mtime_ns, s.st_size) for s in seen] == [
        (st.st_ino, st.st_mtime_ns, st.st_size)
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]
