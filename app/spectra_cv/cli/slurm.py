"""``spectra-cv slurm submit``: the folds as a Slurm job array, then the coordinator and report.

The run options are ``cv``'s (preset, ``--set``, data, metadata, run root); every path must be on a
filesystem the compute nodes share. ``--dry-run`` prints the batch scripts and submits nothing;
``--wait`` follows the jobs and exits non-zero when a fold did not complete. The same command again
submits only the folds that are not complete (see ``spectra_cv.cluster.slurm``).
"""

from __future__ import annotations

from pathlib import Path

import click

from spectra_cv.cli import CONTEXT_SETTINGS
from spectra_cv.cli.options import GreedyCommand
from spectra_cv.cli.run_options import RunOptions, run_options
from spectra_cv.errors import EXIT_REFUSED
from spectra_cv.paths import RunPaths


@click.group(context_settings=CONTEXT_SETTINGS)
def slurm() -> None:
    """Run the cross-validation on a Slurm cluster (job array + dependent report job)."""


@slurm.command(cls=GreedyCommand, greedy=("folds",), context_settings=CONTEXT_SETTINGS)
@click.option("--folds", multiple=True, type=int, help="Folds to run (several after one flag) [default 1 2 3 4 5].")
@click.option("--parallel", type=int, default=None,
              help="At most K fold tasks at once (--array=…%K) [default: no limit].")
@click.option("--gpus-per-fold", type=int, default=1, show_default=True,
              help="GPUs per fold task (--gres=gpu:N; 0 for CPU).")
@click.option("--cpus-per-fold", type=int, default=4, show_default=True, help="CPU cores per fold task.")
@click.option("--mem", default=None, help="Memory per fold task, Slurm's form (e.g. 32G).")
@click.option("--partition", default=None, help="Slurm partition.")
@click.option("--time", "time_limit", default=None, help="Time limit per fold task (HH:MM:SS, D-HH:MM:SS).")
@click.option("--account", default=None, help="Slurm account to charge.")
@click.option("--container", default=None, metavar="IMAGE",
              help="Run inside this image: a .sif file (Apptainer) or an image reference (Pyxis/enroot, Docker).")
@click.option("--container-runtime", type=click.Choice(["apptainer", "singularity", "pyxis", "docker"]), default=None,
              help="How to run --container [default: apptainer for .sif, else pyxis].")
@click.option("--requeue", is_flag=True, help="Let Slurm requeue a task after a node failure or preemption.")
@click.option("--sbatch-arg", "sbatch_args", multiple=True, metavar="--OPTION=VALUE",
              help="Any other sbatch option for the fold tasks, e.g. --sbatch-arg=--qos=high (repeatable).")
@click.option("--force", is_flag=True, envvar="SPECTRA_CV_FORCE", show_envvar=True,
              help="Retrain folds completed with another config (each beside its finished result).")
