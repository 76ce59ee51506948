"""``fold_summary.csv``: one row per fold, derived from that fold's events only.

The rows are built here (``summary_row``, ``render_summary``); the coordinator is the file's only
writer. Every cell is a pure function of the events and of whether a process holds the fold's
lock, so ``spectra-cv coordinator --rebuild`` regenerates the file byte for byte.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from spectra_cv.errors import DataContractError
from spectra_cv.io import TEXT_ERRORS, encode_text
from spectra_cv.metrics.baselines import BASELINE_NAMES
from spectra_cv.paths import RunPaths
from spectra_cv.runs import events as ev
from spectra_cv.runs.rerun import finished_run, is_staged

#: Headline metrics of the model on the test split (against leave-one-out means).
TEST_METRICS = ("psnr_mean", "psnr_std", "sam_deg_mean", "sam_deg_std", "rmse_mean", "roi_psnr_mean",
                "dip_centroid_error_nm_mean", "dip_area_error_pct_mean", "dip_depth_mae_mean")
#: The baselines (docs/baselines.md), fitted on the fold's train split and scored on its test split.
BASELINES = BASELINE_NAMES

#: Control-sample figures: the model's PSNR and SAM, and the PSNR of ridge and of the best linear method.
CONTROL_COLUMNS = ("control_psnr_mean", "control_sam_deg_mean", "control_baseline_ridge_psnr_mean",
                   "control_baseline_ridge_wiener_psnr_mean")

SUMMARY_COLUMNS: tuple[str, ...] = (
    "fold", "status",
    # a forced retrain beside the finished result: running | interrupted | failed: <why> | swapping |
    # swap interrupted … ("" when none)
    "retrain",
    # the original orchestrator's columns (paths relative to the run root)
    "train_manifest", "val_manifest", "test_manifest", "checkpoint", "train_log", "audit_log",
    "events", "metrics_json", "denoised_root",
    "started_at", "finished_at", "train_seconds", "denoise_seconds", "total_seconds",
    "best_epoch", "epochs_run", "stopped_because", "val_psnr_mean", "val_sam_deg_mean",
    *(f"test_{m}" for m in TEST_METRICS),
    *(f"baseline_{b}_psnr_mean" for b in BASELINES),
    # the treatments left out of CV (the zero-dose control), scored by every fold's model
    *CONTROL_COLUMNS,
    "checkpoint_sha256", "config_hash", "preset", "model", "parameters", "seed", "data_root",
    "data_fingerprint", "code_version", "image", "library_versions", "error",
)


def read_summary(path: str | Path) -> pd.DataFrame:
    """The summary as a frame (one row per fold, sorted by fold); a wrong header is an error."""
    p = Path(path)
    if not p.is_file():
        raise DataContractError(f"{p}: no fold summary yet; run `spectra-cv cv` (or a fold and the coordinator)")
    fix = "it is written only by the coordinator: `spectra-cv coordinator --rebuild` rewrites it from the events"
    try:
        frame = pd.read_csv(p, dtype={"fold": int}, keep_default_na=False, na_values=[""],
                            encoding_errors=TEXT_ERRORS)
    except Exception as exc:  # noqa: BLE001 - pandas' parser, decoding and conversion errors alike
        raise DataContractError(f"{p}: unreadable fold summary ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}); {fix}") from exc
    missing = [c for c in SUMMARY_COLUMNS if c not in frame.columns]
    if missing:
        raise DataContractError(f"{p}: not a spectra-cv fold summary (missing columns {missing[:5]}); {fix}")
    return frame.sort_values("fold").reset_index(drop=True)


def _rel(path: Path) -> str:
    return path.as_posix()


def _shown_run(events: list[ev.Event]) -> tuple[list[ev.Event], list[ev.Event] | None]:
    """(the run the row describes, a retrain in progress beside it or None).

    While a forced retrain works in its staging places the finished result is still the live one,
    so the row keeps describing it and names the retrain's state in ``retrain``."""
    current = ev.current_run(events)
    if is_staged(current) and ev.run_status(current) != "completed":
        finished = finished_run(events)
        if finished is not None:
            return finished, current
    return current, None


def _live(status: str, alive: bool) -> str:
    return "interrupted" if status == "running" and not alive else status


