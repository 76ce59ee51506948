"""Where one run of a fold writes: the runbook's paths, or a staging area beside them.

A first run of a fold writes the runbook's paths directly. A *retrain* of a fold that already has
a finished result (``--force``, or a completed fold whose checkpoint no longer matches its record)
writes everything into staging places beside the finished result instead:

* ``manifests/.fold_03.retrain/`` and ``denoised/folds/.fold_03.retrain/`` (whole folders),
* ``checkpoints/Track_H_fold_03/.retrain/``, ``logs/Track_H_fold_03/.retrain/`` and
  ``artifacts/cross_validation/.fold_03.retrain/`` (files),

and only when the retrain has completed are they swapped in, one rename each. Killed before the
swap, the finished checkpoint, completion record, denoised files and metrics are untouched and
still agree with each other. The swap itself is idempotent (``swap_in``): the fold records that it
began, and a rerun after a crash in the middle finishes it.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from spectra_cv import faults
from spectra_cv.io import fsync_dir, remove_write_leftovers
from spectra_cv.log import get_logger
from spectra_cv.paths import LAST_STATE_FILE, RunPaths, fold_tag

log = get_logger("outputs")

STAGING = "retrain"
FINGERPRINT_FILE = "data_fingerprint.json"
MANIFEST_LOG = "generate_manifests.log"
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class FoldOutputs:
    """The output paths of one run of ``fold`` (``staged``: the retrain's staging places)."""

    paths: RunPaths
    fold: int
    staged: bool = False

    @property
    def tag(self) -> str:
        return fold_tag(self.fold)

    # --- folders swapped whole ------------------------------------------------------------------
    @property
    def manifests_dir(self) -> Path:
        live = self.paths.manifests(self.fold)
        return live.with_name(f".{live.name}.{STAGING}") if self.staged else live

    def manifest(self, role: str) -> Path:
        return self.manifests_dir / f"{role}_manifest.csv"

    @property
    def denoised_root(self) -> Path:
        live = self.paths.denoised(self.fold, "train").parent
        return live.with_name(f".{live.name}.{STAGING}") if self.staged else live

    def denoised(self, role: str) -> Path:
        return self.denoised_root / role

    # --- files swapped one by one ----------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        live = self.paths.checkpoint_dir(self.fold)
        return live / f".{STAGING}" if self.staged else live

    def best_checkpoint(self, model: str) -> Path:
        return self.checkpoint_dir / self.paths.best_checkpoint(self.fold, model).name

    @property
    def last_state(self) -> Path:
        return self.checkpoint_dir / LAST_STATE_FILE

    @property
    def completion_record(self) -> Path:
        return self.checkpoint_dir / self.paths.completion_record(self.fold).name

    @property
    def fingerprint(self) -> Path:
        return self.checkpoint_dir / FINGERPRINT_FILE

    @property
    def _artifacts(self) -> Path:
        return self.paths.artifacts / f".{self.tag}.{STAGING}" if self.staged else self.paths.artifacts

    @property
    def metrics_json(self) -> Path:
        return self._artifacts / self.paths.metrics_json(self.fold).name

    @property
    def baselines_json(self) -> Path:
        return self._artifacts / self.paths.baselines_json(self.fold).name

    @property
    def speed_log(self) -> Path:
        return self._artifacts / self.paths.speed_log(self.fold).name

    @property
    def log_dir(self) -> Path:
        """Where this run's train/inference logs and learning curve go (events and audit log stay put)."""
        live = self.paths.log_dir(self.fold)
        return live / f".{STAGING}" if self.staged else live

    @property
    def train_log(self) -> Path:
        return self.log_dir / self.paths.train_log(self.fold).name

    @property
    def learning_curve(self) -> Path:
        return self.log_dir / self.paths.learning_curve(self.fold).name

    def inference_log(self, role: str) -> Path:
        return self.log_dir / self.paths.inference_log(self.fold, role).name

    @property
    def manifests_log(self) -> Path:
        return self.log_dir / MANIFEST_LOG

    # --- the swap ----------------------------------------------------------------------------------
    def live(self) -> FoldOutputs:
        return FoldOutputs(self.paths, self.fold, staged=False)

    def items(self, model: str) -> list[Path]:
        """Everything a completed run leaves, the completion record last."""
        return [self.manifests_dir, self.denoised_root, self.best_checkpoint(model), self.last_state,
                self.fingerprint, self.baselines_json, self.metrics_json, self.speed_log, self.train_log,
                self.learning_curve,
                *(self.inference_log(r) for r in SPLITS), self.manifests_log, self.completion_record]

    def staging_places(self) -> list[Path]:
        """The staging folders of this fold (``staged`` outputs only)."""
        staged = FoldOutputs(self.paths, self.fold, staged=True)
        return [staged.manifests_dir, staged.denoised_root, staged.checkpoint_dir, staged._artifacts, staged.log_dir]

    def remove_leftovers(self, model: str) -> int:
        """Remove the temp files a killed run of this fold left beside (or inside) its outputs, live
        and staged; returns how many. The fold's own process calls it, under the fold lock."""
        staged = FoldOutputs(self.paths, self.fold, staged=True)
        removed = sum(remove_write_leftovers(p) for p in (*self.live().items(model), *staged.items(model)))
        if removed:
            log.info("%s: removed %d temp file(s) a killed run left", self.tag, removed)
        return removed

    def missing(self, model: str) -> list[Path]:
        """Items of a completed run that do not exist (a staged run must have them all before its swap).
        The baselines record is swapped with the rest but not required: a run begun by a version that did
        not write it is still whole, and evaluation writes it again whenever it is missing."""
        return [p for p in self.items(model) if not p.exists() and p != self.baselines_json]


def _trash(live: Path) -> Path:
    return live.with_name(f".{live.name}.replaced")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def swap_in(staged: FoldOutputs, model: str) -> int:
    """Move every staged item over its live twin; returns how many moved. Idempotent: run again after
    a crash anywhere inside, it finishes the job (an item still staged is moved, a moved one is left).
    """

    assert staged.staged, "swap_in takes the staged outputs"
    live = staged.live()
    moved = 0
    for source, target in zip(staged.items(model), live.items(model), strict=True):
        if not source.exists():
            continue  # moved before a crash (or never staged: the caller checked it was)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() or target.is_symlink():
            trash = _trash(target)
            _remove(trash)
            os.rename(target, trash)
        os.rename(source, target)
        fsync_dir(target.parent)
        moved += 1
        if moved == 3:
            faults.point("swap_midway")  # crash tests: the checkpoint is new, the completion record old
    for target in live.items(model):
        _remove(_trash(target))
    for place in staged.staging_places():
        _remove(place)
    log.info("%s: %d retrained output(s) swapped in", staged.tag, moved)
    return moved


def clear_staging(outputs: FoldOutputs) -> None:
    """Remove the fold's staging places (an abandoned retrain; never the finished result)."""
    for place in outputs.staging_places():
        _remove(place)