@click.option("--allow-mixed-config", is_flag=True, help="Let folds run with a config other folds completed without.")
@click.option("--dry-run", is_flag=True, help="Print the batch scripts and the sbatch lines; submit nothing.")
@click.option("--wait", "wait_", is_flag=True, help="Follow the jobs until they end; exit non-zero if a fold failed.")
@click.option("--poll-s", type=float, default=5.0, show_default=True, help="Seconds between squeue polls (--wait).")
@run_options
def submit(opts: RunOptions, folds: tuple[int, ...], parallel: int | None, gpus_per_fold: int, cpus_per_fold: int,
           mem: str | None, partition: str | None, time_limit: str | None, account: str | None,
           container: str | None, container_runtime: str | None, requeue: bool, sbatch_args: tuple[str, ...],
           force: bool, allow_mixed_config: bool, dry_run: bool, wait_: bool, poll_s: float) -> None:
    """Submit the folds as one job array and a dependent coordinator + report job."""
    import dataclasses

    from spectra_cv.cluster import slurm as sl
    from spectra_cv.errors import FoldRefused, SpectraCVError
    from spectra_cv.folds.manifests import check_fold
    from spectra_cv.runs.cv import folds_of

    cfg = opts.config()  # a bad --set fails here, before anything is written
    chosen = folds_of(folds)
    for fold in chosen:
        check_fold(fold)
    if len(set(chosen)) != len(chosen):
        raise SpectraCVError(f"--folds {' '.join(map(str, chosen))}: each fold once")
    absolute = dataclasses.replace(  # the tasks start elsewhere: every path absolute
        opts, data_root=opts.data_root.resolve(), metadata_dir=opts.metadata_dir.resolve(),
        run_root=opts.run_root.resolve(),
        fold_config=opts.fold_config.resolve() if opts.fold_config else None,
        clean_manifest=opts.clean_manifest.resolve() if opts.clean_manifest else None)
    if absolute.clean_manifest is None:  # the fold's own default, made explicit so a container is given it
        beside = absolute.data_root.parent / "clean" / "clean_manifest.csv"
        if beside.is_file():
            absolute = dataclasses.replace(absolute, clean_manifest=beside)
    inputs = [p for p in (absolute.data_root, absolute.metadata_dir, absolute.fold_config, absolute.clean_manifest)
              if p is not None]
    for what, path in (("--run-root", absolute.run_root), *(("input", p) for p in inputs)):
        sl.check_path(what, path)
    for flag, path in (("--data-root", absolute.data_root), ("--metadata-dir", absolute.metadata_dir)):
        if not path.is_dir():  # the tasks would each fail on it, after waiting in the queue
            raise SpectraCVError(f"{flag} {path}: no such directory here; give the shared-filesystem path the "
                                 "compute nodes see (this host must see it too)")
    if container is not None and not container.startswith(("docker://", "/")) and Path(container).is_file():
        container = str(Path(container).resolve())  # the tasks start in the run root
    if not dry_run:
        absolute.run_root.mkdir(parents=True, exist_ok=True)
    sub = sl.Submission(
        run_root=absolute.run_root, folds=chosen, fold_args=tuple(absolute.forward()), config_hash=cfg.hash(),
        resources=sl.Resources(gpus_per_fold=gpus_per_fold, cpus_per_fold=cpus_per_fold, mem=mem,
                               partition=partition, time=time_limit, account=account, parallel=parallel,
                               requeue=requeue, sbatch_args=sbatch_args),
        container=sl.Container.of(container, container_runtime),
        binds=sl.binds_for(absolute.run_root, [p if p.is_dir() else p.parent for p in inputs]),
    )
    done = sl.submit(sub, cfg.to_dict(), force=force, dry_run=dry_run, echo=click.echo,
                     allow_mixed_config=allow_mixed_config)
    if done.array_job is not None and not wait_:
        click.echo(f"follow: squeue --name={sub.job_name} (outputs in {done.folder})")
    if dry_run or not wait_ or not done.followed[0]:
        return
    statuses = sl.wait(sub, done, click.echo, interval_s=poll_s)
    paths = RunPaths(root=absolute.run_root)
    refused, failed = {}, {}
    for fold, status in statuses.items():
        click.echo(f"[fold {fold}] {status}")
        if status == "completed":
            continue
        folders = [done.folder] if done.array_job and fold in done.plan.submit else [
            f for f, _ in sl.submissions(paths)][-1:]
        code, error = sl.task_end(folders[0], fold) if folders else (None, None)
        where = f"{folders[0]}/fold_{fold}.out" if folders else "its fold_N.out"
        if code == EXIT_REFUSED:
            refused[fold] = error or f"refused (see {where})"
        else:
            failed[fold] = f"{status}{f': {error}' if error else ''} (see {where} and logs/Track_H_fold_{fold:02d}/)"
    problems = [f"fold {f} refused to run, nothing of it changed: {why}" for f, why in refused.items()]
    problems += [f"fold {f} did not complete: {why}" for f, why in failed.items()]
    if failed:
        raise SpectraCVError("; ".join(problems) + ". Fix, and run the same command again to resume them")
    if refused:
        raise FoldRefused("; ".join(problems))
