"""``spectra-cv evaluate``: score denoised output (or a checkpoint) on a manifest beside the baselines."""

from __future__ import annotations

from pathlib import Path

import click

from spectra_cv.cli import CONTEXT_SETTINGS
from spectra_cv.cli.options import DIR, FILE, GreedyCommand


@click.command(cls=GreedyCommand, context_settings=CONTEXT_SETTINGS)
@click.option("--manifest", type=FILE, required=True,
              help="Manifest to score (e.g. manifests/fold_01/test_manifest.csv).")
@click.option("--train-manifest", type=FILE, required=True,
              help="Train split the baselines' parameters are chosen on.")
@click.option("--root-dir", type=DIR, required=True,
              help="Data root the manifests' relative paths live under.")
@click.option("--denoised-root", type=DIR, default=None,
              help="Where `spectra-cv denoise` wrote this manifest's outputs.")
@click.option("--checkpoint", type=FILE, default=None,
              help="Denoise with this checkpoint first (outputs under --denoised-root, or a temp dir).")
@click.option("--dose-features-csv", type=FILE, default=None,
              help="Needed with --checkpoint when the model is FiLM-conditioned.")
@click.option("--clean-manifest", type=FILE, default=None,
              help="Synthetic data: clean/clean_manifest.csv, to score against the noise-free truth too.")
@click.option("--device", default="auto", show_default=True)
@click.option("--output", type=FILE, default=None,
              help="Write the full table as JSON here (atomically).")
def evaluate(manifest: Path, train_manifest: Path, root_dir: Path, denoised_root: Path | None,
             checkpoint: Path | None, dose_features_csv: Path | None, clean_manifest: Path | None,
             device: str, output: Path | None) -> None:
    """PSNR, SAM, RMSE, ROI PSNR and dip metrics against leave-one-out means, with the baselines."""
    import tempfile

    from spectra_cv import io as sio
    from spectra_cv.data import loaders
    from spectra_cv.data.splits import read_split
    from spectra_cv.errors import ConfigError
    from spectra_cv.evaluation import format_table, read_clean, read_denoised, score_table

    if checkpoint is None and denoised_root is None:
        raise ConfigError("give --denoised-root (scored as is) or --checkpoint (denoised first), or both")
    grid = loaders.read_grid(root_dir, None)
    split = read_split(root_dir, manifest, grid)
    train = read_split(root_dir, train_manifest, grid)
    with tempfile.TemporaryDirectory() as scratch:
        if checkpoint is not None:
            from spectra_cv.denoise import denoise_manifest

            out_root = denoised_root or Path(scratch)
            pred = denoise_manifest(checkpoint=checkpoint, manifest=manifest, root_dir=root_dir, output_root=out_root,
                                    device=device, amp=True, dose_features_csv=dose_features_csv).denoised
        else:
            assert denoised_root is not None  # checked above: without --checkpoint, --denoised-root is given
            pred = read_denoised(denoised_root, split.relative_paths, grid.shape[0])
    clean = read_clean(clean_manifest, split.groups) if clean_manifest is not None else None
    table = score_table(pred, split, train, grid, clean)
    click.echo(f"{manifest}: {len(split.relative_paths)} spectra, against leave-one-out means")
    click.echo(format_table(table, "loo"))
    if clean is not None:
        click.echo("against the clean synthetic truth")
        click.echo(format_table(table, "clean"))
    if output is not None:
        sio.atomic_write_json(output, table)
        click.echo(f"wrote {output}")
