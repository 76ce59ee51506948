"""``spectra-cv report``: aggregate the completed folds into cv_report.md, cv_metrics.csv and plots."""

from __future__ import annotations

from pathlib import Path

import click

from spectra_cv import paths
from spectra_cv.cli import CONTEXT_SETTINGS
from spectra_cv.cli.options import DIR, GreedyCommand


@click.command(cls=GreedyCommand, context_settings=CONTEXT_SETTINGS)
@click.option("--run-root", type=DIR, default=Path("."),
              envvar=paths.ENV_RUN_ROOT, show_default=True,
              help=f"Run root holding artifacts/cross_validation/fold_summary.csv [env {paths.ENV_RUN_ROOT}].")
@click.option("--no-plots", is_flag=True, help="Skip the PNGs (matplotlib is then not needed).")
@click.option("--examples", type=click.IntRange(min=1), default=4, show_default=True,
              help="Test spectra of every completed fold drawn in spectra_examples.png (per fold).")
def report(run_root: Path, no_plots: bool, examples: int) -> None:
    """Mean ± std across completed folds of the model beside the baselines, with plots."""
    from spectra_cv.errors import SpectraCVError
    from spectra_cv.runs.report import build_report

    try:
        result = build_report(paths.RunPaths(root=run_root), examples_per_fold=examples, plots=not no_plots)
    except SpectraCVError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{len(result.completed_folds)} completed fold(s) aggregated"
               + (f"; not completed: {', '.join(map(str, result.other_folds))}" if result.other_folds else ""))
    click.echo(f"report: {result.markdown}")
    click.echo(f"metrics: {result.metrics_csv}")
    for plot in result.plots:
        click.echo(f"plot: {plot}")
