"""Denoise the spectra of a manifest with a checkpoint; write one ``_denoised.npy`` per row.

Outputs are mapped by manifest row (never by loader order):
``<output_root>/<relative parent>/<stem>_denoised.npy``, float32 (L,), each written atomically.
A ``denoise_record.json`` written last records the checkpoint and manifest hashes and the row
count, so a rerun can tell complete output from a partial one. The model is run exactly as it
was validated: same conditioning (features and normalisation stored in the checkpoint), same
autocast, no test-time augmentation (the scan is causal; reversed input was never seen).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from spectra_cv import faults
from spectra_cv import io as sio
from spectra_cv.data import loaders, rows
from spectra_cv.data.conditioning import (
    DoseStats,
    angle_cosines,
    conditioning_matrix,
    read_dose_features,
    read_dose_stats,
)
from spectra_cv.device import autocast, resolve_device
from spectra_cv.errors import ConfigError, ModelOutputError
from spectra_cv.io import sha256_file
from spectra_cv.log import get_logger
from spectra_cv.model.checkpoint import load_model
from spectra_cv.paths import denoised_output
from spectra_cv.train.progress import format_duration

log = get_logger("denoise")

RECORD_FILE = "denoise_record.json"


# ``<output_root>/<relative parent>/<stem>_denoised.npy``: the original denoising script's layout
output_path = denoised_output


@dataclass(frozen=True, kw_only=True)
class DenoiseResult:
    """What a denoising pass produced."""

    output_root: Path
    relative_paths: tuple[str, ...]
    noisy: np.ndarray
    """(N, L) float32 inputs (clipped), manifest order."""
    denoised: np.ndarray
    """(N, L) float32 outputs, manifest order."""
    seconds: float
    record: dict


@dataclass(frozen=True)
class ModelPass:
    """The model run over some manifest rows, in memory."""

    noisy: np.ndarray
    """(N, L) float32 inputs (clipped), row order."""
    denoised: np.ndarray
    """(N, L) float32 outputs, row order (all finite)."""
    amp: bool
    """Whether bf16 autocast was used."""
    device: str


def _conditioning(ckpt: dict, manifest: pd.DataFrame, dose_features_csv: Path | None,
                  dose_stats_json: Path | None, film_features: tuple[str, ...] | None) -> np.ndarray | None:
    features = tuple(ckpt.get("film_features") or ())
    if film_features and not features:
        log.warning("the checkpoint was trained without dose conditioning (no FiLM): --film-features %s "
                    "and the dose files are not used", " ".join(film_features))
        return None
    if film_features and tuple(film_features) != features:
        raise ConfigError(
            f"--film-features {list(film_features)} differ from the checkpoint's {list(features)}; "
            "the model must see the conditioning it was trained on (drop the flag to use the checkpoint's)"
        )
    if not features:
        return None
    stored = ckpt.get("dose_stats")
    if stored is None:
        raise ConfigError("checkpoint has FiLM features but no dose statistics; it was not written by spectra-cv train")
    stats = DoseStats(features=tuple(stored["features"]), mean=tuple(stored["mean"]), std=tuple(stored["std"]))
    if dose_stats_json is not None:
        given = read_dose_stats(dose_stats_json, features)
        if not (np.allclose(given.mean, stats.mean, rtol=1e-5, atol=1e-6)
                and np.allclose(given.std, stats.std, rtol=1e-5, atol=1e-6)):
            raise ConfigError(
                f"{dose_stats_json}: differs from the dose statistics the checkpoint was trained with; "
                "drop --dose-stats-json (the checkpoint's are used) or pass the training run's file"
            )
    if dose_features_csv is None:
        raise ConfigError("this checkpoint is FiLM-conditioned: pass --dose-features-csv (per-spectrum dose features)")
    return conditioning_matrix(manifest, read_dose_features(dose_features_csv), features, stats)


def denoise_frame(
    *,
    checkpoint: Path,
    frame: pd.DataFrame,
    root_dir: Path,
    label: str,
    batch_size: int = 64,
    device: str = "auto",
    amp: bool = False,
    dose_features_csv: Path | None = None,
    dose_stats_json: Path | None = None,
    film_features: tuple[str, ...] | None = None,
    sequence_length: int | None = None,
) -> ModelPass:
    """Run the checkpoint on the manifest rows ``frame`` (``label`` names them in errors), in memory.

    The row contract is checked first; a non-finite output is ``ModelOutputError`` naming its row.
    """
    dev = resolve_device(device)
    model, ckpt = load_model(checkpoint, map_location=dev)
    cfg = model.config
    if sequence_length is not None and sequence_length != cfg.sequence_length:
        raise ConfigError(f"--sequence-length {sequence_length} differs from the model's {cfg.sequence_length}")
    if batch_size < 1:
        raise ConfigError("--batch-size must be ≥ 1")
    rows.check_manifest(frame, root_dir, label)  # the row contract, before anything is read or written
    cos = angle_cosines(frame, label)  # an input channel: a bad label is refused before anything is read
    rel = frame["relative_path"].astype(str).tolist()
    grid = loaders.read_grid(root_dir, cfg.sequence_length)
    stored_grid = ckpt.get("wavelength")
    if stored_grid is not None and not np.allclose(grid, np.asarray(stored_grid)):
        raise ConfigError(f"{root_dir}: wavelength grid differs from the one the checkpoint was trained on")
    cond = _conditioning(ckpt, frame, dose_features_csv, dose_stats_json, film_features)
    noisy = loaders.load_spectra(root_dir, rel, grid, clip=True)
    lam = torch.as_tensor(2.0 * (grid - grid[0]) / (grid[-1] - grid[0]) - 1.0, dtype=torch.float32, device=dev)
    x_all = torch.as_tensor(noisy, device=dev)
    cos_all = torch.as_tensor(cos, device=dev)
    cond_all = torch.as_tensor(cond, device=dev) if cond is not None else None
    out = np.empty_like(noisy)
    use_amp = amp and dev.type == "cuda"
    progress = _Progress(label, len(rel))
    with torch.no_grad(), autocast(dev, use_amp):
        for start in range(0, len(rel), batch_size):
            sl = slice(start, start + batch_size)
            refl = x_all[sl]
            inputs = torch.stack([refl, lam.expand_as(refl), cos_all[sl, None].expand_as(refl)], dim=1)
            pred = model(inputs, cond_all[sl] if cond_all is not None else None)
            out[sl] = pred[:, 0, :].float().cpu().numpy()
            progress.update(min(len(rel), start + batch_size))
    bad = ~np.isfinite(out).all(axis=1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ModelOutputError(
            f"{label} row {first + 1}: {rel[first]}: the model's output has "
            f"{int((~np.isfinite(out[first])).sum())} NaN/inf value(s) ({int(bad.sum())} row(s) affected); "
            f"nothing was written. The checkpoint {checkpoint} is broken (non-finite weights?): retrain it"
        )
    return ModelPass(noisy=noisy, denoised=out, amp=use_amp, device=str(dev))


class _Progress:
    """Logs how far a denoising pass is (spectra done, rate, ETA) every ``every_s`` seconds and at the end."""

    def __init__(self, label: str, total: int, every_s: float = 15.0) -> None:
        self.label, self.total, self.every_s = label, total, every_s
        self.t0 = self.shown = time.perf_counter()

    def update(self, done: int) -> None:
        now = time.perf_counter()
        if done < self.total and now - self.shown < self.every_s:
            return
        self.shown = now
        rate = done / max(now - self.t0, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else None
        log.info("denoising %s: %d/%d spectra (%.1f/s, elapsed %s, ETA %s)", self.label, done, self.total, rate,
                 format_duration(now - self.t0), format_duration(eta))


def denoise_manifest(
    *,
    checkpoint: Path,
    manifest: Path,
    root_dir: Path,
    output_root: Path,
    batch_size: int = 64,
    device: str = "auto",
    amp: bool = False,
    dose_features_csv: Path | None = None,
    dose_stats_json: Path | None = None,
    film_features: tuple[str, ...] | None = None,
    sequence_length: int | None = None,
) -> DenoiseResult:
    """Denoise every row of ``manifest`` (spectra under ``root_dir``) into ``output_root``."""
    t0 = time.perf_counter()
    frame = loaders.read_manifest(manifest)
    done = denoise_frame(
        checkpoint=checkpoint, frame=frame, root_dir=root_dir, label=str(manifest), batch_size=batch_size,
        device=device, amp=amp, dose_features_csv=dose_features_csv, dose_stats_json=dose_stats_json,
        film_features=film_features, sequence_length=sequence_length)
    rel, out = frame["relative_path"].astype(str).tolist(), done.denoised
    record_path = output_root / RECORD_FILE
    if record_path.exists():
        record_path.unlink()  # the old record no longer describes what is on disk
    for i, (path, spectrum) in enumerate(zip(rel, out, strict=True)):
        sio.atomic_save_npy(output_path(output_root, path), spectrum, durable=False)
        if i == len(rel) // 2:
            faults.point("denoise_midway")
    os.sync()
    seconds = time.perf_counter() - t0
    record = {
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": sha256_file(checkpoint),
        "manifest": str(manifest),
        "manifest_sha256": sha256_file(manifest),
        "rows": len(rel),
        "amp": done.amp,
        "device": done.device,
        "seconds": round(seconds, 3),
        "spectra_per_s": round(len(rel) / seconds, 1),
    }
    sio.atomic_write_json(record_path, record)
    log.info("Saved denoised spectra for %d entries to %s (%.1f spectra/s)", len(rel), output_root, len(rel) / seconds)
    return DenoiseResult(output_root=output_root, relative_paths=tuple(rel), noisy=done.noisy, denoised=out,
                         seconds=seconds, record=record)


def is_complete(output_root: Path, checkpoint: Path, manifest: Path) -> bool:
    """Whether ``output_root`` holds a finished pass of this checkpoint over this manifest."""

    record_path = output_root / RECORD_FILE
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # absent, or damaged: the pass is done again
        return False
    if not isinstance(record, dict):
        return False
    return (record.get("checkpoint_sha256") == sha256_file(checkpoint)
            and record.get("manifest_sha256") == sha256_file(manifest))
