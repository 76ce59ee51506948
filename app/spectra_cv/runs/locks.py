"""Advisory file locks (``flock``) that make "one writer" a fact rather than a hope.

A fold holds its fold lock while it runs (one process per fold's event file); whoever writes the
audit logs and the summary holds the coordinator lock; deciding how a fold starts (and checking
the configs of the other folds) happens under the run root's start lock. ``flock`` locks die with
their process, so a killed holder never leaves a stale lock behind, and a lock that is free says
that nobody is working behind it (``is_held``: how a fold killed outside ``cv`` shows as
*interrupted*). Bind-mounted volumes share them across containers.

Some network filesystems do not implement ``flock`` (NFS mounted with ``nolock``, some FUSE
filesystems, Lustre without ``-o flock``): that is a ``LockUnsupported`` error naming the mount,
never a silent run without locks.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from spectra_cv.errors import SpectraCVError

_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL}


class LockBusy(SpectraCVError):
    """Another live process holds the lock."""


class LockUnsupported(SpectraCVError):
    """The filesystem under a lock file does not support ``flock``."""


def mount_of(path: str | os.PathLike[str]) -> tuple[str, str]:
    """(mount point, filesystem type) of the mount holding ``path``, from /proc/mounts ("?" if unknown)."""
    target = os.path.realpath(path)
    best, kind = "/", "?"
    try:
        with open("/proc/mounts", encoding="utf-8") as handle:
            for line in handle:
                fields = line.split()
                if len(fields) < 3:
                    continue
                point = fields[1].replace("\\040", " ")
                inside = target == point or target.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best):
                    best, kind = point, fields[2]
    except OSError:
        pass
    return best, kind


def _unsupported(path: Path, exc: OSError) -> LockUnsupported:
    point, kind = mount_of(path.parent)
    return LockUnsupported(
        f"{path}: the filesystem mounted at {point} (type {kind}) does not support file locks "
        f"(flock: {exc.strerror}). spectra-cv needs them to keep one writer per fold and per log. Put the "
        "run root on a local disk or a filesystem with locking (NFS: mount without 'nolock', NFSv4 or lockd "
        "running; Lustre: mount with '-o flock'; CephFS and GPFS support flock), then rerun"
    )


def _flock(fd: int, path: Path, operation: int) -> None:
    try:
        fcntl.flock(fd, operation)
    except BlockingIOError:
        raise
    except OSError as exc:
        if exc.errno in _UNSUPPORTED:
            raise _unsupported(path, exc) from exc
        raise


@contextmanager
def file_lock(path: str | os.PathLike[str], what: str, blocking: bool = False,
              wait_s: float = 0.0) -> Iterator[Path]:
    """Hold an exclusive lock on ``path`` (created if needed) for the ``with`` block.

    Non-blocking by default: a lock still held after ``wait_s`` seconds raises ``LockBusy`` naming
    ``what`` and the holder's pid (a short wait rides out ``is_held`` probes of other processes).
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                _flock(fd, p, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                    raise LockBusy(f"{what} is held by another process (pid {holder}; lock {p})") from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield p
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def is_held(path: str | os.PathLike[str]) -> bool:
    """Whether a live process holds the lock at ``path`` (False when the file does not exist).

    Probes with a shared, non-blocking lock released at once; it never writes the file.
    """
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        try:
            _flock(fd, p, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
