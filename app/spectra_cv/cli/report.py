"""``spectra-cv report``: aggregate the completed folds into cv_report.md, cv_metrics.csv and plots."""

from __future__ import annotations

from pathlib import Path

import click

from spectra_cv import paths
from spectra_cv.cli import CONTEXT_SETTINGS
from spectra_cv.cli.options import DIR, GreedyCommand, tracking_backend, tracking_option, tracking_uri_option
from spectra_cv.log import get_logger

log = get_logger("cli.report")


@click.command(cls=GreedyCommand, context_settings=CONTEXT_SETTINGS)
@click.option("--run-root", type=DIR, default=Path("."),
              envvar=paths.ENV_RUN_ROOT, show_default=True,
              help=f"Run root holding artifacts/cross_validation/fold_summary.csv [env {paths.ENV_RUN_ROOT}].")
@click.option("--no-plots", is_flag=True, help="Skip the PNGs (matplotlib is then not needed).")
@click.option("--examples", type=click.IntRange(min=1), default=4, show_default=True,
              help="Test spectra of every completed fold drawn in spectra_examples.png (per fold).")
@tracking_option
@tracking_uri_option
def report(run_root: Path, no_plots: bool, examples: int, tracking: str | None, tracking_uri: str | None) -> None:
    """Mean ± std across completed folds of the model beside the baselines, with plots."""
    from spectra_cv.errors import SpectraCVError
    from spectra_cv.runs.report import build_report
    from spectra_cv.tracking import require

    backend = tracking_backend(tracking, tracking_uri)
    run_paths = paths.RunPaths(root=run_root)
    try:
        if backend is not None:
            require(backend)  # a missing library fails now, not after the report
        result = build_report(run_paths, examples_per_fold=examples, plots=not no_plots)
    except SpectraCVError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{len(result.completed_folds)} completed fold(s) aggregated"
               + (f"; not completed: {', '.join(map(str, result.other_folds))}" if result.other_folds else ""))
    click.echo(f"report: {result.markdown}")
    click.echo(f"metrics: {result.metrics_csv}")
    for plot in result.plots:
        click.echo(f"plot: {plot}")
    if backend is not None:
        _export(run_paths, backend, tracking_uri)


def _export(run_paths: paths.RunPaths, backend: str, uri: str | None) -> None:
    """The folds' runs and the CV's run with this report and its plots; a failure is a warning."""
    from spectra_cv.tracking import export_run

    try:
        written = export_run(run_paths, backend, None, uri)
    except Exception as exc:  # noqa: BLE001 - a side effect of the report, never its failure
        log.warning("the run was not exported to %s: %s: %s. The report stands; fix the store (or move it aside) "
                    "and run `spectra-cv track --tracking %s` to export it again", backend, type(exc).__name__, exc,
                    backend)
        return
    for where in dict.fromkeys(written):
        click.echo(f"{backend}: {where}")
