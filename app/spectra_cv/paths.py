"""Paths from one place: the runbook's layout, relative to the run's working directory.

Every default can be overridden by an environment variable (the same names compose.yaml sets),
and every CLI option that takes one of these paths falls back to that variable.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

#: Environment variables read for path defaults (compose.yaml sets the same names).
ENV_DATA_ROOT = "SPECTRA_CV_DATA_ROOT"
ENV_METADATA_DIR = "SPECTRA_CV_METADATA_DIR"
ENV_RUN_ROOT = "SPECTRA_CV_RUN_ROOT"

DEFAULT_DATA_ROOT = Path("data/spectra_for_fold")
LAST_STATE_FILE = "last_state.pt"
"""The trainer's resumable state, beside the best checkpoint."""
DEFAULT_METADATA_DIR = Path("data/metadata")


def data_root() -> Path:
    """Directory holding spectra, ``manifest.csv``, ``wavelength_grid.npy``, ``lambda_stats.npz``."""
    return Path(os.environ.get(ENV_DATA_ROOT, DEFAULT_DATA_ROOT))


def metadata_dir() -> Path:
    """Directory holding ``dose_features.csv``, ``dose_sampling_weights.csv``, ``dose_stats.json``."""
    return Path(os.environ.get(ENV_METADATA_DIR, DEFAULT_METADATA_DIR))


def denoised_name(relative_path: str) -> str:
    """``<relative parent>/<stem>_denoised.npy``: where one manifest row's output lies under an output root."""
    parent, name = posixpath.split(posixpath.normpath(relative_path))
    dot = name.rfind(".")
    stem = name[:dot] if 0 < dot < len(name) - 1 else name  # pathlib's stem, without parsing a path per row
    return posixpath.join(parent, f"{stem}_denoised.npy")


def denoised_output(output_root: Path, relative_path: str) -> Path:
    """``<output_root>/<relative parent>/<stem>_denoised.npy`` for one manifest row."""
    return output_root / denoised_name(relative_path)


def fold_tag(fold: int) -> str:
    """``fold_03`` for fold 3 (the runbook's two-digit tag)."""
    return f"fold_{fold:02d}"


def fold_dir_name(fold: int) -> str:
    """``Track_H_fold_03``: the fold's directory under ``logs/`` and ``checkpoints/``."""
    return f"Track_H_{fold_tag(fold)}"


_FOLD_DIR = re.compile(r"^Track_H_fold_(\d+)$")


@dataclass(frozen=True, kw_only=True)
class RunPaths:
    """The runbook's per-fold output paths under one run root (the working directory by default)."""

    root: Path = Path(".")
    """Run root; every output lies under it."""

    @classmethod
    def from_env(cls) -> RunPaths:
        return cls(root=Path(os.environ.get(ENV_RUN_ROOT, ".")))

    def manifests(self, fold: int) -> Path:
        return self.root / "manifests" / fold_tag(fold)

    def manifest(self, fold: int, role: str) -> Path:
        return self.manifests(fold) / f"{role}_manifest.csv"

    def log_dir(self, fold: int) -> Path:
        return self.root / "logs" / fold_dir_name(fold)

    def fold_log(self, fold: int) -> Path:
        """The console output of the fold's process when ``cv`` (or a cluster task) runs it."""
        return self.log_dir(fold) / "fold.log"

    def folds_with_events(self) -> list[int]:
        """The folds that have an event file under ``logs/`` (every fold that ever started here)."""
        logs = self.root / "logs"
        if not logs.is_dir():
            return []
        found = (_FOLD_DIR.match(child.name) for child in logs.iterdir())
        return sorted(int(m.group(1)) for m in found if m and (logs / m.group(0) / "events.jsonl").is_file())

    def train_log(self, fold: int) -> Path:
        return self.log_dir(fold) / "train.log"

    def audit_log(self, fold: int) -> Path:
        return self.log_dir(fold) / "auditing_manifest.log"

    def checkpoint_dir(self, fold: int) -> Path:
        return self.root / "checkpoints" / fold_dir_name(fold)

    def best_checkpoint(self, fold: int, model: str = "mamba_tiny_uv") -> Path:
        return self.checkpoint_dir(fold) / f"{model}_best.pt"

    def denoised_root(self, fold: int) -> Path:
        return self.root / "denoised" / "folds" / fold_tag(fold)

    def denoised(self, fold: int, role: str) -> Path:
        return self.denoised_root(fold) / role

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts" / "cross_validation"

    @property
    def summary_csv(self) -> Path:
        return self.artifacts / "fold_summary.csv"

    def speed_log(self, fold: int) -> Path:
        return self.artifacts / f"{fold_tag(fold)}_speed.json"

    def events(self, fold: int) -> Path:
        """The fold's append-only event file (its only writer is the fold's own process)."""
        return self.log_dir(fold) / "events.jsonl"

    def learning_curve(self, fold: int) -> Path:
        """Per-epoch ``metrics.csv`` the trainer rewrites after every epoch."""
        return self.log_dir(fold) / "metrics.csv"

    def inference_log(self, fold: int, role: str) -> Path:
        return self.log_dir(fold) / f"inference_{role}.log"

    def fold_lock(self, fold: int) -> Path:
        return self.log_dir(fold) / ".fold.lock"

    def metrics_json(self, fold: int) -> Path:
        """Val and test scores of the model beside the baselines (``score_table`` per split)."""
        return self.artifacts / f"{fold_tag(fold)}_metrics.json"

    def baselines_json(self, fold: int) -> Path:
        """The baselines fitted on the fold's train split: chosen parameters and held-out scores
        (``runs.fold_baselines``); the prior and the evaluation reuse them."""
        return self.artifacts / f"{fold_tag(fold)}_baselines.json"

    def completion_record(self, fold: int) -> Path:
        """Written last by a finished fold: checkpoint sha256, config hash, metrics."""
        return self.checkpoint_dir(fold) / "fold_complete.json"

    @property
    def start_lock(self) -> Path:
        """Held while a fold decides how to start and checks the other folds' configs."""
        return self.root / "logs" / ".start.lock"

    @property
    def cv_lock(self) -> Path:
        """Held for its lifetime by a ``cv`` run: one cross-validation run per run root at a time."""
        return self.root / "logs" / ".cv.lock"

    @property
    def cv_holder(self) -> Path:
        """Who holds ``cv_lock`` (host, pid, start time, command), written by the holder for the next one."""
        return self.root / "logs" / ".cv.holder.json"

    @property
    def coordinator_lock(self) -> Path:
        """Held by whoever writes the audit logs and summary, for one pass."""
        return self.artifacts / ".coordinator.lock"

    @property
    def follower_lock(self) -> Path:
        """Held for its lifetime by a following coordinator (``--follow``, or ``cv``)."""
        return self.artifacts / ".coordinator.follow.lock"

    @property
    def report_md(self) -> Path:
        return self.artifacts / "cv_report.md"

    @property
    def report_metrics_csv(self) -> Path:
        return self.artifacts / "cv_metrics.csv"

    @property
    def plots_dir(self) -> Path:
        return self.artifacts / "plots"

    @property
    def final_checkpoint_dir(self) -> Path:
        return self.root / "checkpoints" / "final"

    @property
    def final_denoised(self) -> Path:
        return self.root / "denoised" / "final"

    @property
    def final_log_dir(self) -> Path:
        return self.root / "logs" / "final"
