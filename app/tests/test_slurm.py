"""``spectra-cv slurm submit`` without a cluster: the scripts it writes, the folds it picks, its errors.

A real Slurm runs these in ``test_slurm_engine.py`` (the CI cluster stage); here ``sbatch`` and
``squeue`` are small fakes on PATH that record what they were asked.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from spectra_cv.train.flags import build_run_config
from spectra_cv.cluster import slurm as sl
from spectra_cv.errors import ConfigError, FoldRefused
from spectra_cv.paths import RunPaths
from spectra_cv.runs import events as ev

TINY = ["--preset", "cpu_quick", "--epochs", "2", "--set", "d_model=8", "--set", "n_layers=1"]


@dataclass
class _Result:
    returncode: int
    stdout: str
    stderr: str


def _cli(*args: str, cwd: Path, path: str | None = None) -> _Result:
    """The CLI in this process (no interpreter start per call); ``path``: PATH for its sbatch/squeue."""
    from click.testing import CliRunner

    from spectra_cv.cli import main

    old_path, old_cwd = os.environ["PATH"], os.getcwd()
    os.environ["PATH"] = path if path is not None else old_path
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    finally:
        os.environ["PATH"] = old_path
        os.chdir(old_cwd)
    return _Result(result.exit_code, result.stdout, result.stderr)


def _inputs(data: Path) -> list[str]:
    return ["--data-root", str(data / "spectra_for_fold"), "--metadata-dir", str(data / "metadata")]


@pytest.fixture
def fake_slurm(tmp_path) -> Path:
    """``sbatch`` answering job ids 101, 102, … and ``squeue`` answering what ``queue.txt`` says."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(
        "#!/bin/bash\n"
        f'echo "$*" >> {bin_dir}/sbatch.calls\n'
        f"n=$(wc -l < {bin_dir}/sbatch.calls)\n"
        'echo "$((100 + n));cluster"\n')
    (bin_dir / "squeue").write_text(  # queue.txt every time; queue.once once
        f'#!/bin/bash\necho "$*" >> {bin_dir}/squeue.calls\ncat {bin_dir}/queue.txt 2>/dev/null\n'
        f'if [ -f {bin_dir}/queue.once ]; then cat {bin_dir}/queue.once; rm {bin_dir}/queue.once; fi\n')
    (bin_dir / "scancel").write_text(f'#!/bin/bash\necho "$*" >> {bin_dir}/scancel.calls\n')
    (bin_dir / "sinfo.txt").write_text("gpu*|64|512000|gpu:a100:4(S:0-1)|up\ncpu|2|7900|(null)|up\n")
    (bin_dir / "sinfo").write_text(f"#!/bin/bash\ncat {bin_dir}/sinfo.txt\n")  # what the partitions offer
    for tool in ("sbatch", "squeue", "scancel", "sinfo"):
        os.chmod(bin_dir / tool, 0o755)
    return bin_dir


def _scripts(folder: Path) -> tuple[str, str]:
    return (folder / "folds.sbatch").read_text(), (folder / "finish.sbatch").read_text()


