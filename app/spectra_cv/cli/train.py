"""``spectra-cv train``: the runbook §8 command, verbatim (``python3 -m src.train`` → ``spectra-cv train``).

A preset (``--preset recipe`` by default) gives every setting; each flag that is given overrides
its field. Flags take underscores as in the runbook; dashed spellings work too. The audit log is
mandatory, as in the runbook.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click

from spectra_cv.cli import CONTEXT_SETTINGS
from spectra_cv.cli.options import GreedyCommand
from spectra_cv.model.mamba_uv import PRIORS

# (flag, click type, target config, field) — flags that override one config field each.
_MODEL = "model"
_OBJ = "objective"
_TRAIN = "train"
OVERRIDES: list[tuple[str, Any, str, str]] = [
    ("d_model", int, _MODEL, "d_model"),
    ("n_layers", int, _MODEL, "n_layers"),
    ("d_state", int, _MODEL, "d_state"),
    ("d_conv", int, _MODEL, "d_conv"),
    ("expand", int, _MODEL, "expand"),
    ("dropout", float, _MODEL, "dropout"),
    ("film_hidden_dim", int, _MODEL, "film_hidden_dim"),
    ("film_dropout", float, _MODEL, "film_dropout"),
    ("out_activation", click.Choice(["sigmoid", "clamp", "none"]), _MODEL, "out_activation"),
    ("scan_backend", click.Choice(["auto", "cuda", "torch", "ref"]), _MODEL, "scan_backend"),
    ("sequence_length", int, _MODEL, "sequence_length"),
    ("reflectance_shift", float, _MODEL, "reflectance_shift"),
    ("reflectance_scale", float, _MODEL, "reflectance_scale"),
    ("prior", click.Choice(list(PRIORS)), _MODEL, "prior"),
    ("prior_rank", int, _MODEL, "prior_rank"),
    ("prior_alpha", float, _MODEL, "prior_alpha"),
    ("sam_weight", float, _OBJ, "sam_weight"),
    ("derivative_weight", float, _OBJ, "derivative_weight"),
    ("derivative_order", int, _OBJ, "derivative_order"),
    ("deriv_weight_roi", float, _OBJ, "deriv_weight_roi"),
    ("deriv_roi_min", float, _OBJ, "deriv_roi_min"),
    ("deriv_roi_max", float, _OBJ, "deriv_roi_max"),
    ("curvature_weight_roi", float, _OBJ, "curvature_weight_roi"),
    ("curvature_mode", click.Choice(["symmetric", "underfill"]), _OBJ, "curvature_mode"),
    ("dip_weight", float, _OBJ, "dip_weight"),
    ("dip_warmup_epochs", int, _OBJ, "dip_warmup_epochs"),
    ("dip_m", int, _OBJ, "dip_m"),
    ("dip_window_half_nm", float, _OBJ, "dip_window_half_nm"),
    ("dip_min_area", float, _OBJ, "dip_min_area"),
    ("dip_w_area", float, _OBJ, "dip_w_area"),
    ("dip_w_equivalent_width", float, _OBJ, "dip_w_equivalent_width"),
    ("dip_w_centroid", float, _OBJ, "dip_w_centroid"),
    ("dip_w_depth", float, _OBJ, "dip_w_depth"),
    ("dip_underfill_factor", float, _OBJ, "dip_underfill_factor"),
    ("dip_detect_sigma_nm", float, _OBJ, "dip_detect_sigma_nm"),
    ("dip_roi_min", float, _OBJ, "dip_roi_min"),
    ("dip_roi_max", float, _OBJ, "dip_roi_max"),
    ("baseline", click.Choice(["local", "continuum", "flat"]), _OBJ, "baseline"),
    ("baseline_guard_nm", float, _OBJ, "baseline_guard_nm"),
    ("seed", int, _TRAIN, "seed"),
    ("epochs", int, _TRAIN, "epochs"),
    ("lr", float, _TRAIN, "lr"),
    ("lr_min", float, _TRAIN, "lr_min"),
    ("warmup_epochs", float, _TRAIN, "warmup_epochs"),
    ("weight_decay", float, _TRAIN, "weight_decay"),
    ("grad_clip", float, _TRAIN, "grad_clip"),
    ("signal_jitter", float, _TRAIN, "signal_jitter"),
    ("signal_jitter_length", float, _TRAIN, "signal_jitter_length"),
    ("early_stop_patience", int, _TRAIN, "early_stop_patience"),
    ("sam_tolerance", float, _TRAIN, "sam_tolerance"),
    ("val_every", int, _TRAIN, "val_every"),
    ("ema_decay", float, _TRAIN, "ema_decay"),
    ("amp_dtype", click.Choice(["bf16", "fp16"]), _TRAIN, "amp_dtype"),
    ("time_budget_s", float, _TRAIN, "time_budget_s"),
    ("device", str, _TRAIN, "device"),
]
# on/off flags: (flag, target, field); "--no_<flag>" turns them off.
SWITCHES: list[tuple[str, str, str]] = [
    ("geometry_film", _MODEL, "film"),
    ("residual", _MODEL, "residual"),
    ("bidirectional", _MODEL, "bidirectional"),
    ("dip_loss", _OBJ, "dip_loss"),
    ("noise2noise", _TRAIN, "noise2noise"),
    ("noise2noise_pairwise", _TRAIN, "noise2noise_pairwise"),
    ("signal_jitter_relative", _TRAIN, "signal_jitter_relative"),
    ("ema", _TRAIN, "ema"),
    ("amp", _TRAIN, "amp"),
    ("cudnn_benchmark", _TRAIN, "cudnn_benchmark"),
    ("tta_reverse", _TRAIN, "tta_reverse"),
    ("checkpoint_blocks", _TRAIN, "checkpoint_blocks"),
    ("deterministic", _TRAIN, "deterministic"),
    ("compile", _TRAIN, "compile"),
]


def _names(flag: str) -> list[str]:
    dashed = flag.replace("_", "-")
    return [f"--{flag}"] + ([f"--{dashed}"] if dashed != flag else [])


def _path_option(flag: str, required: bool = False, help: str = "") -> Any:
    return click.option(*_names(flag), flag, type=click.Path(path_type=Path), required=required, help=help)


def _add_overrides(func: Any) -> Any:
    for flag, kind, target, field in reversed(OVERRIDES):
        func = click.option(*_names(flag), flag, type=kind, default=None, help=f"Override {target}.{field}.")(func)
    for flag, target, field in reversed(SWITCHES):
        decls = "/".join([f"--{flag}", f"--no_{flag}"])
        func = click.option(decls, flag, default=None, help=f"Turn {target}.{field} on/off.")(func)
    return func


def build_run_config(preset_name: str, model_name: str | None, film_features: tuple[str, ...],
                     batch_size: int | None, lambda_scale: str | None, values: dict[str, Any]) -> Any:
    """The preset with every given flag applied (pure: no files read)."""
    from spectra_cv.model.zoo import MODEL_ZOO
    from spectra_cv.train.presets import RunConfig, preset

    base = preset(preset_name)
    changes: dict[str, dict[str, Any]] = {_MODEL: {}, _OBJ: {}, _TRAIN: {}}
    if model_name is not None and model_name != base.model.name:
        if model_name not in MODEL_ZOO:
            from spectra_cv.errors import ConfigError

            raise ConfigError(f"--model {model_name!r} is not in the zoo; choose one of {sorted(MODEL_ZOO)}")
        zoo = MODEL_ZOO[model_name]
        for key in ("name", "d_model", "n_layers", "d_state", "d_conv", "expand"):
            changes[_MODEL][key] = getattr(zoo, key)
    for flag, _kind, target, field in OVERRIDES:
        if values.get(flag) is not None:
            changes[target][field] = values[flag]
    for flag, target, field in SWITCHES:
        if values.get(flag) is not None:
            changes[target][field] = values[flag]
    if batch_size is not None:
        changes[_TRAIN]["batch_size"] = batch_size
    if lambda_scale is not None:
        changes[_OBJ]["normalise_lambda_weights"] = lambda_scale == "mean1"
    features = tuple(film_features) if film_features else base.film_features
    film = changes[_MODEL].get("film", base.model.film)
    if not film:
        features = ()
    changes[_MODEL]["cond_dim"] = max(1, len(features))
    return RunConfig(
        model=dataclasses.replace(base.model, **changes[_MODEL]),
        objective=dataclasses.replace(base.objective, **changes[_OBJ]),
        train=dataclasses.replace(base.train, **changes[_TRAIN]),
        film_features=features,
        preset=preset_name,
    )


@click.command(cls=GreedyCommand, greedy=("film_features",), context_settings=CONTEXT_SETTINGS)
@click.option("--preset", "preset_name", type=click.Choice(["recipe", "cpu_quick"]), default="recipe",
              show_default=True, help="Starting settings; the flags below override them.")
@click.option("--model", "model_name", default=None, help="Zoo model (mamba_tiny_uv, mamba_small_uv).")
@_path_option("train_dir", required=True, help="Data root of the training spectra.")
@_path_option("val_dir", required=True, help="Data root of the validation spectra.")
@_path_option("train_manifest", help="Train manifest (default <train_dir>/manifest.csv).")
@_path_option("val_manifest", help="Validation manifest (default <val_dir>/manifest.csv).")
@_path_option("dose_features_csv", help="Per-spectrum dose features (FiLM).")
@_path_option("dose_sampling_weights_csv", help="Sampling weights; must be uniform (epochs are permutations).")
@_path_option("dose_stats_json", help="FiLM normalisation (default: computed from the train split).")
@_path_option("lambda_weights", help="Per-wavelength loss weights (.npy or lambda_stats.npz).")
@click.option("--lambda_weights_scale", "--lambda-weights-scale", "lambda_scale",
              type=click.Choice(["mean1", "original"]), default=None,
              help="Normalise λ-weights to mean 1 (default) or keep the file's scale.")
@click.option("--film_features", "--film-features", "film_features", multiple=True,
              help="Conditioning features (several values after one flag).")
@click.option("--bs", "--batch_size", "--batch-size", "batch_size", type=int, default=None, help="Batch size.")
@click.option("--val_noise2noise", "--val-noise2noise", is_flag=True,
              help="Accepted for compatibility: validation always scores against leave-one-out means.")
@click.option("--grad_accum", "--grad-accum", type=int, default=1, show_default=True,
              help="Only 1 is supported (the whole dataset fits; lower --bs instead).")
@click.option("--num_workers", "--num-workers", type=int, default=None,
              help="Accepted for compatibility; data live on the device, no workers are used.")
@_path_option("log_dir", help="Where metrics.csv (per-epoch learning curve) goes.")
@_path_option("checkpoint_dir", required=True, help="Where <model>_best.pt and last_state.pt go.")
@_path_option("speed_log_json", help="Per-epoch speed log, rewritten after every epoch.")
@_path_option("audit_log", help="Audit log (mandatory, as in the runbook).")
@_add_overrides
def train(preset_name: str, model_name: str | None, train_dir: Path, val_dir: Path, train_manifest: Path | None,
          val_manifest: Path | None, dose_features_csv: Path | None, dose_sampling_weights_csv: Path | None,
          dose_stats_json: Path | None, lambda_weights: Path | None, lambda_scale: str | None,
          film_features: tuple[str, ...], batch_size: int | None, val_noise2noise: bool, grad_accum: int,
          num_workers: int | None, log_dir: Path | None, checkpoint_dir: Path, speed_log_json: Path | None,
          audit_log: Path | None, **values: Any) -> None:
    """Train a denoiser with early stopping on validation SAM (resumes from last_state.pt)."""
    from spectra_cv.audit import AuditLog
    from spectra_cv.errors import ConfigError
    from spectra_cv.train.run import TrainInputs, TrainOutputs, run_training

    if audit_log is None:
        raise ConfigError("--audit_log is required (every training run keeps an audit trail), "
                          "e.g. --audit_log logs/Track_H_fold_03/auditing_manifest.log")
    if grad_accum != 1:
        raise ConfigError("--grad_accum other than 1 is not supported; lower --bs instead")
    cfg = build_run_config(preset_name, model_name, film_features, batch_size, lambda_scale, values)
    audit = AuditLog(audit_log)
    audit(f"Audit log path: {audit_log}")
    result = run_training(
        cfg,
        TrainInputs(train_dir=train_dir, val_dir=val_dir, train_manifest=train_manifest, val_manifest=val_manifest,
                    dose_features_csv=dose_features_csv, dose_sampling_weights_csv=dose_sampling_weights_csv,
                    dose_stats_json=dose_stats_json, lambda_weights=lambda_weights),
        TrainOutputs(checkpoint_dir=checkpoint_dir, model_name=model_name or cfg.model.name,
                     speed_log_json=speed_log_json, log_dir=log_dir),
        audit=audit,
    )
    click.echo(f"best checkpoint: {result.best_path} (epoch {result.best_epoch}, "
               f"val PSNR {result.best_val['psnr']:.3f} dB, SAM {result.best_val['sam']:.4f}°)")
