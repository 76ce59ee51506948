"""Exclusive file locks that make "one writer" a fact rather than a hope, on one host or many
(which method a lock file gets depends on its filesystem: ``runs.mounts``).

A fold holds its fold lock while it runs (one process per fold's event file); whoever writes the
audit logs and the summary holds the coordinator lock; deciding how a fold starts (and checking
the configs of the other folds) happens under the run root's start lock. A lock that is free says
that nobody is working behind it (``is_held``: how a fold killed outside ``cv`` shows as
*interrupted*).

Two methods, picked per lock file by the filesystem it lives on (``lock_method``):

* ``flock`` where flock is coherent: local filesystems (one host; bind mounts share it across
  containers), NFS with server-side locking (NFSv4, NFSv3 with lockd), Lustre ``-o flock``, GPFS,
  CephFS. The kernel drops the lock with its process, so a killed holder never leaves it behind.
* a lease file (``<lock>.lease``) where flock would be local to each host (NFS ``nolock`` or
  ``local_lock=flock|all``, Lustre ``localflock``, BeeGFS, unknown filesystems) or fails (Lustre
  without ``flock``, ``ENOLCK``). It is created atomically (``link()`` of a complete temp file,
  checked by link count; ``O_CREAT|O_EXCL`` where links are not supported) and holds
  ``{host, pid, boot_id, pidns, pid_start, started, token}``. The holder touches it every few
  seconds (heartbeat) and removes it on release, only if it is still its own. A lease is stale
  when its process is gone (same host, boot and pid namespace) or its heartbeat is older than
  ``SPECTRA_CV_LEASE_STALE_S`` (default 60 s; hosts' clocks must agree well within it). A stale
  lease is renamed to a unique name, checked to be the one judged stale, then unlinked, so two
  breakers never both win. A lease holder also takes the flock where it works, so a holder on the
  same host using flock (``SPECTRA_CV_LOCK=flock``) still excludes it.

``SPECTRA_CV_LOCK=auto|flock|lease`` overrides the choice (``auto`` by default). Where neither
method works, ``LockUnsupported`` names the mount, its type and options, and the fix: never a
silent run without locks.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from spectra_cv.errors import ConfigError, SpectraCVError
from spectra_cv.log import get_logger
from spectra_cv.runs.mounts import COHERENT, ENV_LOCK, Mount, classify, find_mount

log = get_logger("locks")

ENV_LEASE_STALE_S = "SPECTRA_CV_LEASE_STALE_S"
"""Seconds without a heartbeat after which another host may break a lease."""
DEFAULT_LEASE_STALE_S = 60.0
HEARTBEAT_S = 10.0
"""How often a holder touches its lease (at most a quarter of the staleness limit)."""

_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL}
_NO_LEASE = {errno.EPERM, errno.EROFS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL}
_POLL_S = 0.05


class LockBusy(SpectraCVError):
    """Another live process holds the lock."""


class LockUnsupported(SpectraCVError):
    """The filesystem under a lock file supports neither a coherent ``flock`` nor a lease file."""


@dataclass(frozen=True)
class LockMethod:
    method: str
    """``flock`` or ``lease``: what ``file_lock`` uses for the path."""
    kind: str
    """How flock behaves on the mount (``classify``)."""
    reason: str
    mount: Mount


def lock_mode() -> str:
    """The ``SPECTRA_CV_LOCK`` setting: ``auto`` (default), ``flock`` or ``lease``."""
    value = os.environ.get(ENV_LOCK, "").strip().lower() or "auto"
    if value not in ("auto", "flock", "lease"):
        raise ConfigError(f"{ENV_LOCK}={value!r}: expected auto, flock or lease (unset it for auto)")
    return value


def lease_stale_s() -> float:
    """The ``SPECTRA_CV_LEASE_STALE_S`` staleness limit (default 60 s)."""
    raw = os.environ.get(ENV_LEASE_STALE_S, "").strip()
    if not raw:
        return DEFAULT_LEASE_STALE_S
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise ConfigError(f"{ENV_LEASE_STALE_S}={raw!r}: expected a positive number of seconds (default 60)")
    return value


_warned: set[tuple[str, str]] = set()


def _once(key: tuple[str, str], level: int, message: str, *args: object) -> None:
    if key not in _warned:
        _warned.add(key)
        log.log(level, message, *args)


def lock_method(path: str | os.PathLike[str]) -> LockMethod:
    """How ``file_lock`` locks ``path``: by ``SPECTRA_CV_LOCK``, else by the mount's flock kind."""
    mode = lock_mode()
    mount = find_mount(path)
    kind, reason = classify(mount)
    if mode == "flock" and kind != COHERENT:
        _once((mount.point, "forced"), logging.WARNING, "%s=flock on %s: %s, so two hosts can both hold a lock; "
              "unset %s to use lease files there", ENV_LOCK, mount.describe(), reason, ENV_LOCK)
    method = mode if mode != "auto" else ("flock" if kind == COHERENT else "lease")
    if mode == "auto" and method == "lease":
        _once((mount.point, "lease"), logging.INFO, "locks under %s use lease files: %s", mount.describe(), reason)
    return LockMethod(method=method, kind=kind, reason=reason, mount=mount)


