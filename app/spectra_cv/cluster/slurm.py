"""The folds as a Slurm job array, then one dependent job for the coordinator and the report.

``spectra-cv slurm submit`` writes two batch scripts into the run root (kept there as provenance,
one folder per submission under ``slurm/``) and submits them with ``sbatch``:

* ``folds.sbatch``: a job array, one task per fold (``--array=1,3,5%K``), each running
  ``spectra-cv fold --fold $SLURM_ARRAY_TASK_ID`` with the run options of ``cv`` — straight from
  the installed package, or inside the image: Apptainer/Singularity (``exec --nv``), Pyxis/enroot
  (``srun --container-image``) or Docker (single-host Slurm installs);
* ``finish.sbatch``: ``--dependency=afterany:<array>``, runs ``coordinator --once`` and ``report``.

Slurm is the scheduler; nothing here schedules. Rerun = resume, as for ``cv``: a fold that completed
with this config is not submitted again, nor one whose task is still queued or running; a fold
completed with another config is refused unless ``--force``. A task cancelled, killed with its node
or requeued leaves its fold resumable (the fold pipeline's own rules), and the next submit (or the
requeue) picks it up.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spectra_cv import configs
from spectra_cv import io as sio
from spectra_cv.cluster.slurm_partition import read_offer, request_problems
from spectra_cv.errors import ConfigError, FoldRefused, SpectraCVError
from spectra_cv.log import get_logger
from spectra_cv.paths import RunPaths
from spectra_cv.runs import events as ev
from spectra_cv.runs import rerun
from spectra_cv.runs.coordinator import fold_alive
from spectra_cv.runs.locks import file_lock

log = get_logger("slurm")

RUNTIMES = ("none", "apptainer", "singularity", "pyxis", "docker")
SUBMISSIONS = "slurm"
SUBMISSION_FILE = "submission.json"
_TIME = re.compile(r"^(\d+-)?\d{1,3}(:\d{2}){0,2}$")
_MEM = re.compile(r"^\d+[KMGT]?$")
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_./+@=-]+$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class SlurmError(SpectraCVError):
    """sbatch/squeue missing or failing, or a submission that cannot be read."""


@dataclass(frozen=True)
class Resources:
    """What each fold task asks Slurm for."""

    gpus_per_fold: int = 1
    cpus_per_fold: int = 4
    mem: str | None = None
    partition: str | None = None
    time: str | None = None
    account: str | None = None
    parallel: int | None = None
    requeue: bool = False
    sbatch_args: tuple[str, ...] = ()

    def check(self) -> None:
        if self.gpus_per_fold < 0:
            raise ConfigError(f"--gpus-per-fold must be >= 0; got {self.gpus_per_fold}")
        if self.cpus_per_fold < 1:
            raise ConfigError(f"--cpus-per-fold must be >= 1; got {self.cpus_per_fold}")
        if self.parallel is not None and self.parallel < 1:
            raise ConfigError(f"--parallel must be >= 1; got {self.parallel}")
        if self.time is not None and not _TIME.match(self.time):
            raise ConfigError(f"--time {self.time!r}: use Slurm's forms, e.g. 02:30:00, 90, 1-00:00:00")
        for flag, value in (("--partition", self.partition), ("--account", self.account)):
            if value is not None and not _NAME.match(value):
                raise ConfigError(f"{flag} {value!r}: letters, digits, '_', '.', '-' only")
        if self.mem is not None and not _MEM.match(self.mem):
            raise ConfigError(f"--mem {self.mem!r}: Slurm's form, e.g. 32G or 64000 (MB)")
        for arg in self.sbatch_args:
            if not arg.startswith("--") or "#" in arg or any(ch.isspace() for ch in arg):
                raise ConfigError(f"--sbatch-arg {arg!r}: give one long sbatch option, e.g. --sbatch-arg=--qos=high")


@dataclass(frozen=True)
class Container:
    """Where the folds run: ``runtime`` ``none`` is the installed package, else ``image`` in that runtime."""

    runtime: str = "none"
    image: str | None = None

    @classmethod
    def of(cls, image: str | None, runtime: str | None) -> Container:
        if image is None:
            if runtime not in (None, "none"):
                raise ConfigError(f"--container-runtime {runtime} needs --container IMAGE")
            return cls()
        if runtime is None:  # a .sif file is Apptainer's; anything else a registry/enroot reference for Pyxis
            runtime = "apptainer" if image.endswith(".sif") else "pyxis"
        if runtime not in RUNTIMES or runtime == "none":
            raise ConfigError(f"--container-runtime {runtime!r}: one of {', '.join(RUNTIMES[1:])}")
        return cls(runtime, image)


@dataclass(frozen=True)
class Submission:
    """One ``slurm submit``: what it asked for and what Slurm answered."""

    run_root: Path
    folds: tuple[int, ...]
    fold_args: tuple[str, ...]
    config_hash: str
    resources: Resources = field(default_factory=Resources)
    container: Container = field(default_factory=Container)
    binds: tuple[tuple[Path, bool], ...] = ()  # (host path, read-only) the container must see at the same path

    @property
    def job_name(self) -> str:
        """One name per run root, so ``squeue --name`` finds this run root's tasks and no one else's."""
        digest = hashlib.sha256(str(self.run_root).encode()).hexdigest()[:8]
        return f"spectra-cv-{digest}"


# --- the scripts -------------------------------------------------------------------------------------
def _q(parts: Sequence[str | os.PathLike[str]]) -> str:
    return " ".join(shlex.quote(str(p)) for p in parts)


class Raw(str):
    """A word the task's shell must expand (its ids, its GPUs): written as is, never quoted."""


