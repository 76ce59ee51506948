"""``spectra-cv cv`` (and ``scripts/run_cross_validation.py``): every fold, then the summary.

The runbook's options work as written (``--device``, ``--skip-existing``, ``--batch-size``,
``--epochs``, ``--patience``, ``--folds 3 4 5``); ``--parallel K`` and ``--gpus 0,1`` run folds
side by side. A failed fold is recorded and the others go on, unless ``--fail-fast``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from spectra_cv.cli import CONTEXT_SETTINGS
from spectra_cv.cli.options import GreedyCommand
from spectra_cv.cli.run_options import RunOptions, run_options


@click.command(cls=GreedyCommand, greedy=("folds",), context_settings=CONTEXT_SETTINGS)
@click.option("--folds", multiple=True, type=int, help="Folds to run (several after one flag) [default 1 2 3 4 5].")
@click.option("--parallel", type=int, default=None,
              help="Folds at once [default 1, or one per GPU with --gpus].")
@click.option("--gpus", default=None, help="GPU ids for the folds, one GPU per fold, e.g. 0,1,2,3.")
@click.option("--force", is_flag=True, envvar="SPECTRA_CV_FORCE", show_envvar=True,
              help="Retrain completed folds (each beside its finished result, swapped in when it completes).")
@click.option("--skip-existing", is_flag=True,
              help="Accepted for the original scripts' command line: a rerun skips folds that completed with "
              "this config and data anyway.")
@click.option("--fail-fast", is_flag=True, help="Stop every fold when one fails.")
@click.option("--wait", is_flag=True,
              help="If another cv run holds this run root, wait for it to end instead of refusing (exit 3).")
@click.option("--allow-mixed-config", is_flag=True, help="Let folds run with a config other folds completed without.")
@click.option("--no-live", is_flag=True,
              help="No live per-fold lines (stage, epoch, best val PSNR, ETA) on stderr; "
                   "`spectra-cv status` shows them.")
@run_options
def cv(opts: RunOptions, folds: tuple[int, ...], parallel: int | None, gpus: str | None, force: bool,
       skip_existing: bool, fail_fast: bool, wait: bool, allow_mixed_config: bool, no_live: bool) -> None:
    """Run the cross-validation folds (each resumable) and write the audit logs and summary."""
    from spectra_cv.device import resolve_device
    from spectra_cv.errors import ConfigError, SpectraCVError
    from spectra_cv.runs.cv import CvPlan, folds_of, parse_gpus, run_cv, summary_lines

    opts.config()  # a bad --set fails here, before any fold starts
    if parallel is not None and parallel < 1:
        raise ConfigError(f"--parallel must be >= 1; got {parallel}")
    gpu_ids = parse_gpus(gpus)
    args = opts.forward()
    if gpu_ids and opts.device not in ("auto", "cuda"):
        raise ConfigError(f"--device {opts.device} conflicts with --gpus {gpus}: each fold sees only its own "
                          "GPU (as cuda); drop --device")
    resolve_device("cuda" if gpu_ids else opts.device)  # a GPU that is not there: refused before any fold
    if gpu_ids:
        index = args.index("--device")
        args[index + 1] = "cuda"
    del skip_existing  # what every rerun does (runs.rerun)
    planned = folds_of(folds)
    if force:  # every planned fold is retrained: their old configs do not make the new one "mixed"
        args += ["--force", "--retraining-folds", ",".join(map(str, planned))]
    if allow_mixed_config:
        args.append("--allow-mixed-config")
    plan = CvPlan(folds=planned, fold_args=tuple(args), paths=opts.paths(),
                  parallel=parallel or max(1, len(gpu_ids)), gpus=gpu_ids, fail_fast=fail_fast,
                  live=None if no_live else sys.stderr, wait=wait)
    outcome = run_cv(plan)
    for line in summary_lines(plan.paths):
        click.echo(line)
    click.echo(f"summary: {plan.paths.summary_csv}")
    refused = outcome.refused
    failed = [f for f in outcome.failed if f not in refused]
    problems = []
    if failed:
        problems.append(f"fold(s) {', '.join(map(str, failed))} did not complete; see logs/Track_H_fold_##/fold.log "
                        "and the audit logs, fix, and rerun to resume them")
    if refused:
        problems.append(f"fold(s) {', '.join(map(str, refused))} refused to run (nothing of theirs was changed): "
                        + "; ".join(outcome.reasons[f] for f in refused))
    if problems:
        raise SpectraCVError(". ".join(problems))
    root = "" if opts.run_root == Path(".") else f" --run-root {opts.run_root}"
    after = (f"then `spectra-cv final{root}` trains the production model on every sample"
             if set(planned) >= {1, 2, 3, 4, 5} else f"`spectra-cv cv{root}` runs the other folds")
    click.echo(f"next: `spectra-cv report{root}` writes the cross-validation report; {after}")
