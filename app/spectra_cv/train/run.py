"""A training run from files: read the splits, build model and objective, ``fit``, checkpoint.

``TrainInputs`` names the files (the runbook's flags); ``run_training`` does the rest. The best
checkpoint carries the model config, the whole run config, the FiLM features with the dose
statistics used, data fingerprints, library versions, code version and seed, so denoising needs
nothing but the checkpoint and the spectra.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from spectra_cv import provenance
from spectra_cv.data import contract, loaders
from spectra_cv.data.conditioning import (
    DoseStats,
    compute_dose_stats,
    conditioning_matrix,
    no_conditioning,
    read_dose_features,
    read_dose_stats,
)
from spectra_cv.data.splits import Split, split_of
from spectra_cv.device import resolve_device
from spectra_cv.errors import ConfigError, DataContractError
from spectra_cv.log import get_logger
from spectra_cv.metrics import FittedBaseline
from spectra_cv.model import scan_cpu
from spectra_cv.model.backends import resolve_backend
from spectra_cv.model.checkpoint import model_state_for_save
from spectra_cv.model.mamba_uv import MambaUV
from spectra_cv.model.zoo import count_parameters
from spectra_cv.objective import Objective
from spectra_cv.train import numerics
from spectra_cv.train.loop import FitResult, TrainState, fit
from spectra_cv.train.origin import Origin
from spectra_cv.train.presets import RunConfig
from spectra_cv.train.prior import install_prior
from spectra_cv.train.schedule import Ema
from spectra_cv.train.tensors import DeviceSplit, with_conditioning

log = get_logger("train")


@dataclass(frozen=True, kw_only=True)
class TrainInputs:
    """Input files of a run (the original trainer's flags)."""

    train_dir: Path
    val_dir: Path
    train_manifest: Path | None = None
    val_manifest: Path | None = None
    dose_features_csv: Path | None = None
    dose_sampling_weights_csv: Path | None = None
    dose_stats_json: Path | None = None
    lambda_weights: Path | None = None
    validate_on_train: bool = False
    """The final model: the validation manifest is the training data (fixed epochs, nothing held out)."""
    manifest_labels: tuple[str, str] | None = None
    """How the train and validation manifests are named in logs and the checkpoint (default: their paths;
    a staged retrain names the paths its manifests will have once swapped in)."""
    train_split: Split | None = None
    """The train manifest's spectra already read (``data.splits.read_split``; a fold's, which fitted its
    baselines on them), used instead of reading them again."""


@dataclass(frozen=True, kw_only=True)
class TrainOutputs:
    """Where a run writes."""

    checkpoint_dir: Path
    model_name: str = "mamba_tiny_uv"
    speed_log_json: Path | None = None
    log_dir: Path | None = None
    """Where the per-epoch ``metrics.csv`` goes (learning curves)."""

    @property
    def best_name(self) -> str:
        return f"{self.model_name}_best.pt"


def _manifest(directory: Path, explicit: Path | None) -> tuple[pd.DataFrame, str]:
    path = explicit if explicit is not None else directory / contract.MANIFEST_FILE
    return loaders.read_manifest(path), str(path)


def _check_sampling_weights(path: Path | None, manifest: pd.DataFrame) -> None:
    """Uniform weights ⇒ permutation epochs. Anything else is refused, never silently ignored."""
    if path is None:
        return
    if not path.is_file():
        raise DataContractError(f"{path}: --dose_sampling_weights_csv not found")
    weights = pd.read_csv(path, dtype={"relative_path": str})
    if "sampling_weight" not in weights.columns or "relative_path" not in weights.columns:
        raise DataContractError(f"{path}: needs columns relative_path and sampling_weight")
    sub = weights.set_index("relative_path").reindex(manifest["relative_path"])["sampling_weight"]
    if sub.isna().any():
        missing = sub[sub.isna()].index[0]
        raise DataContractError(f"{path}: no sampling weight for {missing}; regenerate with `spectra-cv data stats`")
    if not np.allclose(sub.to_numpy(dtype=float), float(sub.iloc[0])):
        raise ConfigError(
            f"{path}: non-uniform sampling weights are not supported (epochs are permutations); "
            "drop --dose_sampling_weights_csv or make the weights uniform"
        )
    log.info("sampling weights in %s are uniform: epochs are permutations of the train split", path)


DIP_WEIGHT_WARNING = 0.05
"""Above this, with λ-weights of mean 1, the dip term (O(1)) dwarfs the fidelity terms (~0.005)."""


def warn_dip_balance(cfg: RunConfig) -> bool:
    """Warn when the dip term will swamp the fidelity terms; returns whether it warned."""
    obj = cfg.objective
    if obj.dip_loss and obj.normalise_lambda_weights and obj.dip_weight > DIP_WEIGHT_WARNING:
        log.warning(
            "--dip_weight %g with λ-weights normalised to mean 1: the dip term (~1) will be hundreds of times "
            "the fidelity terms (~0.005); on the real data 1.0 drove validation PSNR to 18.8 dB in 3 epochs. "
            "The presets use %g (the original's balance); --lambda_weights_scale original keeps the old scale",
            obj.dip_weight, 0.002,
        )
        return True
    return False


def run_training(
    cfg: RunConfig,
    inputs: TrainInputs,
    outputs: TrainOutputs,
    audit: Callable[[str], None] = lambda message: None,
    run_name: str = "train",
    on_resume: Callable[[int, Path], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    baselines: Callable[[], Mapping[str, FittedBaseline]] | None = None,
    force: bool = False,
) -> FitResult:
    """Train ``cfg`` on ``inputs``; returns where the best checkpoint is and how the run ended.

    ``baselines``: gives the baselines already fitted on the train split (a fold's), called only when
    the model has a prior, which is then taken from them instead of fitted again. A resumable state
    left by a run with other settings or inputs is refused (``ResumeRefused``); ``force`` discards it."""
    t0 = time.time()
    device = resolve_device(cfg.train.device)
    numerics.configure(cfg.train, device)  # before anything touches CUDA (cuBLAS reads its setting once)
    numerics.check_compile(cfg.train, device)
    if device.type == "cpu":
        scan_cpu.load()  # a first build (~1 minute, once per machine) happens here, not inside the time budget
    torch.manual_seed(cfg.train.seed)
    grid = loaders.read_grid(inputs.train_dir, cfg.model.sequence_length)
    val_grid = loaders.read_grid(inputs.val_dir, cfg.model.sequence_length)
    if not np.allclose(grid, val_grid):
        raise DataContractError(f"{inputs.val_dir}: wavelength grid differs from {inputs.train_dir}")
    train_df, train_name = _manifest(inputs.train_dir, inputs.train_manifest)
    val_df, val_name = _manifest(inputs.val_dir, inputs.val_manifest)
    if inputs.manifest_labels is not None:
        train_name, val_name = inputs.manifest_labels
    log.info("Train manifest: %s", train_name)
    log.info("Validation manifest: %s", val_name)
    _check_sampling_weights(inputs.dose_sampling_weights_csv, train_df)

    features = cfg.film_features
    stats: DoseStats | None = None
    if features:
        if inputs.dose_features_csv is None:
            raise ConfigError("--geometry_film needs --dose_features_csv (the conditioning features per spectrum)")
        dose_df = read_dose_features(inputs.dose_features_csv)
        if inputs.dose_stats_json is not None:
            stats = read_dose_stats(inputs.dose_stats_json, features)
        else:
            stats = compute_dose_stats(train_df, dose_df, features)
            log.info("dose stats computed from the train split (no --dose_stats_json)")
        train_cond = conditioning_matrix(train_df, dose_df, features, stats)
        val_cond = conditioning_matrix(val_df, dose_df, features, stats)
    else:
        train_cond, val_cond = no_conditioning(len(train_df)), no_conditioning(len(val_df))

    weights = None
    if inputs.lambda_weights is not None:
        weights = loaders.read_lambda_weights(inputs.lambda_weights, grid.shape[0])
    else:
        log.info("no --lambda_weights: every wavelength weighs the same")

    read = inputs.train_split if inputs.train_split is not None else split_of(inputs.train_dir, train_df, grid,
                                                                               train_name)
    if read.relative_paths != tuple(train_df["relative_path"].astype(str)):
        raise ValueError("TrainInputs.train_split does not hold the train manifest's rows")
    train_arrays = with_conditioning(read, train_cond, train_name)
    val_arrays = with_conditioning(split_of(inputs.val_dir, val_df, grid, val_name), val_cond, val_name)
    overlap = set(train_arrays.relative_paths) & set(val_arrays.relative_paths)
    if overlap and inputs.train_dir.resolve() == inputs.val_dir.resolve() and not inputs.validate_on_train:
        raise DataContractError(
            f"{len(overlap)} spectra are in both the train and validation manifests (e.g. {sorted(overlap)[0]}); "
            "regenerate the fold manifests"
        )
    train = DeviceSplit(train_arrays, grid, device)
    val = DeviceSplit(val_arrays, grid, device)
    log.info("Using device: %s", device)
    log.info("Training spectra: %d | batches per epoch: %d", len(train), -(-len(train) // cfg.train.batch_size))
    log.info("Validation spectra: %d", len(val))

    model = MambaUV(cfg.model).to(device)
    model.checkpoint_blocks = cfg.train.checkpoint_blocks
    numerics.warn_nondeterministic_backend(cfg.train, resolve_backend(cfg.model.scan_backend, device))
    if cfg.train.compile:
        model.compile_blocks()
        log.info("torch.compile: each block compiled around its scan (the first steps include compile time)")
    if cfg.model.prior != "none":
        install_prior(model, train.noisy, train.loo, train_arrays.groups,
                      fitted=baselines() if baselines is not None else None)
    objective = Objective(cfg.objective, grid, weights).to(device)
    n_params = count_parameters(model)
    log.info("Model %s: %s parameters", cfg.model.name, f"{n_params:,}")
    warn_dip_balance(cfg)
    if cfg.train.tta_reverse:
        log.warning("--tta_reverse is not applied: the scan is causal and never saw reversed spectra; "
                    "validation and deployment use the same forward pass")

    run_hash = cfg.hash()
    extra_static: dict[str, Any] = {
        "run_config": cfg.to_dict(),
        "config_hash": run_hash,
        "film_features": list(features),
        "dose_stats": stats.to_json_dict() if stats is not None else None,
        "wavelength": [float(x) for x in grid],
        "data_fingerprint": {"train": train_arrays.fingerprint, "val": val_arrays.fingerprint},
        "manifests": {"train": train_name, "val": val_name},
        "seed": cfg.train.seed,
        "library_versions": provenance.library_versions(),
        "code_version": provenance.code_version(),
        "image": provenance.image(),
    }

    def make_checkpoint(m: torch.nn.Module, ema: Ema | None, state: TrainState) -> dict[str, Any]:
        extra = {
            **extra_static,
            "epoch": state.epoch,
            "sam_deg": float(state.best_sam),
            "val_metrics": {k: float(v) for k, v in state.best_val.items()},
        }
        return model_state_for_save(m, ema.module if ema is not None else None, extra=extra)

    audit(f"Training started: {cfg.model.name} ({n_params:,} parameters) on {device}, "
          f"{len(train)} train / {len(val)} val spectra")
    result = fit(
        model=model, train=train, val=val, objective=objective, cfg=cfg.train, device=device,
        checkpoint_dir=outputs.checkpoint_dir, best_name=outputs.best_name, make_checkpoint=make_checkpoint,
        config_hash=run_hash, run_name=run_name, speed_log=outputs.speed_log_json,
        history_csv=outputs.log_dir / "metrics.csv" if outputs.log_dir is not None else None, audit=audit,
        on_resume=on_resume, on_epoch=on_epoch, origin=Origin.of(cfg.to_dict(), train_arrays, val_arrays, weights),
        force=force,
    )
    audit(f"Training stopped after {result.epochs_run} epochs ({result.stopped_because}); best epoch "
          f"{result.best_epoch}: val PSNR {result.best_val.get('psnr', float('nan')):.3f} dB, "
          f"SAM {result.best_val.get('sam', float('nan')):.4f}°")
    log.info("%s: %.1f s in all", run_name, time.time() - t0)
    return result