def runner(sub: Submission, name: str, gpus: int) -> list[str]:
    """The command prefix that runs ``spectra-cv`` for one task (``name``: the container's name)."""
    c = sub.container
    if c.runtime == "none":
        return [sys.executable, "-m", "spectra_cv"]
    # parents first: a read-only input never hides the run root
    binds = sorted(sub.binds, key=lambda b: len(b[0].parts))
    if c.runtime in ("apptainer", "singularity"):
        spec = ",".join(f"{p}:{p}:{'ro' if ro else 'rw'}" for p, ro in binds)
        # --contain: a minimal /dev and no host /tmp or home; the task's environment (OMP_NUM_THREADS,
        # CUDA_VISIBLE_DEVICES) passes through, as Apptainer does by default
        return [c.runtime, "exec", *(["--nv"] if gpus else []), "--contain", "--no-home", "--writable-tmpfs",
                "--bind", spec, "--pwd", str(sub.run_root), "--env", f"SPECTRA_CV_IMAGE={c.image}",
                str(c.image), "spectra-cv"]
    if c.runtime == "pyxis":
        mounts = ",".join(f"{p}:{p}{':ro' if ro else ''}" for p, ro in binds)
        # srun no longer inherits the batch step's --cpus-per-task (Slurm 22.05): pass it on
        return ["srun", "--ntasks=1", Raw('--cpus-per-task="${SLURM_CPUS_PER_TASK:-1}"'),
                f"--container-image={c.image}", f"--container-mounts={mounts}",
                f"--container-workdir={sub.run_root}", "--no-container-mount-home", "--export=ALL", "spectra-cv"]
    # docker: the same hardening as compose.yaml; named, so a cancelled task can stop it. dockerd is outside
    # the job's cgroup: it is given the job's GPUs by their node-wide indices (SLURM_JOB_GPUS)
    volumes = [arg for p, ro in binds for arg in ("-v", f"{p}:{p}{':ro' if ro else ''}")]
    gpu = ["--gpus", Raw('"\\"device=${SLURM_JOB_GPUS:?Slurm allocated this job no GPU}\\""')] if gpus else []
    return ["docker", "run", "--rm", "--init", "--name", Raw(f'"{name}"'), "--user", Raw('"$(id -u):$(id -g)"'),
            "--network", "none", "--read-only", "--tmpfs", "/run/home:rw,exec,nosuid,nodev,mode=1777,size=512m",
            "--tmpfs", "/tmp:rw,exec,nosuid,nodev,mode=1777,size=1g", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges:true", "--pids-limit", "2048", "--shm-size", "2g",
            "-e", f"SPECTRA_CV_IMAGE={c.image}", "-e", "OMP_NUM_THREADS", *volumes, "-w", str(sub.run_root),
            *gpu, str(c.image)]


