"""``spectra-cv fold --fold N``: one fold end to end (manifests → train → denoise → evaluate).

The fold number may come from the environment instead, so one image serves array jobs:
``FOLD``, ``JOB_COMPLETION_INDEX`` (Kubernetes indexed jobs, 0-based) or ``SLURM_ARRAY_TASK_ID``.
"""

from __future__ import annotations

import os

import click

from spectra_cv.cli import CONTEXT_SETTINGS
from spectra_cv.cli.options import GreedyCommand
from spectra_cv.cli.run_options import RunOptions, run_options


def fold_from_env(given: int | None) -> int:
    """``--fold``, else FOLD, else JOB_COMPLETION_INDEX + 1, else SLURM_ARRAY_TASK_ID."""
    from spectra_cv.errors import ConfigError

    if given is not None:
        return given
    for name, offset in (("FOLD", 0), ("JOB_COMPLETION_INDEX", 1), ("SLURM_ARRAY_TASK_ID", 0)):
        raw = os.environ.get(name)
        if raw:
            try:
                return int(raw) + offset
            except ValueError:
                raise ConfigError(f"environment {name}={raw!r} is not an integer fold number") from None
    raise ConfigError("which fold? pass --fold N (or set FOLD, JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID)")


def parse_folds(raw: str | None) -> tuple[int, ...]:
    """``"1,2 3"`` → ``(1, 2, 3)`` (the hidden ``--retraining-folds`` list)."""
    from spectra_cv.errors import ConfigError

    if not raw:
        return ()
    try:
        return tuple(int(part) for part in raw.replace(",", " ").split())
    except ValueError:
        raise ConfigError(f"--retraining-folds {raw!r}: expected fold numbers, e.g. 1,2,3") from None


@click.command(cls=GreedyCommand, context_settings=CONTEXT_SETTINGS)
@click.option("--fold", "fold_number", type=int, default=None,
              help="Fold 1..5 (default from FOLD, JOB_COMPLETION_INDEX+1 or SLURM_ARRAY_TASK_ID).")
@click.option("--force", is_flag=True, envvar="SPECTRA_CV_FORCE", show_envvar=True,
              help="Retrain a completed fold (beside its finished result, swapped in when the new run "
              "completes), or restart an unfinished one whose config or data changed.")
@click.option("--skip-existing", is_flag=True,
              help="Accepted for the original scripts' command line; skipping a fold that completed with this "
              "config and data is what a rerun does anyway.")
@click.option("--allow-mixed-config", is_flag=True,
              help="Run even if other folds completed (or are running) with another config (the CV estimate "
              "then mixes settings).")
@click.option("--retraining-folds", hidden=True, envvar="SPECTRA_CV_RETRAINING_FOLDS", default=None,
              help="Folds a forced cv run retrains alongside this one (their old configs are not 'mixed').")
@run_options
def fold(opts: RunOptions, fold_number: int | None, force: bool, skip_existing: bool, allow_mixed_config: bool,
         retraining_folds: str | None) -> None:
    """Run one fold; a rerun skips it when completed, resumes it when interrupted, retries it when failed."""
    from spectra_cv.device import resolve_device
    from spectra_cv.runs.fold import FoldSettings, run_fold

    del skip_existing  # the default behaviour (runs.rerun)
    number = fold_from_env(fold_number)
    resolve_device(opts.device)  # a GPU that is not there is refused before anything is written
    outcome = run_fold(FoldSettings(
        fold=number, config=opts.config(), data_root=opts.data_root, metadata_dir=opts.metadata_dir,
        paths=opts.paths(), fold_config=opts.fold_config, device=opts.device,
        infer_batch_size=opts.infer_batch_size, force=force, allow_mixed_config=allow_mixed_config,
        retraining_folds=parse_folds(retraining_folds), clean_manifest=opts.clean_manifest, tracking=opts.tracking,
        tracking_uri=opts.tracking_uri,
    ))
    extra = f" (test PSNR {outcome.test_psnr:.2f} dB)" if outcome.test_psnr is not None else ""
    click.echo(f"[fold {number}] {outcome.status}{extra}")
