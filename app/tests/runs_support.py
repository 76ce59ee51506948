"""Helpers shared by the fold-run tests (test_runs, test_rerun): tiny settings, a CLI runner in a
subprocess (real processes, so kills are real), and audit-log readers. Fixtures are in conftest.py."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd

from spectra_cv.paths import RunPaths
from spectra_cv.runs.summary import read_summary

APP = Path(__file__).resolve().parents[1]
LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d \| \S.*$")
TIME_COLUMNS = ("started_at", "finished_at", "train_seconds", "denoise_seconds", "total_seconds")
EXPECTED_MESSAGES = [
    "Starting fold_01", "Generating manifests", "Generated manifests: ", "Launching training run",
    "Training started: ", "Training stopped after ", "Training completed successfully",
    "Checkpoint ready: checkpoints/Track_H_fold_01/mamba_tiny_uv_best.pt",
    "Starting inference for train -> denoised/folds/fold_01/train", "Completed inference for train",
    "Starting inference for val -> denoised/folds/fold_01/val", "Completed inference for val",
    "Starting inference for test -> denoised/folds/fold_01/test", "Completed inference for test",
    "Test metrics: PSNR ", "Fold completed",
]


def fold_args(data: Path, root: Path, epochs: int = 4) -> list[str]:
    """Tiny settings; the run root is given as "." (the processes run in it, as the runbook does), so
    checkpoints of two run roots hold the same relative manifest paths and hash the same."""
    del root
    return ["--preset", "cpu_quick", "--epochs", str(epochs), "--set", "d_model=8", "--set", "n_layers=1",
            "--data-root", str(data / "spectra_for_fold"), "--metadata-dir", str(data / "metadata"),
            "--run-root", "."]


def spectra_cv(*args: str, cwd: Path, fault: str | None = None, check: bool = True,
               timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(APP)}
    env.pop("SPECTRA_CV_FAULT", None)
    if fault:
        env["SPECTRA_CV_FAULT"] = fault
    cwd.mkdir(parents=True, exist_ok=True)
    out = subprocess.run([sys.executable, "-m", "spectra_cv", *args], capture_output=True, text=True,
                         timeout=timeout, env=env, cwd=cwd)
    if check and out.returncode != 0:
        raise AssertionError(f"spectra-cv {' '.join(args)} exited {out.returncode}:\n{out.stderr[-3000:]}")
    return out


def messages(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    assert all(LINE.match(line) for line in lines), lines
    return [line.split(" | ", 1)[1] for line in lines]


def summary_without_times(root: Path) -> pd.DataFrame:
    return read_summary(RunPaths(root=root).summary_csv).drop(columns=list(TIME_COLUMNS))