def _word(part: str) -> str:
    return str(part) if isinstance(part, Raw) else shlex.quote(str(part))


def _command(sub: Submission, name: str, args: Sequence[str], gpus: int = 0) -> str:
    return " ".join(_word(p) for p in [*runner(sub, name, gpus), *args])


def _header(sub: Submission, job: str, output: str, *, gpus: int, cpus: int, fold_tasks: bool) -> list[str]:
    """``#SBATCH`` lines (their values are checked to need no quoting: ``check_path``, ``Resources.check``).
    ``--mem`` and ``--sbatch-arg`` are the fold tasks' only; the finish job needs one core briefly."""
    r = sub.resources
    lines = [f"#SBATCH --job-name={job}", f"#SBATCH --chdir={sub.run_root}", f"#SBATCH --output={output}",
             "#SBATCH --open-mode=append", "#SBATCH --ntasks=1", f"#SBATCH --cpus-per-task={cpus}"]
    if gpus:
        lines.append(f"#SBATCH --gres=gpu:{gpus}")
    for flag, value in (("partition", r.partition), ("time", r.time), ("account", r.account),
                        ("mem", r.mem if fold_tasks else None)):
        if value is not None:
            lines.append(f"#SBATCH --{flag}={value}")
    lines += [f"#SBATCH {arg}" for arg in r.sbatch_args] if fold_tasks else []
    return lines


def _docker_wrap(command: str, name: str) -> list[str]:
    """Docker's container outlives a killed client: stop it when Slurm signals the task."""
    return [f"trap 'docker stop --time 20 \"{name}\" >/dev/null 2>&1 || true' TERM INT",
            f"{command} &", "status=0", "wait $! || status=$?", "wait 2>/dev/null || true"]


def fold_script(sub: Submission, folder: Path, array: str) -> str:
    """The job array's batch script: one task per fold."""
    r = sub.resources
    header = _header(sub, sub.job_name, str(folder / "fold_%a.out"), gpus=r.gpus_per_fold, cpus=r.cpus_per_fold,
                     fold_tasks=True)
    header.insert(1, f"#SBATCH --array={array}")
    header.append("#SBATCH --requeue" if r.requeue else "#SBATCH --no-requeue")
    name = f"{sub.job_name}-${{SLURM_ARRAY_JOB_ID}}-${{SLURM_ARRAY_TASK_ID}}"
    command = _command(sub, name, ["fold", "--fold", Raw('"$SLURM_ARRAY_TASK_ID"'), *sub.fold_args],
                       gpus=r.gpus_per_fold)
    body = [
        f"# spectra-cv fold tasks for {sub.run_root}, config {sub.config_hash[:12]} "
        f"(written by `spectra-cv slurm submit`; kept as provenance)",
        "# A cancelled, preempted or requeued task leaves its fold resumable: rerun the submit (or let",
        "# Slurm requeue it) and the fold resumes from its last checkpoint. Exit 3: refused, nothing changed.",
        "set -uo pipefail",
        'export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}"',
        'echo "spectra-cv fold $SLURM_ARRAY_TASK_ID on $(hostname -s): job ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}'
        ' (restart ${SLURM_RESTART_COUNT:-0})"',
    ]
    if sub.container.runtime == "pyxis":  # provenance: srun --export=ALL hands it to the container
        body.append(f"export SPECTRA_CV_IMAGE={shlex.quote(str(sub.container.image))}")
    body += _docker_wrap(command, name) if sub.container.runtime == "docker" else [command, "status=$?"]
    body += ['echo "spectra-cv fold $SLURM_ARRAY_TASK_ID: exit status $status"  # 3: refused, nothing changed',
             'exit "$status"']
    return "\n".join(["#!/bin/bash", *header, "", *body]) + "\n"