def summary_row(fold: int, events: list[ev.Event], alive: bool = True) -> dict[str, Any]:
    """The fold's summary row, from its events (paths relative to the run root).

    ``alive``: whether a process holds the fold's lock. A run whose events end without an outcome
    and whose lock is free was killed: it shows as ``interrupted``.
    """
    rel = RunPaths(root=Path("."))
    run, retrain = _shown_run(events)
    row: dict[str, Any] = {c: "" for c in SUMMARY_COLUMNS}
    status = _live(ev.run_status(run), alive)
    row.update({
        "fold": fold, "status": status,
        "train_manifest": _rel(rel.manifest(fold, "train")), "val_manifest": _rel(rel.manifest(fold, "val")),
        "test_manifest": _rel(rel.manifest(fold, "test")), "checkpoint": _rel(rel.best_checkpoint(fold)),
        # (the model name of the run, below, when the events name it)
        "train_log": _rel(rel.train_log(fold)), "audit_log": _rel(rel.audit_log(fold)),
        "events": _rel(rel.events(fold)), "metrics_json": _rel(rel.metrics_json(fold)),
        "denoised_root": _rel(rel.denoised_root(fold)),
    })
    if retrain is not None:
        state = _live(ev.run_status(retrain), alive)
        if any(e.type == ev.SWAP for e in retrain):
            state = "swapping" if alive else "swap interrupted (rerun the fold to finish it)"
        failure = ev.last_of(retrain, ev.FAILED)
        row["retrain"] = f"{state}: {failure.message}" if state == "failed" and failure is not None else state
    start = ev.last_of(run, ev.START)
    if start is not None:
        d = start.data
        if d.get("model"):
            row["checkpoint"] = _rel(rel.best_checkpoint(fold, str(d["model"])))
        row.update(started_at=start.time, config_hash=d.get("config_hash", ""), preset=d.get("preset", ""),
                   model=d.get("model", ""), seed=d.get("seed", ""), data_root=d.get("data_root", ""),
                   data_fingerprint=d.get("data_digest", ""),
                   code_version=d.get("code_version", ""), image=d.get("image") or "",
                   library_versions=json.dumps(d.get("library_versions", {}), sort_keys=True))
    trained = ev.last_of(run, ev.TRAIN_DONE)
    if trained is not None:
        d = trained.data
        row.update(best_epoch=d.get("best_epoch", ""), epochs_run=d.get("epochs_run", ""),
                   stopped_because=d.get("stopped_because", ""), val_psnr_mean=d.get("val_psnr", ""),
                   val_sam_deg_mean=d.get("val_sam", ""), checkpoint_sha256=d.get("checkpoint_sha256", ""),
                   parameters=d.get("parameters", ""), train_seconds=d.get("seconds", ""))
    inferred = [e for e in run if e.type == ev.INFER_DONE]
    if inferred:
        latest = {e.data.get("split"): float(e.data.get("seconds", 0.0)) for e in inferred}
        row["denoise_seconds"] = round(sum(latest.values()), 3)
    evaluated = ev.last_of(run, ev.EVALUATED)
    if evaluated is not None:
        test = evaluated.data.get("test", {})
        for metric in TEST_METRICS:
            row[f"test_{metric}"] = test.get("model", {}).get(metric, "")
        for name in BASELINES:
            row[f"baseline_{name}_psnr_mean"] = test.get(name, {}).get("psnr_mean", "")
        control = evaluated.data.get("control") or {}
        row.update(control_psnr_mean=control.get("model", {}).get("psnr_mean", ""),
                   control_sam_deg_mean=control.get("model", {}).get("sam_deg_mean", ""),
                   control_baseline_ridge_psnr_mean=control.get("ridge", {}).get("psnr_mean", ""),
                   control_baseline_ridge_wiener_psnr_mean=control.get("ridge_wiener", {}).get("psnr_mean", ""))
    end = next((e for e in reversed(run) if e.type in (ev.COMPLETED, ev.FAILED)), None)
    if end is not None and row["status"] in ("completed", "failed"):
        row["finished_at"] = end.time
        row["total_seconds"] = end.data.get("total_seconds", "")
        if end.type == ev.FAILED:
            row["error"] = end.data.get("error", end.message or "")
    return row




def render_summary(rows: list[dict[str, Any]]) -> bytes:
    frame = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    return encode_text(frame.to_csv(index=False, lineterminator="\n", float_format="%.6g"))
