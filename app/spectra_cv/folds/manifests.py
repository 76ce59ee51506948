"""Fold manifests (docs/folds-and-metrics.md): who trains, validates and tests in fold k, and the CSVs.

The default rule is the rotation: per treatment with exactly ``FOLD_SAMPLES_PER_TREATMENT`` (5)
samples, sort the sample names into ``order`` and, for fold k (1..5) with indices mod 5, take
train = order[k−1], order[k], order[k+1]; val = order[k+2]; test = order[k+3]. Treatments with
any other number of samples (the zero-dose control) are left out of CV, loudly, and join the final
all-data model. A ``folds.json`` (the original generator's format) replaces the rule when given.

Unlike the original generator this one fails instead of dropping rows, checks that every
``relative_path`` exists under the data root (the input manifest's directory), proves that no
file, sample or group is in two roles (:func:`check_no_leakage`), and writes atomically.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from spectra_cv import __version__
from spectra_cv.data import contract, rows
from spectra_cv.data.loaders import read_manifest
from spectra_cv.errors import DataContractError, FoldError
from spectra_cv.io import atomic_write_csv, atomic_write_json, sha256_file
from spectra_cv.log import get_logger
from spectra_cv.paths import fold_tag

log = get_logger("folds")

ROLES = ("train", "val", "test")
UNSEEN = "unseen"
"""The optional folds.json key of a fold's samples kept out of every role (a leave-samples-out check)."""
N_FOLDS = contract.FOLD_SAMPLES_PER_TREATMENT
RECORD_FILE = "fold.json"
ROTATION_SOURCE = "the built-in rotation"
_MAX_LISTED = 10


class MissingSpectrumError(DataContractError, FileNotFoundError):
    """A manifest row points at a file that does not exist (a ``FileNotFoundError`` too, as the
    runbook promises, and a ``DataContractError`` so the CLI reports it as one message)."""


@dataclass(frozen=True, kw_only=True)
class FoldAssignment:
    """The samples of each role in one fold, and the treatments left out of CV with the reason."""

    fold: int
    """1-based fold number."""
    roles: dict[str, dict[str, tuple[str, ...]]]
    """role (train/val/test) → treatment → sample names."""
    excluded: dict[str, str]
    """treatment → why it is not in CV (it joins the final all-data model)."""
    source: str
    """``the built-in rotation`` or the folds.json path the assignment came from."""
    unseen: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """treatment → samples a folds.json keeps out of every role (``"unseen"``): scored, never trained on."""

    def role_of(self) -> dict[tuple[str, str], str]:
        """(treatment, sample) → role, for every sample in the fold."""
        return {(t, s): role for role in ROLES for t, samples in self.roles[role].items() for s in samples}

    def to_json(self) -> dict[str, Any]:
        return {
            "fold": self.fold,
            "source": self.source,
            "assignment": {role: {t: list(s) for t, s in self.roles[role].items()} for role in ROLES},
            "excluded": dict(self.excluded),
            **({"unseen": {t: list(s) for t, s in self.unseen.items()}} if self.unseen else {}),
        }


@dataclass(frozen=True, kw_only=True)
class FoldResult:
    """What :func:`generate` wrote for one fold."""

    fold: int
    assignment: FoldAssignment
    input_manifest: Path
    counts: dict[str, int]
    """role → rows in its manifest."""
    manifests: dict[str, Path]
    """role → ``<output-root>/fold_XX/<role>_manifest.csv``."""
    record: Path
    """``<output-root>/fold_XX/fold.json``: assignment, counts and sha256 of each manifest."""

    @property
    def directory(self) -> Path:
        return self.record.parent


