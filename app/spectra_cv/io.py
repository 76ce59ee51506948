"""Atomic output writes: temp file in the same directory, fsync, rename.

A reader (or a crash) never sees a half-written file: either the old content or the new.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

from spectra_cv import faults
from spectra_cv.errors import StorageError
from spectra_cv.log import get_logger

log = get_logger("io")


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_dir(directory: Path) -> None:
    """fsync a directory (its entries: a rename in it is durable); a no-op where that is impossible."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


TEMP_SUFFIX = ".tmp"
"""What ``atomic_write`` names its temp file: ``.<name>.<random>.tmp`` beside the target."""
PARTIAL_SUFFIX = ".partial"
"""What ``staged_directory`` names its folder while it is built: ``.<name>.<random>.partial``."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FIXES = {
    errno.ENOSPC: "the file system is full: free space there, or put the run root (--run-root) on a larger disk",
    errno.EDQUOT: "your disk quota is used up: free space, or put the run root (--run-root) elsewhere",
    errno.EROFS: "the file system is mounted read-only: mount it writable, or choose another --run-root",
    errno.EACCES: "permission denied: make the folder writable for this user, or choose another --run-root",
    errno.EPERM: "the operation is not permitted there: make the folder writable for this user, or choose "
                 "another --run-root",
    errno.EEXIST: "a file stands where a folder is needed (or a folder where a file is): fix the path",
    errno.ENOTDIR: "a file stands where a folder is needed: fix the path",
}


def storage_error(exc: OSError, path: str | os.PathLike[str], doing: str = "write") -> StorageError:
    """``exc`` as a ``StorageError``: what failed, which file, what to do (one paragraph)."""
    fix = _FIXES.get(exc.errno or 0, "check the path and the file system")
    where = exc.filename if exc.filename else path
    named = Path(os.fsdecode(where))
    if named.parent == Path(path).parent and named.name.startswith(f".{Path(path).name}."):
        where = path  # the temp file a writer makes beside its target: the user knows the target
    return StorageError(f"could not {doing} {where}: {exc.strerror or exc}. {fix.capitalize()}; then rerun the "
                        "same command (finished work is kept and resumed)", exc.errno)


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object], durable: bool = True) -> Path:
    """``_atomic_write``; a file-system failure (full, read-only, no permission) is a ``StorageError``
    naming the file and the fix, the target untouched."""
    try:
        return _atomic_write(path, write, durable)
    except OSError as exc:
        raise storage_error(exc, path) from exc


def _atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object], durable: bool = True) -> Path:
    """Call ``write(fileobj)`` on a temp file beside ``path``, fsync it, then rename over ``path``.

    Parent directories are created. On any error the temp file is removed and ``path`` is untouched.
    ``durable=False`` skips the fsyncs (still atomic by rename): for files inside a
    ``staged_directory``, which syncs once for the whole tree.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=target.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    if durable:
        fsync_dir(target.parent)
    return target


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, durable: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda handle: handle.write(data), durable=durable)


TEXT_ERRORS = "surrogateescape"
"""How text files are encoded and decoded: a file name that is not valid UTF-8 (Python decodes its
bytes as lone surrogates) is written back as its own bytes, so names pass through unchanged."""


def encode_text(text: str) -> bytes:
    """``text`` as UTF-8, names that are not valid UTF-8 as their own bytes (``TEXT_ERRORS``)."""
    return text.encode("utf-8", TEXT_ERRORS)


def atomic_write_text(path: str | os.PathLike[str], text: str, durable: bool = True) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, encode_text(text), durable=durable)


def atomic_write_json(path: str | os.PathLike[str], obj: Any, indent: int | None = 2, durable: bool = True) -> Path:
    """Write ``obj`` as JSON (keys in insertion order, trailing newline) atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, allow_nan=False) + "\n", durable=durable)


def atomic_save_npy(path: str | os.PathLike[str], array: np.ndarray, durable: bool = True) -> Path:
    """``np.save`` to exactly ``path`` (no ``.npy`` appended), atomically."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return atomic_write_bytes(path, buffer.getvalue(), durable=durable)


def atomic_save_npz(path: str | os.PathLike[str], *, durable: bool = True, **arrays: np.ndarray) -> Path:
    """``np.savez`` the keyword arrays to exactly ``path``, atomically."""
    buffer = io.BytesIO()
    # numpy's stub lets **kwds fill savez's allow_pickle: bool; these keys are array names
    np.savez(buffer, **{k: np.asarray(v) for k, v in arrays.items()})  # type: ignore[arg-type]
    return atomic_write_bytes(path, buffer.getvalue(), durable=durable)


def atomic_write_csv(path: str | os.PathLike[str], frame: Any, durable: bool = True, **to_csv_kwargs: Any) -> Path:
    """Write a pandas DataFrame as CSV (no index unless asked) atomically."""
    to_csv_kwargs.setdefault("index", False)
    text = frame.to_csv(**to_csv_kwargs)
    return atomic_write_text(path, text, durable=durable)


OLD_SUFFIX = ".old"
"""Where ``staged_directory`` keeps the tree it replaces until the new one is in place:
``.<name>.<random>.old/<name>``."""


