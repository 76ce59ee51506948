"""The production model: the cross-validated config, trained on every sample, then the corpus denoised.

Once the folds have validated the settings, train one model on all the data
(shipping the best fold's model would waste a fifth of it). There is no held-out split left to
stop on, so the model trains for a fixed number of epochs — the median of the folds' best epochs
— and its one validation pass (on the training data, logged as such) only writes the checkpoint.
The control treatment, left out of the folds, is included.

Outputs: ``checkpoints/final/mamba_tiny_uv_final.pt``, ``denoised/final/…``, ``logs/final/``
(train.log, auditing_manifest.log — this process is their only writer) and
``artifacts/cross_validation/final_model.json``. A killed run resumes from ``last_state.pt``; the
corpus denoised before stays in place until the new one is whole.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spectra_cv import io as sio
from spectra_cv import provenance
from spectra_cv.audit import AuditLog
from spectra_cv.configs import difference
from spectra_cv.data import contract, loaders, rows
from spectra_cv.denoise import denoise_manifest
from spectra_cv.device import resolve_device
from spectra_cv.errors import ConfigError, Refused
from spectra_cv.log import get_logger, log_to_file
from spectra_cv.paths import RunPaths
from spectra_cv.runs.locks import file_lock
from spectra_cv.runs.rerun import finished_folds
from spectra_cv.train.presets import RunConfig
from spectra_cv.train.run import TrainInputs, TrainOutputs, run_training

log = get_logger("final")


@dataclass(frozen=True)
class CvRecord:
    """What the completed folds agree on."""

    config: RunConfig
    config_hash: str
    best_epochs: dict[int, int]

    @property
    def epochs(self) -> int:
        return max(1, int(round(statistics.median(self.best_epochs.values()))))


def cv_record(paths: RunPaths, allow_mixed_config: bool = False) -> CvRecord:
    """The run's config and the folds' best epochs, from the completed folds' events."""
    configs: dict[str, dict[str, Any]] = {}
    best: dict[int, int] = {}
    by_fold: dict[int, str] = {}
    for fold, done in finished_folds(paths).items():  # the live results (a retrain may run beside one)
        if done.config is None or done.best_epoch is None:
            continue
        configs[done.config_hash] = done.config
        by_fold[fold] = done.config_hash
        best[fold] = done.best_epoch
    if not best:
        raise ConfigError(f"no completed fold under {paths.root / 'logs'}; run `spectra-cv cv` first "
                          "(the final model reuses the folds' config and best epochs)")
    if len(configs) > 1 and not allow_mixed_config:
        listed = ", ".join(f"fold {f}: {h[:12]}" for f, h in sorted(by_fold.items()))
        raise ConfigError(f"the completed folds used different configs ({listed}); the final model needs one. "
                          "Rerun the odd folds, or pass --allow-mixed-config to use the latest fold's")
    latest = by_fold[max(by_fold)]
    return CvRecord(config=RunConfig.from_dict(configs[latest]), config_hash=latest, best_epochs=best)


@dataclass(frozen=True)
class FinalOutcome:
    checkpoint: Path
    denoised_root: Path
    record: Path
    epochs: int


