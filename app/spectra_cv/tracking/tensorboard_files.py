"""The TensorBoard backend: each fold run as a TensorBoard run under ``<run root>/tracking/tensorboard``.

Layout: ``tensorboard/fold_03/<start time>_<seq>/events.out.tfevents.…``, one folder per run of
the fold, so ``tensorboard --logdir <run root>/tracking/tensorboard`` lists ``fold_01/…`` to
``fold_05/…`` side by side. Each holds the per-epoch scalars (step = epoch), the summary and
scores of the model and every baseline (step 0), an hparams session (the flattened config, which
the HPARAMS tab compares across folds), and text: the run's status and result, its config, and
its artifacts (TensorBoard has no artifact store, so the checkpoint, metrics JSON and report are
named with their sha256 where they lie under the run root).

Event files only grow, so an export rewrites the fold's whole folder from the events, in a hidden
sibling renamed over the old one (``io.staged_directory``): exporting again leaves the same runs with
each step once, and a reader never sees half a folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from spectra_cv import io as sio
from spectra_cv.log import get_logger
from spectra_cv.paths import RunPaths, fold_tag
from spectra_cv.tracking import missing_library
from spectra_cv.tracking.history import TrackedRun

log = get_logger("tracking.tensorboard")

LOGDIR = "tensorboard"
HPARAM_METRICS = ("score/test/model/psnr_mean", "score/test/model/sam_deg_mean", "score/best_val_psnr",
                  "score/best_val_sam")
"""Metrics the HPARAMS tab shows beside the config (those the run has)."""


def logdir(paths: RunPaths) -> Path:
    """What ``tensorboard --logdir`` takes: every fold's runs lie under it."""
    return paths.root / "tracking" / LOGDIR


def _api() -> tuple[Any, Any]:
    try:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams
    except ImportError as exc:  # torch's writer needs the tensorboard package
        raise missing_library("tensorboard", exc) from exc
    return SummaryWriter, hparams


def require() -> None:
    """Raise the install hint (``ConfigError``) unless torch's SummaryWriter (the tensorboard package) imports."""
    _api()


def _native(value: str) -> bool | int | float | str:
    """A param string as the hparams plugin's bool / number / text."""
    if value in ("True", "False"):
        return value == "True"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            continue
    return value


def _table(rows: list[list[str]]) -> str:
    head, *body = rows
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body])


def _scores_text(run: TrackedRun) -> str:
    parts = []
    for split, methods in run.scores.items():
        metrics = sorted({m for figures in methods.values() for m in figures})
        rows = [["method", *metrics]]
        rows += [[method, *(f"{figures[m]:.4g}" if m in figures else "" for m in metrics)]
                 for method, figures in methods.items()]
        parts.append(f"**{split}**\n\n{_table(rows)}")
    return "\n\n".join(parts)


def _write_run(writer_cls: Any, hparams: Any, folder: Path, run: TrackedRun, root: Path) -> None:
    writer = writer_cls(log_dir=str(folder))
    try:
        for point in run.points:
            writer.add_scalar(point.key, point.value, global_step=point.step, walltime=point.timestamp_ms / 1000)
        start_s = run.start_ms / 1000
        present = {p.key: p.value for p in run.points}
        metric_dict = {k: present[k] for k in HPARAM_METRICS if k in present}
        for summary in hparams({k: _native(v) for k, v in run.params.items()}, metric_dict):
            writer.file_writer.add_summary(summary, walltime=start_s)
        status = [["field", "value"], ["run key", run.key]]
        status += [[k, v.replace("|", "\\|")] for k, v in run.tags.items() if k != "library_versions"]
        text = (run.note + "\n\n" if run.note else "") + _table(status)
        writer.add_text("run", text, global_step=0, walltime=start_s)
        config = json.dumps(run.params, indent=1, sort_keys=True)
        writer.add_text("config", "\n".join("    " + line for line in config.splitlines()), global_step=0,
                        walltime=start_s)
        if run.artifacts:
            rows = [["artifact", "path under the run root", "sha256"]]
            rows += [[a.name, os.path.relpath(a.path, root), a.sha256] for a in run.artifacts]
            writer.add_text("artifacts", _table(rows), global_step=0, walltime=start_s)
        if run.scores:
            writer.add_text("scores", _scores_text(run), global_step=0, walltime=start_s)
    finally:
        writer.close()


def export(paths: RunPaths, fold: int, runs: list[TrackedRun]) -> Path:
    """Rewrite ``fold``'s TensorBoard folder from ``runs``; returns it."""
    writer_cls, hparams = _api()
    target = logdir(paths) / fold_tag(fold)
    with sio.staged_directory(target, replace=True) as stage:
        for run in runs:
            _write_run(writer_cls, hparams, stage / run.label, run, paths.root)
    log.debug("%s: %d TensorBoard run(s) written to %s", fold_tag(fold), len(runs), target)
    return target
