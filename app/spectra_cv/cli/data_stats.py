"""``spectra-cv data stats``: recompute lambda_stats.npz, dose_sampling_weights.csv, dose_stats.json."""

from __future__ import annotations

import time
from pathlib import Path

import click

from spectra_cv import paths
from spectra_cv.cli import CONTEXT_SETTINGS
from spectra_cv.cli.options import DIR, FILE, GreedyCommand
from spectra_cv.data import contract


@click.command(cls=GreedyCommand, context_settings=CONTEXT_SETTINGS)
@click.option(
    "--data-root",
    type=DIR,
    default=None,
    help=f"Spectra, manifest.csv, wavelength_grid.npy [env {paths.ENV_DATA_ROOT}, "
    f"default {paths.DEFAULT_DATA_ROOT}].",
)
@click.option(
    "--metadata-dir",
    type=DIR,
    default=None,
    help=f"Holds dose_features.csv [env {paths.ENV_METADATA_DIR}, default {paths.DEFAULT_METADATA_DIR}].",
)
@click.option(
    "--manifest",
    type=FILE,
    default=None,
    help="Rows to compute over [default: DATA_ROOT/manifest.csv, every spectrum].",
)
@click.option(
    "--fold",
    type=click.IntRange(min=1),
    default=None,
    help="Compute over this fold's train split only (RUN_ROOT/manifests/fold_NN/train_manifest.csv, "
    f"env {paths.ENV_RUN_ROOT}), keeping its val/test spectra out of the statistics.",
)
@click.option(
    "--output-dir",
    type=DIR,
    default=None,
    help="Write the three files side by side here (created if needed).",
)
@click.option(
    "--in-place",
    is_flag=True,
    help="Overwrite the dataset's own files: DATA_ROOT/lambda_stats.npz and METADATA_DIR/"
    "dose_sampling_weights.csv, dose_stats.json.",
)
@click.option("--overwrite", is_flag=True, help="Replace existing files in --output-dir.")
@click.option(
    "--film-features",
    multiple=True,
    default=contract.CV_FILM_FEATURES,
    show_default=True,
    help="FiLM features of dose_stats.json, in order (repeat the option).",
)
def stats(
    data_root: Path | None,
    metadata_dir: Path | None,
    manifest: Path | None,
    fold: int | None,
    output_dir: Path | None,
    in_place: bool,
    overwrite: bool,
    film_features: tuple[str, ...],
) -> None:
    """Recompute the derived statistics of a dataset from one manifest's rows.

    lambda_stats.npz: per-wavelength variance (ddof=1) of the unclipped spectra, clipped to its
    5th-95th percentiles, precision = 1/clipped, weights = precision x 3 inside 320-500 nm.
    dose_sampling_weights.csv: sampling_weight 1.0 and bin_pair "(u, v)", the quintile bins of
    UVA_norm / UVB_norm over the rows. dose_stats.json: population mean/std of the FiLM features
    (the control's undefined UVA/UVB ratio left out).

    Inputs are never overwritten by accident: give --output-dir (existing files there need
    --overwrite), or --in-place to replace the dataset's own files (atomically).
    """
    from spectra_cv.data import stats as stats_mod  # imported here so `-h` stays instant

    if (output_dir is None) == (not in_place):
        raise click.UsageError("give exactly one of --output-dir DIR or --in-place")
    if manifest is not None and fold is not None:
        raise click.UsageError("give --manifest or --fold, not both")
    root = data_root if data_root is not None else paths.data_root()
    meta = metadata_dir if metadata_dir is not None else paths.metadata_dir()
    if fold is not None:
        manifest = paths.RunPaths.from_env().manifest(fold, "train")
        if not manifest.is_file():
            raise click.ClickException(
                f"{manifest}: fold {fold} train manifest not found; run `spectra-cv manifests` first "
                f"or set {paths.ENV_RUN_ROOT}"
            )
    if in_place:
        targets = stats_mod.StatsTargets.in_layout(root, meta)
    else:
        assert output_dir is not None  # the usage check above: --output-dir without --in-place
        targets = stats_mod.StatsTargets.in_dir(output_dir)
    started = time.perf_counter()
    stats_mod.recompute(
        root, meta, targets, manifest=manifest, features=film_features, overwrite=overwrite or in_place
    )
    for path in targets.paths():
        click.echo(f"wrote {path}")
    click.echo(f"derived statistics in {time.perf_counter() - started:.1f} s")
