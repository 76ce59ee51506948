"""Advisory file locks (``flock``) that make "one writer" a fact rather than a hope.

A fold holds its fold lock while it runs (one process per fold's event file); whoever writes the
audit logs and the summary holds the coordinator lock. ``flock`` locks die with their process, so
a killed holder never leaves a stale lock behind; bind-mounted volumes share them across containers.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from spectra_cv.errors import SpectraCVError


class LockBusy(SpectraCVError):
    """Another live process holds the lock."""


@contextmanager
def file_lock(path: str | os.PathLike[str], what: str, blocking: bool = False) -> Iterator[Path]:
    """Hold an exclusive lock on ``path`` (created if needed) for the ``with`` block.

    Non-blocking by default: a held lock raises ``LockBusy`` naming ``what`` and the holder's pid.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise LockBusy(f"{what} is held by another process (pid {holder}; lock {p})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield p
    finally:
        os.close(fd)  # closing the descriptor releases the lock
