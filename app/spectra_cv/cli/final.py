"""``spectra-cv final``: the production model on every sample, with the cross-validated config."""

from __future__ import annotations

from pathlib import Path

import click

from spectra_cv.cli import CONTEXT_SETTINGS
from spectra_cv.cli.options import DIR, GreedyCommand


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
@click.option("--force", is_flag=True,
              help="Train afresh, discarding checkpoints/final/last_state.pt. Without it a killed run resumes, and "
                   "a state left by another config or other spectra is refused (exit 3).")
def final(data_root: Path | None, metadata_dir: Path | None, run_root: Path | None, device: str,
          infer_batch_size: int, allow_mixed_config: bool, force: bool) -> None:
    """Train on all samples (control included) for the folds' median best epoch; denoise the corpus."""
    from spectra_cv import paths as run_paths
    from spectra_cv.runs.final import run_final

    paths = run_paths.RunPaths(root=run_root) if run_root is not None else run_paths.RunPaths.from_env()
    outcome = run_final(paths, data_root or run_paths.data_root(), metadata_dir or run_paths.metadata_dir(),
                        device=device, infer_batch_size=infer_batch_size, allow_mixed_config=allow_mixed_config,
                        force=force)
    click.echo(f"final model ({outcome.epochs} epochs): {outcome.checkpoint}")
    click.echo(f"denoised corpus: {outcome.denoised_root}; record: {outcome.record}")