def _natural_key(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def check_fold(fold: int) -> None:
    if not isinstance(fold, int) or not 1 <= fold <= N_FOLDS:
        raise FoldError(f"fold {fold!r} is out of range; pass --fold 1..{N_FOLDS}")


def _samples_by_treatment(manifest_df: pd.DataFrame) -> dict[str, list[str]]:
    grouped = manifest_df.groupby("treatment", sort=False)["sample"].unique()
    return {t: sorted(grouped[t]) for t in sorted(grouped.index, key=_natural_key)}


def rotation_assignment(manifest_df: pd.DataFrame, fold: int) -> FoldAssignment:
    """The sample rotation (docs/folds-and-metrics.md) for ``fold`` over the treatments of ``manifest_df``
    (columns treatment, sample)."""
    check_fold(fold)
    roles: dict[str, dict[str, tuple[str, ...]]] = {role: {} for role in ROLES}
    excluded: dict[str, str] = {}
    k = fold
    for treatment, order in _samples_by_treatment(manifest_df).items():
        if len(order) != N_FOLDS:
            excluded[treatment] = (
                f"has {len(order)} sample(s) ({', '.join(order)}); the rotation needs exactly {N_FOLDS}, "
                "so it is left out of CV and joins the final all-data model"
            )
            continue
        roles["train"][treatment] = tuple(order[(k - 1 + i) % N_FOLDS] for i in range(3))
        roles["val"][treatment] = (order[(k + 2) % N_FOLDS],)
        roles["test"][treatment] = (order[(k + 3) % N_FOLDS],)
    if not roles["train"]:
        raise FoldError(
            f"fold {fold}: no treatment has exactly {N_FOLDS} samples, so the rotation assigns nothing; "
            "pass --config folds.json to assign samples explicitly"
        )
    return FoldAssignment(fold=fold, roles=roles, excluded=excluded, source=ROTATION_SOURCE)


def _as_samples(value: Any, where: str, problems: list[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    problems.append(f"{where}: expected a sample name or a non-empty list of them, got {value!r}")
    return ()


def load_fold_config(path: str | Path, fold: int, manifest_df: pd.DataFrame) -> FoldAssignment:
    """Fold ``fold`` of a folds.json ``{"folds": {"1": {"train": {t: [s…]}, "val": {t: s}, "test": {t: s}}}}``.

    Validated strictly against ``manifest_df``: the fold and every role present, no unknown key,
    every treatment in all three roles, every sample in the manifest under its treatment, no sample
    twice. All problems are reported in one ``FoldError``. Treatments of the manifest that the fold
    does not name are excluded (reported, not silently dropped).
    """
    check_fold(fold)
    path = Path(path)
    if not path.is_file():
        raise FoldError(f"{path}: fold config not found; fix --config or omit it to use the built-in sample rotation")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FoldError(f"{path}: not readable JSON ({exc}); fix the file or omit --config") from exc
    if not isinstance(config, dict) or set(config) != {"folds"} or not isinstance(config["folds"], dict):
        raise FoldError(
            f'{path}: expected exactly {{"folds": {{"1": {{"train": …, "val": …, "test": …}}, …}}}}'
        )
    matches = [key for key in config["folds"] if str(key).strip().isdigit() and int(key) == fold]
    if len(matches) != 1:
        listed = ", ".join(map(str, config["folds"])) or "none"
        why = "is missing" if not matches else f"appears {len(matches)} times ({', '.join(matches)})"
        raise FoldError(f"{path}: fold {fold} {why} (folds in the file: {listed}); add it or pick another --fold")
    entry = config["folds"][matches[0]]
    where = f"{path} fold {fold}"
    if not isinstance(entry, dict) or not set(ROLES) <= set(entry) <= {*ROLES, UNSEEN}:
        got = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
        raise FoldError(f"{where}: needs the keys train, val, test and may have {UNSEEN} (got {got})")

    problems: list[str] = []
    known = _samples_by_treatment(manifest_df)
    roles: dict[str, dict[str, tuple[str, ...]]] = {role: {} for role in ROLES}
    for role in ROLES:
        if not isinstance(entry[role], dict) or not entry[role]:
            problems.append(f"{where} {role}: expected a non-empty {{treatment: samples}} object")
            continue
        for treatment, value in entry[role].items():
            roles[role][treatment] = _as_samples(value, f"{where} {role} {treatment}", problems)
    treatments = sorted(set().union(*(roles[r] for r in ROLES)), key=_natural_key)
    unseen = _unseen_entry(entry.get(UNSEEN), where, treatments, problems)
    seen: dict[tuple[str, str], str] = {}
    for treatment in treatments:
        for role in ROLES:
            if treatment not in roles[role]:
                problems.append(f"{where}: {treatment} has no {role} sample; give it one in every role")
        if treatment not in known:
            problems.append(f"{where}: {treatment} is not in the manifest (treatments: {', '.join(known)})")
            continue
        for role in (*ROLES, UNSEEN):
            for sample in (unseen if role == UNSEEN else roles[role]).get(treatment, ()):
                if sample not in known[treatment]:
                    problems.append(
                        f"{where} {role}: {treatment}/{sample} is not in the manifest "
                        f"({treatment} has {', '.join(known[treatment])})"
                    )
                elif (treatment, sample) in seen:
                    problems.append(
                        f"{where}: {treatment}/{sample} is in both {seen[(treatment, sample)]} and {role}; "
                        "a sample may hold one role only"
                    )
                else:
                    seen[(treatment, sample)] = role
    if problems:
        raise FoldError(f"{len(problems)} problem(s) in the fold config:\n  " + "\n  ".join(problems[:_MAX_LISTED]))
    reason = f"is not in {path} fold {fold}; it joins the final all-data model"
    excluded = {t: reason for t in known if t not in treatments}
    return FoldAssignment(fold=fold, roles=roles, excluded=excluded, source=str(path), unseen=unseen)


def _unseen_entry(value: Any, where: str, treatments: list[str], problems: list[str]) -> dict[str, tuple[str, ...]]:
    """The fold's optional ``"unseen"`` object: treatment → samples kept out of every role."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(f"{where} {UNSEEN}: expected a {{treatment: samples}} object")
        return {}
    out = {}
    for treatment, samples in value.items():
        if treatment not in treatments:
            problems.append(f"{where} {UNSEEN}: {treatment} has no role in this fold; only samples of the fold's "
                            "treatments can be kept out of it")
        out[treatment] = _as_samples(samples, f"{where} {UNSEEN} {treatment}", problems)
    return out


def check_manifest_rows(manifest_df: pd.DataFrame, manifest_path: str | Path, check_files: bool = True) -> None:
    """Fail on empty identity cells, on rows that break the row contract (``data.rows``: relative
    paths inside the data root, each once, one denoised output per row) and (with ``check_files``)
    on files missing under the data root (the manifest's directory). Rows are 1-based, header excluded."""
    manifest_path = Path(manifest_path)
    root = manifest_path.parent
    problems: list[str] = []
    for column in ("treatment", "sample", "group_id"):
        for i in manifest_df.index[manifest_df[column].str.strip() == ""][:_MAX_LISTED]:
            problems.append(f"{manifest_path} row {i + 1}: empty {column}; fill it in or drop the row")
    problems += rows.manifest_problems(manifest_df, root, str(manifest_path), check_files=False)
    if problems:
        more = f"\n  … and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
        raise DataContractError(f"{len(problems)} bad manifest row(s):\n  " + "\n  ".join(problems[:_MAX_LISTED])
                                + more, problems)
    if not check_files:
        return
    missing = [(i, rel) for i, rel in enumerate(manifest_df["relative_path"]) if not (root / rel).is_file()]
    if missing:
        listed = [f"{manifest_path} row {i + 1}: {root / rel} not found" for i, rel in missing]
        raise MissingSpectrumError(
            f"{len(missing)} manifest row(s) point at missing files, first: {listed[0]}; "
            "restore the files or fix relative_path (paths are relative to the manifest's directory)",
            listed[:_MAX_LISTED],
        )


def split_manifest(manifest_df: pd.DataFrame, assignment: FoldAssignment) -> dict[str, pd.DataFrame]:
    """Rows of each role, all columns and input order kept. Rows of excluded treatments are left out;
    a row of a CV treatment whose sample has no role is an error, never a silent drop."""
    role_of = assignment.role_of()
    keys = list(zip(manifest_df["treatment"], manifest_df["sample"], strict=True))
    role = pd.Series([role_of.get(key) for key in keys], index=manifest_df.index, dtype=object)
    cv_treatments = {t for r in ROLES for t in assignment.roles[r]}
    kept_out = {(t, s) for t, samples in assignment.unseen.items() for s in samples}
    declared = pd.Series([key in kept_out for key in keys], index=manifest_df.index, dtype=bool)
    orphan = role.isna() & manifest_df["treatment"].isin(cv_treatments) & ~declared
    if orphan.any():
        groups = manifest_df.loc[orphan].groupby(["treatment", "sample"], sort=True).size()
        listed = ", ".join(f"{t}/{s} ({n} rows)" for (t, s), n in groups.items())
        raise FoldError(
            f"fold {assignment.fold}: {listed} has no role in the assignment ({assignment.source}); "
            f"give each sample of a CV treatment a role, list it under \"{UNSEEN}\" to score it as never seen, or "
            "remove its rows from the input manifest"
        )
    splits = {r: manifest_df.loc[role == r].reset_index(drop=True) for r in ROLES}
    empty = [r for r in ROLES if splits[r].empty]
    if empty:
        raise FoldError(
            f"fold {assignment.fold}: no rows for {', '.join(empty)} ({assignment.source}); assign samples to it"
        )
    return splits


def check_no_leakage(splits: Mapping[str, pd.DataFrame]) -> None:
    """Prove that no relative_path, no (treatment, sample) and no group_id is in two roles.

    Raises ``FoldError`` listing every overlap (capped). Returns ``None`` when the split is clean.
    """
    keys = {
        "relative_path": lambda df: set(df["relative_path"]),
        "sample": lambda df: set(df["treatment"] + "/" + df["sample"]),
        "group_id": lambda df: set(df["group_id"]),
    }
    names = list(splits)
    problems: list[str] = []
    for label, extract in keys.items():
        values = {name: extract(splits[name]) for name in names}
        for i, first in enumerate(names):
            for second in names[i + 1 :]:
                shared = sorted(values[first] & values[second])
                if shared:
                    shown = ", ".join(shared[:3]) + (" …" if len(shared) > 3 else "")
                    problems.append(f"{len(shared)} {label}(s) in both {first} and {second}: {shown}")
    if problems:
        raise FoldError(
            "split leaks between roles:\n  " + "\n  ".join(problems)
            + "\nfix the fold assignment so each sample (both angles, every replicate) holds one role"
        )


def write_fold_manifests(splits: Mapping[str, pd.DataFrame], output_root: str | Path, fold: int,
                         directory: str | Path | None = None) -> dict[str, Path]:
    """Write ``<output_root>/fold_XX/{train,val,test}_manifest.csv`` (or into ``directory``) atomically
    (leakage checked first)."""
    check_fold(fold)
    check_no_leakage(splits)
    directory = Path(directory) if directory is not None else Path(output_root) / fold_tag(fold)
    return {role: atomic_write_csv(directory / f"{role}_manifest.csv", splits[role]) for role in ROLES}


def control_rows(manifest_df: pd.DataFrame, assignment: FoldAssignment) -> pd.DataFrame:
    """Rows of the treatments left out of CV (the zero-dose control), in manifest order: no fold
    trains on them, so every fold can score its model on them as on new samples."""
    rows = manifest_df[manifest_df["treatment"].astype(str).isin(set(assignment.excluded))]
    return rows.reset_index(drop=True)


def leave_samples_out(manifest_df: pd.DataFrame, held_out: list[str]) -> dict[str, Any]:
    """A folds.json (as ``load_fold_config`` reads it) that keeps the ``held_out`` samples
    (``treatment/sample``) out of every role of every fold, listed under ``"unseen"``: each fold then
    scores its model on them. The other samples of each CV treatment rotate as the built-in rotation does, over
    however many remain (≥ 3: two or more to train, one to validate, one to test); treatments with
    another number of samples than the rotation's are left out, as the rotation leaves them."""
    known = _samples_by_treatment(manifest_df)
    problems = [f"--hold-out {item}: expected treatment/sample" for item in held_out if item.count("/") != 1]
    pairs = [tuple(item.split("/")) for item in held_out if item.count("/") == 1]
    problems += [f"--hold-out {t}/{s}: not in the manifest"
                 + (f" ({t} has {', '.join(known[t])})" if t in known else "")
                 for t, s in pairs if s not in known.get(t, [])]
    cv = {t: order for t, order in known.items() if len(order) == N_FOLDS}
    problems += [f"--hold-out {t}/{s}: {t} is not in the cross-validation (it has {len(known[t])} samples)"
                 for t, s in pairs if t in known and t not in cv and s in known[t]]
    kept = {t: [s for s in order if (t, s) not in pairs] for t, order in cv.items()}
    problems += [f"{t}: only {len(order)} sample(s) left; hold out at most {N_FOLDS - 3} of its {N_FOLDS}"
                 for t, order in kept.items() if len(order) < 3]
    if problems:
        raise FoldError("; ".join(problems))
    unseen: dict[str, list[str]] = {}
    for t, s in pairs:
        unseen.setdefault(t, []).append(s)
    folds: dict[str, Any] = {}
    for k in range(1, N_FOLDS + 1):
        entry: dict[str, dict[str, Any]] = {role: {} for role in ROLES}
        if unseen:
            entry[UNSEEN] = {t: list(samples) for t, samples in unseen.items()}
        for treatment, order in kept.items():
            n = len(order)
            entry["train"][treatment] = [order[(k - 1 + i) % n] for i in range(n - 2)]
            entry["val"][treatment] = order[(k - 1 + n - 2) % n]
            entry["test"][treatment] = order[(k - 1 + n - 1) % n]
        folds[str(k)] = entry
    return {"folds": folds}


def unseen_rows(manifest_df: pd.DataFrame, assignment: FoldAssignment) -> pd.DataFrame:
    """Rows of the samples the folds.json keeps out of every role of this fold (``"unseen"``: a
    leave-samples-out check), in manifest order: the fold never sees them, so it scores its model on
    them as on new samples of known treatments. Empty with the built-in rotation."""
    kept_out = {(t, s) for t, samples in assignment.unseen.items() for s in samples}
    keys = zip(manifest_df["treatment"].astype(str), manifest_df["sample"].astype(str), strict=True)
    return manifest_df[[key in kept_out for key in keys]].reset_index(drop=True)


def split_fold(
    fold: int, input_manifest: str | Path, config: str | Path | None = None, check_files: bool = True
) -> tuple[pd.DataFrame, FoldAssignment, dict[str, pd.DataFrame]]:
    """Read and check the input manifest, assign the fold (rotation or ``config``), split, prove: the
    manifests ``generate`` would write, in memory (input frame, assignment, rows of each role)."""
    check_fold(fold)
    input_manifest = Path(input_manifest)
    manifest_df = read_manifest(input_manifest)
    check_manifest_rows(manifest_df, input_manifest, check_files=check_files)
    if config is None:
        assignment = rotation_assignment(manifest_df, fold)
    else:
        assignment = load_fold_config(config, fold, manifest_df)
    splits = split_manifest(manifest_df, assignment)
    check_no_leakage(splits)
    return manifest_df, assignment, splits


def generate(
    fold: int,
    input_manifest: str | Path,
    output_root: str | Path,
    config: str | Path | None = None,
    check_files: bool = True,
    directory: str | Path | None = None,
) -> FoldResult:
    """Runbook §3 for one fold: read, check, assign (rotation or ``config``), split, prove, write.

    ``fold.json`` is removed first and written last, so it exists only beside a complete set of
    manifests whose sha256 it records.
    """
    input_manifest = Path(input_manifest)
    manifest_df, assignment, splits = split_fold(fold, input_manifest, config, check_files=check_files)
    for treatment, reason in assignment.excluded.items():
        log.warning("fold %d: %s excluded from CV: %s", fold, treatment, reason)

    directory = Path(directory) if directory is not None else Path(output_root) / fold_tag(fold)
    record = directory / RECORD_FILE
    record.unlink(missing_ok=True)
    paths = write_fold_manifests(splits, output_root, fold, directory)
    counts = {role: int(len(splits[role])) for role in ROLES}
    atomic_write_json(
        record,
        {
            **assignment.to_json(),
            "tag": fold_tag(fold),
            "spectra_cv_version": __version__,
            "input_manifest": {
                "path": str(input_manifest),
                "rows": int(len(manifest_df)),
                "sha256": sha256_file(input_manifest),
            },
            "files_checked": bool(check_files),
            "counts": {
                role: {
                    "rows": counts[role],
                    "samples": int(splits[role].groupby(["treatment", "sample"]).ngroups),
                    "groups": int(splits[role]["group_id"].nunique()),
                }
                for role in ROLES
            },
            "manifests": {role: {"file": paths[role].name, "sha256": sha256_file(paths[role])} for role in ROLES},
        },
    )
    log.info("fold %d: train=%d val=%d test=%d -> %s", fold, *(counts[r] for r in ROLES), record.parent)
    return FoldResult(
        fold=fold, assignment=assignment, input_manifest=input_manifest, counts=counts, manifests=paths, record=record
    )
