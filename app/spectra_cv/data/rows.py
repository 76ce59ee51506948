"""The manifest row contract: what a ``relative_path`` may name, the same for every reader.

``data check``, the fold manifests, training, denoising, evaluation and the final model all read
spectra through manifest rows, and all apply these rules, so a row one command refuses is refused
by every command (before anything is written):

* a row names a path *relative to the data root*: not empty, not absolute, no ``..`` part;
* the file is one of the spectrum types (``.npy``, ``.npz``, ``.csv``, ``.txt``);
* once symlinks are followed it still lies inside the data root (a link may point elsewhere in
  the root, never out of it);
* each spectrum is listed once, and rows map to distinct denoised outputs: ``a/rep_000.npy`` and
  ``a/rep_000.csv`` would both write ``a/rep_000_denoised.npy``.

Every problem names the manifest and its 1-based data row (header excluded) and the fix.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import pandas as pd

from spectra_cv.data import contract
from spectra_cv.errors import DataContractError
from spectra_cv.paths import denoised_name

MAX_LISTED = 20
"""Problems shown in an error message (all are kept in ``DataContractError.problems``)."""


def path_problem(rel: str) -> str | None:
    """Why ``rel`` cannot be a manifest row's path (None when its form is fine)."""
    if not rel.strip():
        return "empty relative_path; fill it or delete the row"
    pure = PurePosixPath(rel)
    native = pure if os.sep == "/" else Path(rel)  # a second reading only where the OS's paths differ
    if pure.is_absolute() or native.is_absolute() or rel.startswith("\\"):
        return ("an absolute path; rows name files relative to the data root "
                "(e.g. treatment_1/sample_A/6Oclock/rep_000.npy)")
    if ".." in pure.parts or ".." in native.parts:
        return "contains '..'; rows name files inside the data root, relative to it: fix the row"
    if pure.suffix.lower() not in contract.SPECTRUM_SUFFIXES:
        return (f"unsupported spectrum type '{pure.suffix}'; use one of {', '.join(contract.SPECTRUM_SUFFIXES)}")
    return None


class RootGuard:
    """Where rows of one data root lead once symlinks are followed, each folder resolved once.

    ``os.path.realpath`` walks every component of every row's path (a syscall each); the rows of a
    manifest share a few folders, so a folder's real path is kept and a row then costs one
    ``lstat`` unless the file is itself a link. Paths are handled as strings: pathlib's parsing
    cost more than the file system for thousands of rows. (One guard per pass: folders are not re-read.)
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._root = str(self.root)
        self._real = os.path.realpath(self.root)
        self._real_prefix = self._real.rstrip(os.sep) + os.sep
        self._folders: dict[str, str] = {}

    def outside(self, rel: str) -> Path | None:
        """Where ``root/rel`` leads when that is outside the data root; else None."""
        path = os.path.join(self._root, rel)
        parent, name = os.path.split(path)
        folder = self._folders.get(parent)
        if folder is None:
            folder = self._folders[parent] = os.path.realpath(parent)
        target = os.path.realpath(path) if os.path.islink(path) else os.path.join(folder, name)
        if target == self._real or target.startswith(self._real_prefix):
            return None
        return Path(target)

    def resolve(self, rel: str) -> Path:
        """``root/rel`` after the row rules (``DataContractError`` naming the path otherwise)."""
        problem = path_problem(rel)
        if problem is not None:
            raise DataContractError(f"{rel!r}: {problem}")
        outside = self.outside(rel)
        if outside is not None:
            raise DataContractError(
                f"{self.root / rel}: a symlink leads out of the data root {self.root} (to {outside}); "
                "copy the file into the data root or fix the link"
            )
        return self.root / rel


def resolve_row(root: str | Path, rel: str) -> Path:
    """``root/rel`` after the row rules (``DataContractError`` naming the path otherwise)."""
    return RootGuard(root).resolve(rel)


def manifest_problems(frame: pd.DataFrame, root: str | Path, name: str, check_files: bool = True) -> list[str]:
    """Every row problem of a manifest ``frame`` whose paths live under ``root`` (none: an empty list)."""
    root = Path(root)
    rel = frame["relative_path"].astype(str).tolist()
    problems: list[str] = []
    guard = RootGuard(root)
    usable = [False] * len(rel)
    for i, r in enumerate(rel):
        problem = path_problem(r)
        if problem is not None:
            problems.append(f"{name} row {i + 1}: {r}: {problem}" if r.strip() else f"{name} row {i + 1}: {problem}")
            continue
        outside = guard.outside(r)
        if outside is not None:
            problems.append(f"{name} row {i + 1}: {r}: a symlink leads out of the data root (to {outside}); "
                            "copy the file into the data root or fix the link")
            continue
        usable[i] = True
    series = pd.Series(rel)
    for path, rows in series[series.duplicated(keep=False)].groupby(series, sort=False).groups.items():
        where = ", ".join(str(int(r) + 1) for r in rows)
        problems.append(f"{name} rows {where}: duplicate relative_path {path}; delete the repeated row(s)")
    first = ~series.duplicated(keep="first")
    outputs: dict[str, list[int]] = {}
    for i, r in enumerate(rel):
        if usable[i] and first.iat[i]:
            outputs.setdefault(denoised_name(r), []).append(i)
    for out, rows in outputs.items():
        if len(rows) > 1:
            listed = ", ".join(f"{i + 1} ({rel[i]})" for i in rows)
            problems.append(f"{name} rows {listed}: would all be denoised to {out}; rename the files so each "
                            "row has its own stem (or keep one format per spectrum)")
    if check_files:
        for i, r in enumerate(rel):
            if usable[i] and first.iat[i] and not os.path.isfile(os.path.join(root, r)):
                problems.append(f"{name} row {i + 1}: {r}: spectrum file not found under {root}; "
                                "restore the file or fix the row")
    return problems


def check_manifest(frame: pd.DataFrame, root: str | Path, name: str, check_files: bool = True) -> None:
    """Raise ``DataContractError`` listing every row problem (``manifest_problems``), if any."""
    problems = manifest_problems(frame, root, name, check_files=check_files)
    if problems:
        shown = problems[:MAX_LISTED]
        more = f"\n  … and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        raise DataContractError(
            f"{len(problems)} bad manifest row(s):\n  " + "\n  ".join(shown) + more, problems)


def check_relative_paths(rel: Sequence[str], root: str | Path, name: str, check_files: bool = True) -> None:
    """``check_manifest`` for a bare list of relative paths."""
    check_manifest(pd.DataFrame({"relative_path": list(rel)}), root, name, check_files=check_files)
