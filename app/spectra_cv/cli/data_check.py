"""``spectra-cv data check``: validate a dataset against the data contract (writes nothing)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from spectra_cv import paths
from spectra_cv.cli import CONTEXT_SETTINGS
from spectra_cv.cli.options import GreedyCommand
from spectra_cv.data import check as dataset_check
from spectra_cv.data import contract


@click.command(cls=GreedyCommand, context_settings=CONTEXT_SETTINGS)
@click.option(
    "--data-root",
    type=click.Path(path_type=Path),
    default=None,
    help=f"Spectra, manifest.csv, wavelength_grid.npy, lambda_stats.npz [env {paths.ENV_DATA_ROOT}, "
    f"default {paths.DEFAULT_DATA_ROOT}].",
)
@click.option(
    "--metadata-dir",
    type=click.Path(path_type=Path),
    default=None,
    help=f"dose_features.csv, dose_sampling_weights.csv, dose_stats.json [env {paths.ENV_METADATA_DIR}, "
    f"default {paths.DEFAULT_METADATA_DIR}].",
)
@click.option(
    "--film-features",
    multiple=True,
    default=contract.CV_FILM_FEATURES,
    show_default=True,
    help="FiLM conditioning features, in order (repeat the option).",
)
@click.option(
    "--sequence-length",
    type=click.IntRange(min=2),
    default=contract.SEQUENCE_LENGTH,
    show_default=True,
    help="Points per spectrum (the length of wavelength_grid.npy).",
)
@click.option(
    "--max-problems",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="Show at most this many problems (all are counted).",
)
def check(
    data_root: Path | None,
    metadata_dir: Path | None,
    film_features: tuple[str, ...],
    sequence_length: int,
    max_problems: int,
) -> None:
    """Check every spectrum and metadata file against the data contract and print a summary.

    Reports every problem found (each naming the file or manifest row and the fix) and exits
    non-zero when there is any.
    """
    started = time.perf_counter()
    report = dataset_check.check_dataset(
        data_root if data_root is not None else paths.data_root(),
        metadata_dir if metadata_dir is not None else paths.metadata_dir(),
        film_features=tuple(film_features),
        sequence_length=sequence_length,
        max_problems=max_problems,
    )
    click.echo(dataset_check.format_report(report))
    click.echo(f"checked in {time.perf_counter() - started:.1f} s")
    if not report.ok:
        raise click.ClickException(
            f"{report.n_problems} data contract problem(s) in {report.data_root} / {report.metadata_dir}; "
            "fix them (each line above names the file or row) and rerun `spectra-cv data check`"
        )