# --- flock -------------------------------------------------------------------------------------
def _unsupported(path: Path, exc: OSError) -> LockUnsupported:
    mount = find_mount(path.parent)
    return LockUnsupported(
        f"{path}: the filesystem mounted at {mount.point} (type {mount.fstype}) does not support file locks "
        f"(flock: {exc.strerror}; options {','.join(mount.options) or '-'}). spectra-cv needs them to keep one "
        f"writer per fold and per log. Unset {ENV_LOCK} (auto falls back to lease files), or put the run root "
        "on a local disk or a filesystem with locking (NFS: mount without 'nolock', NFSv4 or lockd running; "
        "Lustre: mount with '-o flock'; CephFS and GPFS support flock), then rerun"
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


def _try_flock(p: Path, blocking: bool) -> int | str:
    """The locked descriptor, or who holds the lock."""
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _flock(fd, p, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        return f"pid {holder}; lock {p}"
    except BaseException:
        os.close(fd)
        raise
    lease = _look(_lease_path(p))
    if lease is not None and _stale(lease, time.time(), lease_stale_s()) is None:
        os.close(fd)  # a lease holder elsewhere (another SPECTRA_CV_LOCK, or flock failed there)
        return _who(lease, _lease_path(p))
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _flock_held(p: Path, strict: bool) -> bool:
    try:
        fd = os.open(p, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        try:
            _flock(fd, p, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except LockUnsupported:
            if strict:
                raise
            return False
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


# --- leases ------------------------------------------------------------------------------------
@cache
def _machine() -> tuple[str, str | None, str | None]:
    """(host name, boot id, pid namespace): what makes a pid meaningful."""
    def read(path: str, how: Callable[[str], str]) -> str | None:
        try:
            return how(path).strip()
        except OSError:
            return None
    return (socket.gethostname(), read("/proc/sys/kernel/random/boot_id", lambda p: Path(p).read_text()),
            read("/proc/self/ns/pid", os.readlink))


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks) of ``pid`` from /proc (None where unreadable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0], fields[19]
    except (OSError, IndexError):
        return None


def _pid_alive(pid: int, started: object) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    stat = _proc_stat(pid)
    if stat is None:
        return True
    state, start = stat
    return state not in ("Z", "X") and (started is None or str(started) == start)  # reused pid: gone


@dataclass(frozen=True)
class _Seen:
    info: dict[str, Any]
    """The lease's JSON ({} while an O_EXCL lease is being written, or if damaged)."""
    ino: int
    mtime_ns: int

    def same(self, other: _Seen | None) -> bool:
        """Whether ``other`` is this very lease, untouched since (no heartbeat meanwhile)."""
        return other is not None and (other.ino, other.mtime_ns, other.info) == (self.ino, self.mtime_ns, self.info)


def _lease_path(p: Path) -> Path:
    return p.with_name(p.name + ".lease")


def _look(lease: Path) -> _Seen | None:
    """The lease as it is now (opening it revalidates NFS's cached attributes), or None."""
    try:
        fd = os.open(lease, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        st, raw = os.fstat(fd), os.read(fd, 8192)
    finally:
        os.close(fd)
    try:
        info = json.loads(raw)
    except ValueError:
        info = {}
    return _Seen(info=info if isinstance(info, dict) else {}, ino=st.st_ino, mtime_ns=st.st_mtime_ns)


def _limit(info: dict[str, Any], limit_s: float) -> float:
    beat = info.get("heartbeat_s")
    if isinstance(beat, (int, float)) and not isinstance(beat, bool):
        return max(limit_s, 3 * float(beat))  # never break a holder that beats slower than we expect
    return limit_s


def _stale(seen: _Seen, now: float, limit_s: float) -> str | None:
    """Why the lease is stale, or None while it is live."""
    info, (host, boot, pidns) = seen.info, _machine()
    pid = info.get("pid")
    if isinstance(pid, int) and (info.get("host"), info.get("boot_id"), info.get("pidns")) == (host, boot, pidns):
        return None if _pid_alive(pid, info.get("pid_start")) else f"its process (pid {pid}, this host) is gone"
    limit_s = _limit(info, limit_s)
    age = now - seen.mtime_ns / 1e9
    if age > limit_s:
        return f"its heartbeat is {age:.1f} s old (limit {limit_s:g} s, {ENV_LEASE_STALE_S})"
    return None


def _who(seen: _Seen, lease: Path) -> str:
    info = seen.info
    age = time.time() - seen.mtime_ns / 1e9
    text = f"pid {info.get('pid', '?')} on {info.get('host', '?')}, heartbeat {age:.0f} s ago; lease {lease}"
    if info.get("host") != _machine()[0]:
        text += (f"; if that process is gone its lease goes stale {_limit(info, lease_stale_s()):g} s after its last "
                 f"heartbeat ({ENV_LEASE_STALE_S}), rerun then")
    return text


def _remove_if(lease: Path, expected: Callable[[_Seen], bool]) -> bool:
    """Rename ``lease`` to a unique name; unlink it if it is the ``expected`` file, else put it back.
    Renaming first means two processes removing the same lease cannot both remove a successor."""
    aside = lease.with_name(f"{lease.name}.{secrets.token_hex(8)}.broken")
    try:
        os.rename(lease, aside)
    except FileNotFoundError:
        return False
    try:
        seen = _look(aside)
        if seen is None or expected(seen):
            return seen is not None
        try:
            os.link(aside, lease)  # not the one we meant (a new holder, or it just beat): put it back
        except FileExistsError:
            log.error("%s: moved a live lease aside and a new one appeared meanwhile; its holder (%s) lost it",
                      lease, seen.info.get("host", "?"))
        except OSError:
            if not lease.exists():
                os.rename(aside, lease)
        return False
    finally:
        aside.unlink(missing_ok=True)


def _no_lease(lease: Path, exc: OSError) -> LockUnsupported:
    mount = find_mount(lease.parent)
    kind, reason = classify(mount)
    return LockUnsupported(
        f"{lease}: cannot create a lease file ({exc.strerror}) on {mount.describe()}, and flock there is "
        f"{kind} ({reason}). spectra-cv needs one of them to keep one writer per fold and per log. Mount NFS "
        "without 'nolock' (NFSv4, or NFSv3 with lockd), mount Lustre with '-o flock', or put the run root's "
        "logs on a writable filesystem with coherent locks, then rerun"
    )


def _create(lease: Path, body: bytes) -> tuple[int | None, float]:
    """Create ``lease`` holding ``body`` atomically: (its descriptor, or None if it exists; the
    filesystem's time now, to judge an existing lease's heartbeat by the clock that stamped it)."""
    new = lease.with_name(f"{lease.name}.{secrets.token_hex(8)}.new")
    try:
        fd = os.open(new, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError as exc:
        raise (_no_lease(lease, exc) if exc.errno in _NO_LEASE else exc) from exc
    linked = False
    try:
        os.write(fd, body)
        os.fsync(fd)
        now = os.fstat(fd).st_mtime_ns / 1e9
        try:
            os.link(new, lease)
        except FileExistsError:
            pass
        except OSError as exc:
            if exc.errno not in _NO_LEASE and os.stat(new).st_nlink != 2:
                raise
            if exc.errno in _NO_LEASE:  # no hard links here: O_EXCL on the lease itself
                new.unlink(missing_ok=True)
                return _create_excl(lease, body), time.time()
        linked = os.stat(new).st_nlink == 2  # NFS-safe: a lost reply to a link that worked says EEXIST
        if linked:
            os.utime(fd)
        return (fd if linked else None), now
    finally:
        if not linked:
            os.close(fd)
        new.unlink(missing_ok=True)


def _create_excl(lease: Path, body: bytes) -> int | None:
    try:
        fd = os.open(lease, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return None
    except OSError as exc:
        raise (_no_lease(lease, exc) if exc.errno in _NO_LEASE else exc) from exc
    os.write(fd, body)  # readers seeing it empty meanwhile judge it by its (fresh) mtime
    os.fsync(fd)
    return fd


class _Lease:
    """A held lease: its descriptor, the heartbeat thread, and the flock taken beside it."""

    def __init__(self, lease: Path, fd: int, token: str, beat_s: float) -> None:
        self.lease, self.fd, self.token, self.beat_s = lease, fd, token, beat_s
        self.ino = os.fstat(fd).st_ino
        self.flock_fd: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease {lease.name}", daemon=True)
        self._thread.start()

    def mine(self, seen: _Seen | None) -> bool:
        return seen is not None and seen.ino == self.ino and seen.info.get("token") == self.token

    def _beat(self) -> None:
        while not self._stop.wait(self.beat_s):
            try:
                os.utime(self.fd)  # on our own inode (never a successor's); the filesystem's clock
                if self.mine(_look(self.lease)):
                    continue
            except OSError as exc:
                log.error("%s: heartbeat failed (%s); other hosts may judge the lease stale", self.lease, exc)
                continue
            log.error("%s: this process's lease was broken by another (its heartbeat was judged stale); "
                      "another process may now hold the lock (raise %s if hosts' clocks disagree)",
                      self.lease, ENV_LEASE_STALE_S)
            return

    def release(self) -> None:
        self._stop.set()
        self._thread.join()
        try:
            _remove_if(self.lease, self.mine)  # never someone else's lease
        finally:
            os.close(self.fd)
            if self.flock_fd is not None:
                os.close(self.flock_fd)


def _side_flock(p: Path) -> int | str | None:
    """The flock beside a lease: a descriptor, who holds it, or None where flock cannot be had."""
    try:
        fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return None
    for _ in range(5):  # rides out another process's is_held probe (a brief shared lock)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            time.sleep(_POLL_S)
            continue
        except OSError:
            os.close(fd)
            return None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd
    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
    os.close(fd)
    return f"pid {holder} on this host holds the flock; lock {p}"


def _try_lease(p: Path) -> _Lease | str:
    """The held lease, or who holds it."""
    lease, limit = _lease_path(p), lease_stale_s()
    beat = min(HEARTBEAT_S, limit / 4)
    host, boot, pidns = _machine()
    stat = _proc_stat(os.getpid())
    token = secrets.token_hex(16)
    body = json.dumps({
        "host": host, "pid": os.getpid(), "boot_id": boot, "pidns": pidns, "pid_start": stat and stat[1],
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "token": token, "heartbeat_s": beat,
    }).encode()
    seen: _Seen | None = None
    for _ in range(3):  # a stale lease broken: try again at once
        fd, now = _create(lease, body)
        if fd is not None:
            held = _Lease(lease, fd, token, beat)
            side = _side_flock(p)
            if isinstance(side, str):
                held.release()
                return side
            held.flock_fd = side
            _sweep(lease, limit)
            return held
        seen = _look(lease)
        if seen is None:
            continue  # released meanwhile
        why = _stale(seen, now, limit)
        if why is None:
            return _who(seen, lease)
        if _remove_if(lease, seen.same):
            log.warning("%s: broke a stale lease of pid %s on %s: %s", lease, seen.info.get("pid", "?"),
                        seen.info.get("host", "?"), why)
    return _who(seen, lease) if seen is not None else f"lease {lease}"


def _sweep(lease: Path, limit_s: float) -> None:
    """Remove temp names (``.new``, ``.broken``) killed lease takers left, once older than the limit."""
    cutoff = time.time() - max(limit_s, 60.0)
    try:
        for leftover in lease.parent.glob(f"{lease.name}.*"):
            if leftover.suffix in (".new", ".broken") and leftover.stat().st_mtime < cutoff:
                leftover.unlink(missing_ok=True)
    except OSError:
        pass


# --- the API -----------------------------------------------------------------------------------
@contextmanager
def file_lock(path: str | os.PathLike[str], what: str, blocking: bool = False,
              wait_s: float = 0.0) -> Iterator[Path]:
    """Hold an exclusive lock on ``path`` (created if needed) for the ``with`` block.

    Non-blocking by default: a lock still held after ``wait_s`` seconds raises ``LockBusy`` naming
    ``what`` and the holder (a short wait rides out ``is_held`` probes of other processes). Uses
    flock or a lease file, as ``lock_method`` says; auto mode falls back to a lease where flock fails.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    how = lock_method(p.parent)
    method = how.method
    deadline = time.monotonic() + wait_s
    while True:
        if method == "flock":
            try:
                got: int | _Lease | str = _try_flock(p, blocking)
            except LockUnsupported as exc:
                if lock_mode() == "flock":
                    raise
                _once((how.mount.point, "fallback"), logging.WARNING, "flock fails on %s (%s): using lease files "
                      "there", how.mount.describe(), exc.__cause__)
                method = "lease"
                continue
        else:
            got = _try_lease(p)
        if not isinstance(got, str):
            break
        if not blocking and time.monotonic() >= deadline:
            raise LockBusy(f"{what} is held by another process ({got})")
        time.sleep(_POLL_S if method == "flock" else 2 * _POLL_S)
    try:
        yield p
    finally:
        if isinstance(got, _Lease):
            got.release()
        else:
            os.close(got)  # closing the descriptor releases the flock


def is_held(path: str | os.PathLike[str]) -> bool:
    """Whether a live process holds the lock at ``path``: a live lease (its process alive on this
    host, or a fresh heartbeat), or a flock (probed with a shared lock released at once). Never writes."""
    p = Path(path)
    seen = _look(_lease_path(p))
    if seen is not None and _stale(seen, time.time(), lease_stale_s()) is None:
        return True
    return _flock_held(p, strict=lock_mode() == "flock")
