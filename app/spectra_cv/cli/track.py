"""``spectra-cv track``: export the folds' runs to MLflow or TensorBoard files under the run root."""

from __future__ import annotations

from pathlib import Path

import click

from spectra_cv import paths
from spectra_cv.cli import CONTEXT_SETTINGS
from spectra_cv.cli.options import DIR, GreedyCommand, tracking_backend, tracking_option, tracking_uri_option


@click.command(cls=GreedyCommand, greedy=("folds",), context_settings=CONTEXT_SETTINGS)
@click.option("--run-root", type=DIR, default=Path("."), envvar=paths.ENV_RUN_ROOT, show_default=True,
              help=f"Run root whose logs/Track_H_fold_##/events.jsonl are exported [env {paths.ENV_RUN_ROOT}].")
@tracking_option
@click.option("--folds", multiple=True, type=int,
              help="Folds to export (several after one flag) [default: every fold that has started].")
@tracking_uri_option
def track(run_root: Path, tracking: str | None, folds: tuple[int, ...], tracking_uri: str | None) -> None:
    """Export each fold run (config, per-epoch metrics, scores beside the baselines, checkpoint and
    report) as one tracking run; exporting again updates the same runs."""
    from spectra_cv.tracking import export_run, open_hint

    backend = tracking_backend(tracking, tracking_uri)
    if backend is None:
        raise click.UsageError("Missing option '--tracking' (mlflow or tensorboard), or give --tracking-uri.")
    run_paths = paths.RunPaths(root=run_root)
    written = export_run(run_paths, backend, list(folds) if folds else None, tracking_uri)
    for where in dict.fromkeys(written):
        click.echo(f"{backend}: {where}")
    click.echo(f"open with: {open_hint(run_paths, backend, tracking_uri)}")
