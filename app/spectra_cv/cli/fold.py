"""``spectra-cv fold --fold N``: one fold end to end (manifests → train → denoise → evaluate).

The fold number may come from the environment instead, so one image serves array jobs:
``FOLD``, ``JOB_COMPLETION_INDEX`` (Kubernetes indexed jobs, 0-based) or ``SLURM_ARRAY_TASK_ID``.
"""

from __future__ import annotations

import os

import click

from spectra_cv.cli import CONTEXT_SETTINGS
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


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option("--fold", "fold_number", type=int, default=None,
              help="Fold 1..5 (default from FOLD, JOB_COMPLETION_INDEX+1 or SLURM_ARRAY_TASK_ID).")
@click.option("--skip-existing", is_flag=True,
              help="Do nothing if the fold completed with this config and its checkpoint matches the record.")
@click.option("--allow-mixed-config", is_flag=True,
              help="Run even if completed folds used another config (the CV estimate then mixes settings).")
@run_options
def fold(opts: RunOptions, fold_number: int | None, skip_existing: bool, allow_mixed_config: bool) -> None:
    """Run one fold; a rerun resumes an interrupted fold where it stopped."""
    from spectra_cv.runs.fold import FoldSettings, run_fold

    number = fold_from_env(fold_number)
    outcome = run_fold(FoldSettings(
        fold=number, config=opts.config(), data_root=opts.data_root, metadata_dir=opts.metadata_dir,
        paths=opts.paths(), fold_config=opts.fold_config, device=opts.device,
        infer_batch_size=opts.infer_batch_size, skip_existing=skip_existing,
        allow_mixed_config=allow_mixed_config, clean_manifest=opts.clean_manifest,
    ))
    extra = f" (test PSNR {outcome.test_psnr:.2f} dB)" if outcome.test_psnr is not None else ""
    click.echo(f"[fold {number}] {outcome.status}{extra}")
