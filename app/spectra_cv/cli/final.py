"""``spectra-cv final``: the production model on every sample, with the cross-validated config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from spectra_cv.cli import CONTEXT_SETTINGS
from spectra_cv.cli.options import DIR, FILE, GreedyCommand


@click.command(cls=GreedyCommand, context_settings=CONTEXT_SETTINGS)
@click.option("--data-root", "--train-dir", "data_root", type=DIR,
              default=None, help="Spectra, manifest.csv, lambda_stats.npz [env SPECTRA_CV_DATA_ROOT].")
@click.option("--metadata-dir", type=DIR, default=None,
              help="dose_features.csv, dose_stats.json [env SPECTRA_CV_METADATA_DIR].")
@click.option("--run-root", type=DIR, default=None,
              help="Run root of the cross-validation [env SPECTRA_CV_RUN_ROOT; default .].")
@click.option("--device", default="auto", show_default=True)
@click.option("--infer-batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--allow-mixed-config", is_flag=True, help="Use the latest fold's config if the folds differ.")
@click.option("--config", "config_file", type=FILE, default=None, envvar="SPECTRA_CV_CONFIG", show_envvar=True,
              help="The run config file the folds ran with (`cv --config`): its [run] paths, device and batch size "
                   "apply, and folds that ran another config are refused (exit 3). The model's settings always "
                   "come from the folds.")
@click.option("--force", is_flag=True,
              help="Train afresh, discarding checkpoints/final/last_state.pt. Without it a killed run resumes, and "
                   "a state left by another config or other spectra is refused (exit 3).")
def final(data_root: Path | None, metadata_dir: Path | None, run_root: Path | None, device: str,
          infer_batch_size: int, allow_mixed_config: bool, config_file: Path | None, force: bool) -> None:
    """Train on all samples (control included) for the folds' median best epoch; denoise the corpus."""
    from spectra_cv import paths as run_paths
    from spectra_cv.runs.final import run_final

    given: dict[str, Any] = {"data_root": data_root, "metadata_dir": metadata_dir, "run_root": run_root,
                             "device": device, "infer_batch_size": infer_batch_size}
    expected = _from_config_file(config_file, given) if config_file is not None else None
    root = given["run_root"]
    paths = run_paths.RunPaths(root=root) if root is not None else run_paths.RunPaths.from_env()
    outcome = run_final(paths, given["data_root"] or run_paths.data_root(),
                        given["metadata_dir"] or run_paths.metadata_dir(), device=given["device"],
                        infer_batch_size=given["infer_batch_size"], allow_mixed_config=allow_mixed_config,
                        force=force, expected=expected)
    click.echo(f"final model ({outcome.epochs} epochs): {outcome.checkpoint}")
    click.echo(f"denoised corpus: {outcome.denoised_root}; record: {outcome.record}")


def _from_config_file(path: Path, given: dict[str, Any]) -> Any:
    """The config ``path`` describes (the folds must have run it), after filling ``given`` from its
    ``[run]`` table by the rule `fold` and `cv` follow (``fill_from_run_table``)."""
    from spectra_cv.cli.run_options import fill_from_run_table
    from spectra_cv.config_files import read_config_file, resolve_settings
    from spectra_cv.errors import ConfigError
    from spectra_cv.train.flags import build_run_config

    try:
        table = read_config_file(path).run
        preset, values, features = resolve_settings(None, path)
        expected = build_run_config(preset, {k: v for k, (v, _) in values.items()}, film_features=features)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--config") from exc
    fill_from_run_table(given, table)
    return expected