@contextmanager
def staged_directory(final: str | os.PathLike[str], replace: bool = False) -> Iterator[Path]:
    """Build a directory tree in a hidden sibling; on success sync once and rename it to ``final``.

    The tree appears whole or not at all (a crash leaves only a ``.<name>.*.partial`` sibling),
    and thousands of files cost one sync instead of one fsync each: write them with
    ``durable=False``. ``final`` may be absent or an empty directory; a non-empty one is
    replaced only when ``replace`` is true: it is moved aside (``.<name>.*.old``), the new tree
    renamed in, and only then the old one removed. A crash between the two renames leaves the old
    tree aside and ``final`` absent: the next call (``settle_replacement``) moves it back first.
    """
    target = Path(final)
    target.parent.mkdir(parents=True, exist_ok=True)
    settle_replacement(target)
    stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=PARTIAL_SUFFIX, dir=target.parent))
    os.chmod(stage, 0o777 & ~_umask())
    try:
        yield stage
        os.sync()
        trash = None
        if target.exists() and any(target.iterdir()):
            if not replace:
                raise FileExistsError(f"{target}: exists and is not empty")
            trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=OLD_SUFFIX, dir=target.parent))
            os.replace(target, trash / target.name)
            faults.point("staged_swap")
        os.replace(stage, target)
        fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


def settle_replacement(final: str | os.PathLike[str]) -> bool:
    """Finish or roll back a replacement of the tree ``final`` that a crash interrupted: when ``final``
    is absent, the tree moved aside for it (``.<name>.*.old``) is moved back (logged); old trees left
    after a finished swap, and new ones a crash left unfinished or not swapped in (``.partial``), are
    removed. Returns whether a tree was restored. (Only the writer of ``final`` may call it.)"""
    target = Path(final)
    parent = target.parent
    if not parent.is_dir():
        return False
    aside = sorted((p for p in _siblings(target, OLD_SUFFIX) if (p / target.name).is_dir()),
                   key=lambda p: p.stat().st_mtime)
    restored = False
    if aside and not target.exists() and not target.is_symlink():
        os.replace(aside[-1] / target.name, target)
        fsync_dir(parent)
        restored = True
        log.warning("%s: restored the previous tree, moved aside by a replacement that was interrupted", target)
    for leftover in (*aside, *(p for p in _siblings(target, PARTIAL_SUFFIX) if p.is_dir())):
        shutil.rmtree(leftover, ignore_errors=True)  # old trees after a finished swap, new ones never swapped in
    return restored


def _siblings(target: Path, *suffixes: str) -> list[Path]:
    """The hidden siblings writers of ``target`` name after it: ``.<name>.<random><suffix>``."""
    prefix = f".{target.name}."
    return [p for p in target.parent.iterdir() if p.name.startswith(prefix) and p.name.endswith(suffixes)]


def remove_write_leftovers(path: str | os.PathLike[str]) -> int:
    """Remove the temp files killed atomic writers left for ``path``; returns how many.

    For a file: its ``.<name>.*.tmp`` siblings. For a directory: those siblings' folder twins
    (``.<name>.*.partial``) and every ``.*.tmp`` file inside it. Only the single writer of
    ``path`` may call it (another writer's temp file in flight would be removed).
    """
    target = Path(path)
    parent = target.parent
    if not parent.is_dir():
        return 0
    found = _siblings(target, TEMP_SUFFIX, PARTIAL_SUFFIX)
    if target.is_dir() and not target.is_symlink():
        found += [p for p in target.rglob(f".*{TEMP_SUFFIX}") if p.is_file()]
    for leftover in found:
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
    return len(found)


def append_durably(path: str | os.PathLike[str], data: bytes) -> None:
    """Append ``data`` to a single-writer log on an O_APPEND descriptor, then fsync.

    A crash leaves the file as it was or with a prefix of ``data`` (a torn tail the readers cut).
    A write that fails (a full disk) is undone: the file is cut back to its old size and the
    error raised, so a later append never lands glued to half a line.
    """
    try:
        _append(path, data)
    except OSError as exc:
        raise storage_error(exc, path, "append to") from exc


def _append(path: str | os.PathLike[str], data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        start = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, start)
            raise
    finally:
        os.close(fd)


def cut_torn_tail(path: str | os.PathLike[str]) -> int:
    """Cut an append-only log back to its last newline (what a crash mid-append leaves beyond it);
    returns the bytes removed. Only the log's single writer may call it."""
    p = Path(path)
    if not p.exists():
        return 0
    blob = p.read_bytes()
    keep = blob.rfind(b"\n") + 1
    if keep == len(blob):
        return 0
    with open(p, "r+b") as handle:
        handle.truncate(keep)
        handle.flush()
        os.fsync(handle.fileno())
    return len(blob) - keep


def zip_damage(path: str | os.PathLike[str]) -> str | None:
    """What is damaged in the zip archive at ``path`` (``torch.save``'s format): the first member whose
    bytes fail their CRC-32, or None when every member is whole, or the file is no zip at all (its
    reader says so). ``torch.load`` does not check the CRCs, so bytes changed inside a tensor would
    load, silently, as other weights."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError):
        return None
    except Exception as exc:  # noqa: BLE001 - zlib errors of a member whose compressed bytes are broken
        return f"its archive cannot be read ({type(exc).__name__})"
    return f"member {bad} fails its CRC-32 check" if bad is not None else None