def test_submit_writes_the_scripts_into_the_run_root_and_chains_the_finish_job(data, tmp_path, fake_slurm):
    run = tmp_path / "run"
    out = _cli("slurm", "submit", "--folds", "1", "3", "5", "--parallel", "2", "--gpus-per-fold", "2",
               "--cpus-per-fold", "8", "--partition", "gpu", "--time", "04:00:00", "--account", "lab-7",
               "--mem", "32G", "--requeue", "--sbatch-arg=--qos=high", *TINY, *_inputs(data), "--run-root", str(run),
               cwd=tmp_path, path=f"{fake_slurm}:{os.environ['PATH']}")
    assert out.returncode == 0, out.stderr
    calls = (fake_slurm / "sbatch.calls").read_text().splitlines()
    (folder,) = [p for p in (run / "slurm").iterdir() if p.is_dir()]
    assert calls == [f"--parsable {folder / 'folds.sbatch'}",
                     f"--parsable --dependency=afterany:101 {folder / 'finish.sbatch'}"]
    record = json.loads((folder / "submission.json").read_text())
    assert (record["array_job"], record["finish_job"], record["folds"], record["array"]) == ("101", "102", [1, 3, 5], "1,3,5%2")
    folds, finish = _scripts(folder)
    for line in ("#SBATCH --array=1,3,5%2", "#SBATCH --gres=gpu:2", "#SBATCH --cpus-per-task=8", "#SBATCH --partition=gpu",
                 "#SBATCH --time=04:00:00", "#SBATCH --account=lab-7", "#SBATCH --mem=32G", "#SBATCH --requeue",
                 "#SBATCH --qos=high", f"#SBATCH --chdir={run}", f"#SBATCH --output={folder}/fold_%a.out"):
        assert line in folds.splitlines(), line
    assert f'-m spectra_cv fold --fold "$SLURM_ARRAY_TASK_ID" --preset cpu_quick --data-root {data / "spectra_for_fold"}' in folds
    assert f"--run-root {run}" in folds and "--epochs 2" in folds and "--set d_model=8 --set n_layers=1" in folds
    assert f"--clean-manifest {data / 'clean' / 'clean_manifest.csv'}" in folds  # the fold's default, made explicit
    assert "#SBATCH --gres" not in finish and "#SBATCH --array" not in finish
    assert f"coordinator --once --run-root {run}" in finish and f"report --run-root {run}" in finish
    for script in (folder / "folds.sbatch", folder / "finish.sbatch"):
        assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
        assert os.access(script, os.X_OK)


def test_dry_run_prints_and_writes_nothing(data, tmp_path):
    run = tmp_path / "run"
    out = _cli("slurm", "submit", "--folds", "2", "--gpus-per-fold", "0", "--dry-run", *TINY, *_inputs(data),
               "--run-root", str(run), cwd=tmp_path, path="/nonexistent")  # no sbatch needed
    assert out.returncode == 0, out.stderr
    assert "#SBATCH --array=2\n" in out.stdout and "#SBATCH --gres" not in out.stdout
    assert "sbatch --parsable --dependency=afterany:<array job id>" in out.stdout
    assert not run.exists()