def finish_script(sub: Submission, folder: Path) -> str:
    """The dependent job: the coordinator once (audit logs, summary), then the report."""
    header = _header(sub, f"{sub.job_name}-finish", str(folder / "finish.out"), gpus=0, cpus=1, fold_tasks=False)
    name = f"{sub.job_name}-${{SLURM_JOB_ID}}"
    sync = _command(sub, name + "-sync", ["coordinator", "--once", "--run-root", str(sub.run_root)])
    report = _command(sub, name + "-report", ["report", "--run-root", str(sub.run_root)])
    body = [
        f"# After every fold task of the array has ended (afterany): the audit logs and summary of {sub.run_root},",
        "# then cv_report.md. The report covers the folds that completed; a missing fold is named there.",
        "set -euo pipefail",
        *([f"export SPECTRA_CV_IMAGE={shlex.quote(str(sub.container.image))}"]
          if sub.container.runtime == "pyxis" else []),
        sync,
        report,
    ]
    return "\n".join(["#!/bin/bash", *header, "", *body]) + "\n"


def array_spec(folds: Sequence[int], parallel: int | None) -> str:
    return ",".join(map(str, folds)) + (f"%{parallel}" if parallel else "")


# --- talking to Slurm ------------------------------------------------------------------------------------
def _slurm(args: list[str], what: str) -> str:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    except FileNotFoundError as exc:
        raise SlurmError(f"{args[0]} not found: run this on a Slurm login node (or use --dry-run to see the "
                         "scripts)") from exc
    except subprocess.TimeoutExpired as exc:
        raise SlurmError(f"{what}: {args[0]} gave no answer in 120 s (is slurmctld up? `sinfo` says)") from exc
    if done.returncode != 0:
        raise SlurmError(f"{what}: `{_q(args)}` failed (exit {done.returncode}): "
                         f"{done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def sbatch(script: Path, dependency: str | None = None) -> str:
    """Submit ``script``; returns the job id."""
    args = ["sbatch", "--parsable", *( [f"--dependency={dependency}"] if dependency else []), str(script)]
    out = _slurm(args, f"submitting {script.name}").strip()
    job = out.split(";")[0]
    if not job.isdigit():
        raise SlurmError(f"sbatch answered {out!r} for {script}, not a job id")
    return job


@dataclass(frozen=True)
class Task:
    job: str  # the array job's id (or the job's own)
    index: str  # the array task id ("" for a plain job; "1,3%2" while the array is pending whole)
    state: str
    name: str = ""  # the job name (the fold tasks' or the finish job's)
    reason: str = ""  # why it is pending (squeue's %r: Priority, Resources, PartitionConfig …)


def queue(name: str) -> list[Task]:
    """This run root's jobs Slurm still lists (pending, running, completing, …), one row per array task."""
    out = _slurm(["squeue", "--noheader", "--array", f"--name={name},{name}-finish", "--format=%F|%K|%T|%j|%r"],
                 "reading the queue")
    tasks = []
    for line in out.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 3:
            reason = parts[4].strip() if len(parts) > 4 and parts[4].strip() not in ("None", "(null)") else ""
            tasks.append(Task(parts[0], "" if parts[1] in ("N/A", "") else parts[1], parts[2],
                              parts[3] if len(parts) > 3 else name, reason))
    return tasks


def task_folds(index: str) -> set[int]:
    """``"3"`` → {3}; a pending array's ``"1,3-5%2"`` → {1, 3, 4, 5}."""
    out: set[int] = set()
    for part in index.split("%")[0].split(","):
        if "-" in part:
            lo, hi = part.split("-", 1)
            out.update(range(int(lo), int(hi) + 1))
        elif part.isdigit():
            out.add(int(part))
    return out


def pending_folds(paths: RunPaths) -> dict[int, str]:
    """Fold → why Slurm still holds its task pending (squeue's reason, with the task), for the tasks of
    every ``slurm submit`` of this run root; {} when there were none. SlurmError when squeue fails."""
    names = {str(record["job_name"]) for _, record in submissions(paths) if record.get("job_name")}
    pending: dict[int, str] = {}
    for name in sorted(names):
        for task in queue(name):
            if task.name == name and task.state == "PENDING":
                for fold in task_folds(task.index):
                    pending[fold] = f"{task.reason or 'no reason given'} (job {task.job}_{fold})"
    return pending


def active_folds(tasks: Sequence[Task], name: str) -> dict[int, str]:
    """Fold → ``jobid_task`` of this run root's fold tasks Slurm still lists (whatever their state: a
    listed task may still run, so its fold is not submitted twice)."""
    active: dict[int, str] = {}
    for task in tasks:
        if task.name == name:
            for fold in task_folds(task.index):
                active[fold] = f"{task.job}_{fold}"
    return active


# --- which folds to submit ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    submit: tuple[int, ...]
    held_back: dict[int, str]  # fold → why it is not submitted


def _finished_intact(paths: RunPaths, fold: int, events: list[ev.Event]) -> str | None:
    """Why the fold's finished result is not whole (None: record, checkpoint and metrics are there); the
    task itself checks hashes and denoised records, and retrains what is not whole."""
    finished = rerun.finished_run(events)
    model = str(finished[0].data.get("model") or "mamba_tiny_uv") if finished else "mamba_tiny_uv"
    for needed in (paths.completion_record(fold), paths.best_checkpoint(fold, model), paths.metrics_json(fold)):
        if not needed.is_file():
            return f"{needed.name} is missing"
    return None


def plan(paths: RunPaths, folds: Sequence[int], config_hash: str, config: dict[str, Any], *, force: bool,
         active: dict[int, str], allow_mixed_config: bool = False) -> Plan:
    """The fold's own rerun rules (``runs.rerun.decide``), applied at submit time: skip what is complete
    or still queued, refuse what the task would refuse (a changed config; other folds of another config)."""
    submit, held, refused = [], {}, []
    for fold in folds:
        if fold in active:
            held[fold] = f"still queued or running as task {active[fold]}"
            continue
        events = ev.read_events(paths.events(fold)) if paths.events(fold).exists() else []
        try:
            decision = rerun.decide(events, tag=f"fold {fold}", config_hash=config_hash, config=config,
                                    data_change=lambda _run: None,  # the task fingerprints the data itself
                                    completion_problem=functools.partial(_finished_intact, paths, fold, events),
                                    force=force)
        except FoldRefused as exc:
            refused.append(str(exc).split(". ")[0])
            continue
        if decision.action == rerun.SKIP:
            held[fold] = "completed with this config"
        else:
            submit.append(fold)
    if not allow_mixed_config:
        for other, done in sorted(rerun.finished_folds(paths).items()):
            if other not in folds and done.config_hash != config_hash:
                refused.append(f"fold {other} (not asked for) completed with another config "
                               f"({configs.difference(done.config, config)}); add it to "
                               "--folds (with --force) or pass --allow-mixed-config")
    if refused:
        raise FoldRefused("; ".join(refused) + ". Nothing was submitted. Rerun with --force to retrain them "
                          "(each beside its finished result), or use another --run-root")
    return Plan(tuple(submit), held)


def check_path(what: str, path: Path) -> None:
    """Paths go into ``#SBATCH`` lines and bind specs unquoted: only characters that need no quoting there."""
    if not _SAFE_PATH.match(str(path)):
        bad = sorted({ch for ch in str(path) if not _SAFE_PATH.match(ch)})
        raise ConfigError(f"{what} {path}: contains {' '.join(repr(c) for c in bad)}, which #SBATCH lines and "
                          "container bind specs cannot carry; use a path of letters, digits and _ . / + @ = - "
                          "(a symlink to it will do)")


def binds_for(run_root: Path, inputs: Sequence[Path]) -> tuple[tuple[Path, bool], ...]:
    """The run root read-write, each input read-only unless the run root already holds it."""
    out: list[tuple[Path, bool]] = [(run_root, False)]
    for path in inputs:
        if path not in (p for p, _ in out):
            out.append((path, True))
    return tuple(out)


# --- submit and follow ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Submitted:
    folder: Path
    plan: Plan
    array_job: str | None
    finish_job: str | None
    earlier: dict[int, str] = field(default_factory=dict)  # fold held back as still queued → its task

    @property
    def followed(self) -> tuple[set[str], tuple[int, ...]]:
        """The job ids ``wait`` follows and the folds it reports on."""
        jobs = {task.split("_")[0] for task in self.earlier.values()}
        jobs |= {j for j in (self.array_job, self.finish_job) if j}
        return jobs, tuple(sorted({*self.plan.submit, *self.earlier}))


def submissions(paths: RunPaths) -> list[tuple[Path, dict[str, Any]]]:
    """Earlier submissions of this run root (folder, record), oldest first."""
    root = paths.root / SUBMISSIONS
    found = []
    for record in sorted(root.glob(f"*/{SUBMISSION_FILE}")) if root.is_dir() else []:
        try:
            found.append((record.parent, json.loads(record.read_text())))
        except (OSError, ValueError) as exc:
            raise SlurmError(f"{record}: unreadable ({exc}); remove that submission's folder if it is stale") from exc
    return found


def new_folder(paths: RunPaths) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = paths.root / SUBMISSIONS / stamp
    folder, n = base, 1
    while folder.exists():
        n += 1
        folder = base.with_name(f"{stamp}.{n}")
    folder.mkdir(parents=True)
    return folder


def submit(sub: Submission, config: dict[str, Any], *, force: bool, dry_run: bool,
           echo: Callable[[str], None], allow_mixed_config: bool = False) -> Submitted:
    """Write the scripts, submit the array and the dependent job (``dry_run``: print them, submit nothing).

    Under the run root's submit lock, from reading the queue to recording the job ids, so two submits
    never both send a fold.
    """

    sub.resources.check()
    paths = RunPaths(root=sub.run_root)
    if dry_run:
        return _submit_locked(sub, paths, config, force=force, dry_run=True, echo=echo,
                              allow_mixed_config=allow_mixed_config)
    (paths.root / SUBMISSIONS).mkdir(parents=True, exist_ok=True)
    with file_lock(paths.root / SUBMISSIONS / ".submit.lock", "the run root's Slurm submit lock", blocking=True):
        return _submit_locked(sub, paths, config, force=force, dry_run=False, echo=echo,
                              allow_mixed_config=allow_mixed_config)


def _check_partition(resources: Resources) -> None:
    """Refuse, before anything is queued, a fold task no node of the partition could ever start."""
    offer = read_offer(resources.partition)
    problems = request_problems(offer, resources.cpus_per_fold, resources.gpus_per_fold, resources.mem) \
        if offer is not None else []
    if problems:
        raise ConfigError("the fold tasks could never start: " + "; ".join(problems) + ". Nothing was submitted")


def _submit_locked(sub: Submission, paths: RunPaths, config: dict[str, Any], *, force: bool, dry_run: bool,
                   echo: Callable[[str], None], allow_mixed_config: bool) -> Submitted:
    active = active_folds(queue(sub.job_name), sub.job_name) if not dry_run else {}
    chosen = plan(paths, sub.folds, sub.config_hash, config, force=force, active=active,
                  allow_mixed_config=allow_mixed_config)
    earlier = {fold: task for fold, task in active.items() if fold in chosen.held_back}
    for fold, why in chosen.held_back.items():
        echo(f"fold {fold}: not submitted ({why})")
    if not chosen.submit:
        echo("nothing to submit: every fold asked for is complete or still queued")
        return Submitted(paths.root, chosen, None, None, earlier)
    fold_args = list(sub.fold_args)
    if force:  # every fold asked for: their old configs do not make each other "mixed" (as cv --force)
        fold_args += ["--force", "--retraining-folds", ",".join(map(str, sub.folds))]
    if allow_mixed_config:
        fold_args.append("--allow-mixed-config")
    sub = Submission(**{**sub.__dict__, "fold_args": tuple(fold_args)})
    _check_partition(sub.resources)
    array = array_spec(chosen.submit, sub.resources.parallel)
    still_running = sorted({task.split("_")[0] for task in active.values()})  # the report waits for them too
    if dry_run:
        folder = paths.root / SUBMISSIONS / "<submission>"
        for name, text in (("folds.sbatch", fold_script(sub, folder, array)),
                           ("finish.sbatch", finish_script(sub, folder))):
            echo(f"# --- {folder / name}\n{text}")
        echo(f"sbatch --parsable {folder / 'folds.sbatch'}")
        echo(f"sbatch --parsable --dependency=afterany:<array job id> {folder / 'finish.sbatch'}")
        return Submitted(folder, chosen, None, None, earlier)
    folder = new_folder(paths)
    scripts = {}
    for name, text in (("folds.sbatch", fold_script(sub, folder, array)),
                       ("finish.sbatch", finish_script(sub, folder))):
        scripts[name] = sio.atomic_write_text(folder / name, text)
        os.chmod(scripts[name], 0o755)
    array_job = sbatch(scripts["folds.sbatch"])
    echo(f"sbatch {scripts['folds.sbatch']}: job array {array_job} (--array={array})")
    dependency = "afterany:" + ":".join([array_job, *still_running])
    try:
        finish_job = sbatch(scripts["finish.sbatch"], dependency=dependency)
    except SlurmError:
        _slurm(["scancel", array_job], f"cancelling job array {array_job} after its finish job was refused")
        raise
    echo(f"sbatch --dependency={dependency} {scripts['finish.sbatch']}: job {finish_job}")
    sio.atomic_write_json(folder / SUBMISSION_FILE, {
        "submitted_at": ev.now_iso(), "run_root": str(sub.run_root), "job_name": sub.job_name,
        "array_job": array_job, "finish_job": finish_job, "dependency": dependency, "folds": list(chosen.submit),
        "array": array, "held_back": {str(k): v for k, v in chosen.held_back.items()}, "config_hash": sub.config_hash,
        "container": {"runtime": sub.container.runtime, "image": sub.container.image},
        "scripts": {k: v.name for k, v in scripts.items()},
    })
    return Submitted(folder, chosen, array_job, finish_job, earlier)


def _queue_patiently(name: str, tries: int = 5, pause_s: float = 5.0) -> list[Task]:
    """``queue``, riding out a few failed answers (a busy slurmctld times out now and then)."""
    for attempt in range(tries):
        try:
            return queue(name)
        except SlurmError as exc:
            if attempt == tries - 1:
                raise
            log.warning("%s; asking again in %.0f s", exc, pause_s)
            time.sleep(pause_s)
    return []  # pragma: no cover - the loop returns or raises


EXIT_LINE = re.compile(r"^spectra-cv fold (\d+): exit status (\d+)$")


def task_end(folder: Path, fold: int) -> tuple[int | None, str | None]:
    """How the fold's task in ``folder`` ended: (exit status, its last ``Error:`` line), from ``fold_N.out``
    (None, None: it wrote no exit line — killed, cancelled, or never started)."""
    out = folder / f"fold_{fold}.out"
    if not out.is_file():
        return None, None
    status, error = None, None
    for line in out.read_text(errors="replace").splitlines():  # a requeued task appends: the last run counts
        if line.startswith("Error: "):
            error = line[len("Error: "):]
        match = EXIT_LINE.match(line.strip())
        if match:
            status = int(match.group(2))
    return status, error


def wait(sub: Submission, done: Submitted, echo: Callable[[str], None], interval_s: float = 5.0) -> dict[int, str]:
    """Follow the jobs (this submission's, and earlier ones still running folds asked for) until Slurm no
    longer lists them; returns fold → final status from its events (``interrupted``: ended with no outcome)."""
    jobs, folds = done.followed
    seen: dict[str, str] = {}
    while jobs:
        tasks = [t for t in _queue_patiently(sub.job_name) if t.job in jobs]
        for t in tasks:
            if t.name.endswith("-finish"):
                label = "finish job"
            else:
                label = f"fold {t.index}" if t.index.isdigit() else f"folds {t.index}"
            key = f"{t.job}_{t.index}" if t.index else t.job
            said = t.state.lower() + (f", {t.reason}" if t.reason and t.state == "PENDING" else "")
            if seen.get(key) != said:
                seen[key] = said
                echo(f"{label}: {said} (job {key})")
        if not tasks:
            break
        time.sleep(interval_s)
    paths = RunPaths(root=sub.run_root)
    out = {}
    for fold in folds:
        events = ev.read_events(paths.events(fold)) if paths.events(fold).exists() else []
        status = ev.fold_status(events)
        if status == "running" and not fold_alive(paths, fold):
            status = "interrupted"
        out[fold] = status
    return out
