"""The data fingerprint of a fold: a sha256 of everything the fold reads, file by file.

What a fold reads: the rows of its three manifests (as ``generate`` writes them from the input
manifest and the fold config), every spectrum those rows name, the wavelength grid and λ-weights,
the metadata files (dose features, dose statistics, sampling weights when present) and the fold
config when one is given. Each gets its own sha256, under a label that does not depend on where the
data are mounted (``treatment_1/sample_A/6Oclock/rep_004.npy``, ``metadata/dose_stats.json``), so
the same data read on the host and in a container fingerprint the same. The digest over all labels
is what the events carry; the per-file list is kept beside the checkpoint
(``data_fingerprint.json``), so a mismatch can name the first file that changed.

Resume, skip and the report compare fingerprints: a fold never resumes or skips over data that
changed under it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spectra_cv import io as sio
from spectra_cv.data import contract
from spectra_cv.errors import DataContractError
from spectra_cv.folds.manifests import control_rows, split_fold, unseen_rows

SCHEMA = "spectra-cv/data-fingerprint/1"


@dataclass(frozen=True)
class DataFingerprint:
    """label → sha256 of every input of a fold, in reading order (metadata, manifest rows, spectra)."""

    files: dict[str, str] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        blob = "".join(f"{label}\t{sha}\n" for label, sha in sorted(self.files.items()))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "digest": self.digest, "files": self.files}

    @classmethod
    def from_json(cls, raw: dict[str, Any], where: str) -> DataFingerprint:
        if raw.get("schema") != SCHEMA or not isinstance(raw.get("files"), dict):
            raise DataContractError(f"{where}: not a spectra-cv data fingerprint")
        return cls(files={str(k): str(v) for k, v in raw["files"].items()})

    def difference(self, now: DataFingerprint) -> str | None:
        """How ``now`` differs from this (recorded) fingerprint, naming the first changed input; None if equal."""
        changed = [label for label, sha in self.files.items() if now.files.get(label, sha) != sha]
        gone = [label for label in self.files if label not in now.files]
        new = [label for label in now.files if label not in self.files]
        if not (changed or gone or new):
            return None
        first = next((label for label in self.files if label in set(changed) | set(gone)), None)
        if first is not None:
            what = f"{first} {'changed' if first in changed else 'is no longer read'}"
        else:
            what = f"{new[0]} is new"
        total = len(changed) + len(gone) + len(new)
        return f"{what} ({total} of {max(len(self.files), len(now.files))} inputs differ)"


def save(path: Path, fingerprint: DataFingerprint) -> None:
    sio.atomic_write_json(path, fingerprint.to_json(), indent=None)


def load(path: Path) -> DataFingerprint | None:
    """The fingerprint stored at ``path``, or None when the file is absent or unreadable."""
    try:
        return DataFingerprint.from_json(json.loads(path.read_text()), str(path))
    except (OSError, ValueError, DataContractError):
        return None


def describe_change(recorded: str | None, now: DataFingerprint, stored_at: list[Path]) -> str | None:
    """How the data differ from a run's ``recorded`` digest, naming the first changed file when one of
    ``stored_at`` still holds that run's per-file list; None when they are the same (or nothing was recorded)."""
    if not recorded or recorded == now.digest:
        return None
    for where in stored_at:
        stored = load(where)
        if stored is not None and stored.digest == recorded:
            return stored.difference(now) or "the fingerprint differs"
    return f"data fingerprint {recorded[:12]} then, {now.digest[:12]} now"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fold_inputs(fold: int, data_root: Path, metadata_dir: Path, fold_config: Path | None,
                film: bool) -> DataFingerprint:
    """Check and fingerprint what fold ``fold`` will read (``DataContractError``/``FoldError`` naming the
    file or row when an input is missing or breaks the row contract)."""

    files: dict[str, str] = {}
    for name in (contract.GRID_FILE, contract.LAMBDA_STATS_FILE):
        path = data_root / name
        if not path.is_file():
            raise DataContractError(f"{path}: missing; the fold reads it (`spectra-cv data check` lists what a "
                                    "data root needs)")
        files[name] = sio.sha256_file(path)
    needed = (contract.DOSE_FEATURES_FILE, contract.DOSE_STATS_FILE) if film else ()
    for name in (contract.DOSE_FEATURES_FILE, contract.DOSE_STATS_FILE, contract.SAMPLING_WEIGHTS_FILE):
        path = metadata_dir / name
        if path.is_file():
            files[f"metadata/{name}"] = sio.sha256_file(path)
        elif name in needed:
            raise DataContractError(f"{path}: missing; FiLM conditioning reads it (pass --metadata-dir)")
    if fold_config is not None:
        files[f"fold config {fold_config.name}"] = sio.sha256_file(fold_config)
    manifest_df, assignment, splits = split_fold(fold, data_root / contract.MANIFEST_FILE, fold_config,
                                                 check_files=True)
    splits = {**splits, "control": control_rows(manifest_df, assignment)}  # scored, never trained on
    unseen = unseen_rows(manifest_df, assignment)
    if not unseen.empty:  # (only then: the fingerprint of a run without them stays what it was)
        splits["unseen"] = unseen
    for role in splits:
        files[f"{role} manifest rows"] = _sha(splits[role].to_csv(index=False).encode("utf-8"))
    for role in splits:
        for rel in splits[role]["relative_path"].astype(str):
            files[rel] = sio.sha256_file(data_root / rel)
    return DataFingerprint(files=files)