@pytest.mark.parametrize("runtime, image, expected", [
    ("apptainer", "/images/spectra-cv.sif", ["apptainer exec --nv --contain --no-home --writable-tmpfs --bind ",
                                            ":ro", "/images/spectra-cv.sif spectra-cv fold --fold"]),
    (None, "/images/spectra-cv.sif", ["apptainer exec --nv"]),  # a .sif is Apptainer's
    ("singularity", "/images/spectra-cv.sif", ["singularity exec --nv --contain"]),
    ("pyxis", "registry.lab/spectra-cv:cuda", ['srun --ntasks=1 --cpus-per-task="${SLURM_CPUS_PER_TASK:-1}" '
                                               "--container-image=registry.lab/spectra-cv:cuda --container-mounts=",
                                               "--container-workdir=", "spectra-cv fold --fold",
                                               "export SPECTRA_CV_IMAGE=registry.lab/spectra-cv:cuda"]),
    ("docker", "spectra-cv:cuda", ['docker run --rm --init --name "spectra-cv-', '--user "$(id -u):$(id -g)"',
                                   "--network none --read-only", "--cap-drop ALL --security-opt no-new-privileges:true",
                                   '--gpus "\\"device=${SLURM_JOB_GPUS:?Slurm allocated this job no GPU}\\"" '
                                   'spectra-cv:cuda fold --fold "$SLURM_ARRAY_TASK_ID"',
                                   "trap 'docker stop --time 20", 'echo "spectra-cv fold $SLURM_ARRAY_TASK_ID: exit status']),
])
def test_the_container_branches(data, tmp_path, runtime, image, expected):
    args = ["slurm", "submit", "--folds", "1", "--dry-run", "--container", image, *TINY, *_inputs(data),
            "--run-root", str(tmp_path / "run")]
    if runtime:
        args += ["--container-runtime", runtime]
    out = _cli(*args, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    folds = out.stdout.split("# --- ")[1]
    for piece in expected:
        assert piece in folds, piece
    assert f"{data / 'spectra_for_fold'}:{data / 'spectra_for_fold'}" in folds  # the data at the same path, read-only
    finish = out.stdout.split("# --- ")[2]
    assert "--nv" not in finish and "--gpus" not in finish  # the coordinator and report need no GPU
    script = tmp_path / "folds.sbatch"
    script.write_text(folds.split("\n", 1)[1].rsplit("\nsbatch", 1)[0])
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0


def test_the_container_branch_keeps_the_task_environment():
    sub = sl.Submission(run_root=Path("/runs/a"), folds=(1,), fold_args=(), config_hash="h",
                        container=sl.Container.of("img.sif", None), binds=((Path("/runs/a"), False),))
    assert "--cleanenv" not in sl.runner(sub, "x", gpus=1) and "--containall" not in sl.runner(sub, "x", gpus=1)


@pytest.mark.parametrize("args, message", [
    (["--time", "4 hours"], "--time '4 hours'"),
    (["--parallel", "0"], "--parallel must be >= 1"),
    (["--gpus-per-fold", "-1"], "--gpus-per-fold must be >= 0"),
    (["--partition", "gpu;rm"], "--partition 'gpu;rm'"),
    (["--sbatch-arg", "qos=high"], "--sbatch-arg 'qos=high'"),
    (["--folds", "2", "2"], "each fold once"),
    (["--folds", "6"], "fold 6 is out of range"),
    (["--container-runtime", "docker"], "needs --container IMAGE"),
    (["--set", "d_modle=8"], "unknown flag 'd_modle'"),
    (["--mem", "32 G"], "--mem '32 G'"),
    (["--sbatch-arg=--comment=a#b"], "--sbatch-arg '--comment=a#b'"),
])
def test_bad_options_are_clear_errors(data, tmp_path, args, message):
    out = _cli("slurm", "submit", "--dry-run", *TINY, *_inputs(data), "--run-root", str(tmp_path / "r"), *args,
               cwd=tmp_path)
    assert out.returncode != 0 and message in out.stderr, out.stderr


def test_a_path_an_sbatch_line_cannot_carry_is_refused(data, tmp_path):
    out = _cli("slurm", "submit", "--dry-run", *TINY, *_inputs(data), "--run-root", str(tmp_path / "my runs $HOME"),
               cwd=tmp_path)
    assert out.returncode == 1 and "contains ' ' '$'" in out.stderr and "a symlink to it will do" in out.stderr


def test_a_task_that_was_refused_is_reported_as_refused(data, tmp_path, fake_slurm):
    run = tmp_path / "run"
    path = f"{fake_slurm}:{os.environ['PATH']}"
    assert _cli("slurm", "submit", "--folds", "2", *TINY, *_inputs(data), "--run-root", str(run), cwd=tmp_path,
                path=path).returncode == 0
    (folder,) = [p for p in (run / "slurm").iterdir() if p.is_dir()]
    (folder / "fold_2.out").write_text(  # what the task prints when the fold refuses (the data changed)
        "spectra-cv fold 2 on node7: job 101_2 (restart 0)\n"
        "Error: fold_02 has an unfinished run, but the data changed since it started: a.npy changed\n"
        "spectra-cv fold 2: exit status 3\n")
    assert sl.task_end(folder, 2) == (3, "fold_02 has an unfinished run, but the data changed since it started: "
                                         "a.npy changed")
    (fake_slurm / "queue.once").write_text("101|2|RUNNING\n")
    again = _cli("slurm", "submit", "--folds", "2", "--wait", "--poll-s", "0.1", *TINY, *_inputs(data),
                 "--run-root", str(run), cwd=tmp_path, path=path)
    assert again.returncode == 3, again.stderr
    assert "fold 2 refused to run, nothing of it changed: fold_02 has an unfinished run" in again.stderr


def test_a_missing_data_root_is_refused_before_anything_is_submitted(data, tmp_path, fake_slurm):
    out = _cli("slurm", "submit", *TINY, "--data-root", str(tmp_path / "nowhere"), "--metadata-dir",
               str(data / "metadata"), "--run-root", str(tmp_path / "r"), cwd=tmp_path,
               path=f"{fake_slurm}:{os.environ['PATH']}")
    assert out.returncode == 1 and f"--data-root {tmp_path / 'nowhere'}: no such directory" in out.stderr
    assert not (fake_slurm / "sbatch.calls").exists()


def test_no_sbatch_is_a_clear_error(data, tmp_path):
    out = _cli("slurm", "submit", "--folds", "1", *TINY, *_inputs(data), "--run-root", str(tmp_path / "r"),
               cwd=tmp_path, path="/nonexistent")
    assert out.returncode == 1 and "squeue not found: run this on a Slurm login node" in out.stderr


# --- which folds a rerun submits -----------------------------------------------------------------------------
def _complete(paths: RunPaths, fold: int, config_hash: str, config: dict) -> None:
    writer = ev.EventWriter(paths.events(fold), fold)
    writer.emit(ev.START, "Starting", config_hash=config_hash, config=config, model=config["model"]["name"])
    writer.emit(ev.COMPLETED, "Fold completed", checkpoint_sha256="x")
    paths.completion_record(fold).parent.mkdir(parents=True, exist_ok=True)
    paths.completion_record(fold).write_text("{}")
    paths.best_checkpoint(fold, config["model"]["name"]).write_bytes(b"ckpt")
    paths.metrics_json(fold).parent.mkdir(parents=True, exist_ok=True)
    paths.metrics_json(fold).write_text("{}")


def test_a_rerun_submits_only_what_is_not_complete_or_queued(tmp_path):
    cfg = build_run_config("cpu_quick")
    config = cfg.to_dict()
    paths = RunPaths(root=tmp_path)
    _complete(paths, 1, cfg.hash(), config)
    writer = ev.EventWriter(paths.events(2), 2)
    writer.emit(ev.START, "Starting", config_hash=cfg.hash(), config=config)  # interrupted: resubmitted
    got = sl.plan(paths, (1, 2, 3, 4), cfg.hash(), config, force=False, active={4: "77_4"})
    assert got.submit == (2, 3)
    assert got.held_back == {1: "completed with this config", 4: "still queued or running as task 77_4"}
    paths.best_checkpoint(1, config["model"]["name"]).unlink()  # a result missing its checkpoint runs again
    assert sl.plan(paths, (1,), cfg.hash(), config, force=False, active={}).submit == (1,)


def test_a_fold_completed_with_another_config_is_refused_unless_forced(tmp_path):
    old = build_run_config("cpu_quick", {"epochs": 2})
    new = build_run_config("cpu_quick", {"epochs": 3})
    paths = RunPaths(root=tmp_path)
    _complete(paths, 2, old.hash(), old.to_dict())
    with pytest.raises(FoldRefused, match=r"fold 2 completed, but the config differs \(train.epochs 2 → 3\)"):
        sl.plan(paths, (2,), new.hash(), new.to_dict(), force=False, active={})
    assert sl.plan(paths, (2,), new.hash(), new.to_dict(), force=True, active={}).submit == (2,)


def test_the_queue_is_read_per_task():
    tasks = [sl.Task("77", "1", "RUNNING", "n"), sl.Task("77", "3-5%2", "PENDING", "n"),
             sl.Task("78", "", "PENDING", "n-finish"), sl.Task("60", "2", "STOPPED", "n")]
    assert sl.active_folds(tasks, "n") == {1: "77_1", 3: "77_3", 4: "77_4", 5: "77_5", 2: "60_2"}  # listed = active


def test_a_resubmit_while_tasks_are_queued_holds_them_back(data, tmp_path, fake_slurm):
    run = tmp_path / "run"
    path = f"{fake_slurm}:{os.environ['PATH']}"
    first = _cli("slurm", "submit", "--folds", "1", "2", *TINY, *_inputs(data), "--run-root", str(run), cwd=tmp_path, path=path)
    assert first.returncode == 0, first.stderr
    (fake_slurm / "queue.txt").write_text("101|2|RUNNING\n102|N/A|PENDING\n")  # fold 1 ended (interrupted), 2 runs
    again = _cli("slurm", "submit", "--folds", "1", "2", *TINY, *_inputs(data), "--run-root", str(run), cwd=tmp_path, path=path)
    assert again.returncode == 0, again.stderr
    assert "fold 2: not submitted (still queued or running as task 101_2)" in again.stdout
    assert "job array 103 (--array=1)" in again.stdout
    assert "sbatch --dependency=afterany:103:101 " in again.stdout  # the report waits for fold 2's task too
    name = sl.Submission(run_root=run.resolve(), folds=(), fold_args=(), config_hash="").job_name
    assert f"--name={name},{name}-finish" in (fake_slurm / "squeue.calls").read_text()


def test_wait_follows_an_earlier_submission_still_running_a_fold(data, tmp_path, fake_slurm):
    run = tmp_path / "run"
    path = f"{fake_slurm}:{os.environ['PATH']}"
    assert _cli("slurm", "submit", "--folds", "2", *TINY, *_inputs(data), "--run-root", str(run), cwd=tmp_path,
                path=path).returncode == 0
    (fake_slurm / "queue.once").write_text("101|2|RUNNING\n")  # seen by the rerun's check; gone when it waits
    again = _cli("slurm", "submit", "--folds", "2", "--wait", "--poll-s", "0.1", *TINY, *_inputs(data),
                 "--run-root", str(run), cwd=tmp_path, path=path)
    assert "nothing to submit" in again.stdout and "[fold 2] pending" in again.stdout
    assert again.returncode == 1 and "fold 2 did not complete: pending" in again.stderr
    assert len((fake_slurm / "sbatch.calls").read_text().splitlines()) == 2  # nothing submitted the second time


def test_a_refused_finish_job_cancels_its_array(data, tmp_path, fake_slurm):
    sbatch = fake_slurm / "sbatch"
    sbatch.write_text(sbatch.read_text().replace('echo "$((100 + n));cluster"',
                                                 '[ "$n" = 2 ] && { echo "bad dependency" >&2; exit 1; }; echo "$((100 + n))"'))
    out = _cli("slurm", "submit", "--folds", "1", *TINY, *_inputs(data), "--run-root", str(tmp_path / "run"),
               cwd=tmp_path, path=f"{fake_slurm}:{os.environ['PATH']}")
    assert out.returncode == 1 and "bad dependency" in out.stderr
    assert (fake_slurm / "scancel.calls").read_text().split() == ["101"]


def test_resources_are_checked():
    with pytest.raises(ConfigError, match="--cpus-per-fold"):
        sl.Resources(cpus_per_fold=0).check()


def test_a_requeued_task_waits_for_the_lock_its_dead_predecessor_left(monkeypatch):
    from spectra_cv.runs import fold

    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    assert fold.lock_wait_s() == fold.LOCK_WAIT_S
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # Slurm's requeue: the node may have died holding it
    assert fold.lock_wait_s() == fold.REQUEUE_LOCK_WAIT_S > 90  # NFSv4's lease time; a stale lease's 60 s


def test_a_request_no_node_of_the_partition_can_meet_is_refused_before_queueing(data, tmp_path, fake_slurm):
    """The defaults (4 CPUs, 1 GPU per fold) on a partition of 2-CPU nodes without GPUs: refused with the
    options to change, nothing queued; what fits is submitted."""
    path = f"{fake_slurm}:{os.environ['PATH']}"
    out = _cli("slurm", "submit", "--folds", "1", "--partition", "cpu", *TINY, *_inputs(data), "--run-root", ".",
               cwd=tmp_path, path=path)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    for part in ("each fold asks for 1 GPU(s) but no node of partition cpu has any: pass --gpus-per-fold 0",
                 "each fold asks for 4 CPUs but the nodes of partition cpu have at most 2: pass --cpus-per-fold 2",
                 "Nothing was submitted"):
        assert part in out.stderr
    assert not (fake_slurm / "sbatch.calls").exists()
    assert _cli("slurm", "submit", "--folds", "1", "--partition", "cpu", "--gpus-per-fold", "0", "--cpus-per-fold",
                "2", *TINY, *_inputs(data), "--run-root", ".", cwd=tmp_path, path=path).returncode == 0
    assert len((fake_slurm / "sbatch.calls").read_text().splitlines()) == 2


def test_the_partition_offer_and_the_pending_reason_are_read_from_slurm():
    from spectra_cv.cluster.slurm_partition import mem_mb, parse_sinfo, request_problems

    text = "debug*|2|7900|(null)|up\ngpu|32|256000|gpu:a100:2(S:0),gpu:h100:4|up\ngpu|64|512000|(null)|drain\n"
    default = parse_sinfo(text, None)
    assert (default.partition, default.cpus, default.mem_mb, default.gpus) == ("debug", 2, 7900, 0)
    gpu = parse_sinfo(text, "gpu")
    assert (gpu.cpus, gpu.mem_mb, gpu.gpus) == (64, 512000, 6) and parse_sinfo(text, "none") is None
    assert request_problems(gpu, cpus=8, gpus=1, mem="64G") == []
    assert request_problems(gpu, cpus=8, gpus=8, mem="600G")[0].endswith("pass --gpus-per-fold 6 or fewer")
    assert mem_mb("32G") == 32768 and mem_mb("64000") == 64000


def test_wait_says_why_a_task_is_pending(tmp_path, monkeypatch):
    answers = iter([[sl.Task("101", "1", "PENDING", "n", "PartitionConfig")],
                    [sl.Task("101", "1", "RUNNING", "n")], []])
    monkeypatch.setattr(sl, "_queue_patiently", lambda name: next(answers))
    sub = sl.Submission(run_root=tmp_path, folds=(1,), fold_args=(), config_hash="")
    echoed: list[str] = []
    sl.wait(sub, sl.Submitted(tmp_path, sl.Plan(submit=(1,), held_back={}), "101", None), echoed.append, 0.0)
    assert echoed == ["fold 1: pending, PartitionConfig (job 101_1)", "fold 1: running (job 101_1)"]


def test_status_says_why_slurm_holds_a_submitted_fold_pending(data, tmp_path, fake_slurm):
    """`status` on a run root with `slurm submit` records: each fold whose task Slurm still holds pending
    is shown queued, with Slurm's reason; where squeue is not (the run root seen from elsewhere) nothing
    is added, and a failing squeue is a warning, never the status's failure."""
    run = tmp_path / "run"
    path = f"{fake_slurm}:{os.environ['PATH']}"
    out = _cli("slurm", "submit", "--folds", "1", "2", "--gpus-per-fold", "0", "--partition", "cpu",
               "--cpus-per-fold", "2", *TINY, *_inputs(data), "--run-root", str(run), cwd=tmp_path, path=path)
    assert out.returncode == 0, out.stderr
    (record,) = [json.loads(p.read_text()) for p in (run / "slurm").glob("*/submission.json")]
    name = record["job_name"]
    (fake_slurm / "queue.txt").write_text(f"101|1|PENDING|{name}|Resources\n101|2|RUNNING|{name}|None\n"
                                          f"102|N/A|PENDING|{name}-finish|Dependency\n")
    out = _cli("status", "--run-root", str(run), "--folds", "1", "2", cwd=tmp_path, path=path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "fold 1  not started  queued in Slurm, pending: Resources (job 101_1)"
    assert "queued" not in lines[1] and len(lines) == 2
    (tmp_path / "no-slurm").mkdir()
    bare = _cli("status", "--run-root", str(run), "--folds", "1", "2", cwd=tmp_path, path=str(tmp_path / "no-slurm"))
    assert bare.returncode == 0 and "Slurm" not in bare.stdout + bare.stderr
    (fake_slurm / "squeue").write_text("#!/bin/bash\necho 'slurm_load_jobs error: Unable to contact slurm controller' >&2\nexit 1\n")
    broken = _cli("status", "--run-root", str(run), "--folds", "1", cwd=tmp_path, path=path)
    assert broken.returncode == 0 and "Slurm's queue is not shown" in broken.stderr
    assert "Unable to contact" in broken.stderr and "queued" not in broken.stdout
