"""``spectra-cv train``: the original training command's flags, verbatim (``python3 -m src.train`` →
``spectra-cv train``).

A preset (``--preset recipe`` by default) gives every setting; each flag that is given overrides
its field. The config flags are generated from the config fields (``train.flags``: one per field,
help from its documentation); they take underscores as in the runbook, dashed spellings work too.
The audit log is mandatory, as in the runbook.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from spectra_cv.cli import CONTEXT_SETTINGS
from spectra_cv.cli.options import GreedyCommand
from spectra_cv.train.flags import build_run_config, flags
from spectra_cv.train.presets import PRESETS


def _names(flag: str) -> list[str]:
    dashed = flag.replace("_", "-")
    return [f"--{flag}"] + ([f"--{dashed}"] if dashed != flag else [])


def _path_option(flag: str, required: bool = False, help: str = "") -> Any:
    return click.option(*_names(flag), flag, type=click.Path(path_type=Path), required=required, help=help)


def config_options(func: Any) -> Any:
    """One option per config field (``train.flags``): ``--<field>`` and its aliases, ``--no_<field>`` for switches."""
    for flag in reversed(list(flags().values())):
        if flag.switch:
            decls = [f"--{n}/--no{'-' if '-' in n else '_'}{n}" for n in flag.names]
            func = click.option(*decls, flag.name, default=None, help=flag.help)(func)
        else:
            kind = click.Choice(flag.choices) if flag.choices else flag.kind
            func = click.option(*(f"--{n}" for n in flag.names), flag.name, type=kind, default=None,
                                help=flag.help)(func)
    return func


@click.command(cls=GreedyCommand, greedy=("film_features",), context_settings=CONTEXT_SETTINGS)
@click.option("--preset", "preset_name", type=click.Choice(list(PRESETS)), default=None,
              help="Starting settings; the flags below override them [default: the config file's, else recipe].")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A run config file (TOML: preset, [model], [objective], [train]); the flags given here "
                   "override it. `spectra-cv config show --preset cpu_quick` prints one to start from.")
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
@click.option("--val_noise2noise", "--val-noise2noise", is_flag=True,
              help="Accepted for compatibility: validation always scores against leave-one-out means.")
@click.option("--grad_accum", "--grad-accum", type=int, default=1, show_default=True,
              help="Only 1 is supported (the whole dataset fits; lower --bs instead).")
@click.option("--num_workers", "--num-workers", type=int, default=None,
              help="Accepted for compatibility; data live on the device, no workers are used.")
@_path_option("log_dir", help="Where metrics.csv (per-epoch learning curve) goes.")
@_path_option("checkpoint_dir", required=True, help="Where <model>_best.pt and last_state.pt go.")
@_path_option("speed_log_json", help="Per-epoch speed log, rewritten after every epoch.")
@_path_option("audit_log", help="Audit log (mandatory: every training run keeps an audit trail).")
@click.option("--force", is_flag=True,
              help="Discard <checkpoint_dir>/last_state.pt and train from the first epoch. Without it a killed "
                   "run resumes, and a state left by other settings or other spectra is refused (exit 3).")
@config_options
def train(preset_name: str | None, config_file: Path | None, model_name: str | None, train_dir: Path, val_dir: Path,
          train_manifest: Path | None,
          val_manifest: Path | None, dose_features_csv: Path | None, dose_sampling_weights_csv: Path | None,
          dose_stats_json: Path | None, lambda_weights: Path | None, lambda_scale: str | None,
          film_features: tuple[str, ...], val_noise2noise: bool, grad_accum: int,
          num_workers: int | None, log_dir: Path | None, checkpoint_dir: Path, speed_log_json: Path | None,
          audit_log: Path | None, force: bool, **values: Any) -> None:
    """Train a denoiser with early stopping on validation SAM (resumes from last_state.pt)."""
    from spectra_cv.audit import AuditLog
    from spectra_cv.errors import ConfigError
    from spectra_cv.train.run import TrainInputs, TrainOutputs, run_training

    if audit_log is None:
        raise ConfigError("--audit_log is required (every training run keeps an audit trail), "
                          "e.g. --audit_log logs/Track_H_fold_03/auditing_manifest.log")
    if grad_accum != 1:
        raise ConfigError("--grad_accum other than 1 is not supported; lower --bs instead")
    from spectra_cv.config_files import resolve_settings

    preset, resolved, file_features = resolve_settings(  # the preset, the file's settings, the flags given
        preset_name, config_file, options={k: (v, f"--{k}") for k, v in values.items()})
    cfg = build_run_config(preset, {k: v for k, (v, _) in resolved.items()}, model_name=model_name,
                           film_features=film_features or file_features, lambda_scale=lambda_scale)
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
        force=force,
    )
    click.echo(f"best checkpoint: {result.best_path} (epoch {result.best_epoch}, "
               f"val PSNR {result.best_val['psnr']:.3f} dB, SAM {result.best_val['sam']:.4f}°)")