def run_final(paths: RunPaths, data_root: Path, metadata_dir: Path, device: str = "auto",
              infer_batch_size: int = 64, allow_mixed_config: bool = False, force: bool = False,
              expected: RunConfig | None = None) -> FinalOutcome:
    """Train on every sample for the folds' median best epoch, then denoise the whole corpus.

    A killed run resumes from its ``last_state.pt``, unless the folds' config or the corpus changed
    since (refused, ``ResumeRefused``); ``force`` trains afresh. ``expected``: the config the folds
    must have run (a config file's), else ``Refused`` naming what differs."""

    resolve_device(device)  # a GPU that is not there is refused before anything is written
    cv = cv_record(paths, allow_mixed_config)
    if expected is not None and expected.hash() != cv.config_hash:
        changes = difference(cv.config.to_dict(), expected.to_dict())
        raise Refused(f"the folds ran another config than the config file ({changes}); nothing was done. "
                      "Run `spectra-cv final` without --config to use "
                      "the folds' config, or rerun the folds with this file (`spectra-cv cv --config …`)")
    manifest = data_root / contract.MANIFEST_FILE
    rows.check_manifest(loaders.read_manifest(manifest), data_root, str(manifest))  # before anything is written
    log_dir, ckpt_dir = paths.final_log_dir, paths.final_checkpoint_dir
    with file_lock(log_dir / ".final.lock", "the final-model run"):
        audit = AuditLog(log_dir / "auditing_manifest.log")
        cfg = cv.config
        train_cfg = dataclasses.replace(
            cfg.train, device=device, epochs=cv.epochs, val_every=cv.epochs, early_stop_patience=cv.epochs + 1,
            time_budget_s=0.0,
        )
        cfg = dataclasses.replace(cfg, train=train_cfg)
        audit(f"Starting final model: config {cv.config_hash[:12]}, {cv.epochs} epochs (median best epoch of "
              f"folds {sorted(cv.best_epochs)}: {sorted(cv.best_epochs.values())}), all spectra of {manifest}")
        try:
            meta = metadata_dir
            film = bool(cfg.film_features)
            t0 = time.perf_counter()
            with log_to_file(log_dir / "train.log"):
                log.info("validation during the final run scores the training data itself (nothing is held out)")
                result = run_training(
                    cfg,
                    TrainInputs(train_dir=data_root, val_dir=data_root, train_manifest=manifest, val_manifest=manifest,
                                dose_features_csv=meta / contract.DOSE_FEATURES_FILE if film else None,
                                dose_stats_json=meta / contract.DOSE_STATS_FILE if film else None,
                                lambda_weights=data_root / contract.LAMBDA_STATS_FILE, validate_on_train=True),
                    TrainOutputs(checkpoint_dir=ckpt_dir, model_name=cfg.model.name,
                                 speed_log_json=log_dir / "speed.json", log_dir=log_dir),
                    audit=audit, run_name="final", force=force,
                )
            train_s = time.perf_counter() - t0
            final = ckpt_dir / f"{cfg.model.name}_final.pt"
            sio.atomic_write_bytes(final, result.best_path.read_bytes())
            sha = sio.sha256_file(final)
            audit(f"Final checkpoint ready: {final} (sha256 {sha[:12]})")
            out = paths.final_denoised
            audit(f"Starting inference for all -> {out}")
            # built beside the corpus denoised before and swapped in whole: a kill leaves the old one in place
            with log_to_file(log_dir / "inference_all.log"), sio.staged_directory(out, replace=True) as stage:
                denoised = denoise_manifest(checkpoint=final, manifest=manifest, root_dir=data_root,
                                            output_root=stage, batch_size=infer_batch_size, device=device,
                                            dose_features_csv=meta / contract.DOSE_FEATURES_FILE if film else None)
            audit(f"Completed inference for all ({len(denoised.relative_paths)} spectra)")
            record = paths.artifacts / "final_model.json"
            sio.atomic_write_json(record, {
                "checkpoint": str(final), "checkpoint_sha256": sha, "config_hash": cv.config_hash,
                "config": cfg.to_dict(), "epochs": cv.epochs, "fold_best_epochs": cv.best_epochs,
                "spectra": len(denoised.relative_paths), "denoised_root": str(out), "train_seconds": round(train_s, 1),
                "denoise_seconds": round(denoised.seconds, 1), "code_version": provenance.code_version(),
                "image": provenance.image(), "library_versions": provenance.library_versions(),
            })
            audit("Final model completed")
        except Refused as exc:
            audit(f"Final model refused: {exc}")
            raise
        except Exception as exc:
            audit(f"Final model failed: {exc}")
            raise
    return FinalOutcome(checkpoint=final, denoised_root=out, record=record, epochs=cv.epochs)
