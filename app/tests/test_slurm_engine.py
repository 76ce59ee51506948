"""``spectra-cv slurm submit`` against a real Slurm (``scripts/slurm_local.sh up``; the CI cluster stage).

Skipped where no Slurm answers. Three folds two at a time must give what a plain ``cv`` of the same
config gives (audit logs, summary rows and the report's metrics, timings aside); a cancelled task
is the only fold the next submit runs, and its audit log reads as one run; the Docker container
branch (``--container-runtime docker``) runs a fold for real when the CPU image is there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from spectra_cv.paths import RunPaths
from spectra_cv.runs import events as ev

from runs_support import fold_args, messages, spectra_cv, summary_without_times  # noqa: E402

_NUMBER = re.compile(r"\d+\.\d+")


def _slurm_up() -> bool:
    if os.environ.get("SPECTRA_CV_ENGINE_TESTS") != "1":  # the unit stage never waits on a queue
        return False
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return False
    try:
        out = subprocess.run(["sinfo", "--noheader", "--format=%T"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and any(s in out.stdout for s in ("idle", "mix", "alloc"))


pytestmark = [pytest.mark.engine, pytest.mark.skipif(not _slurm_up(), reason="the cluster stage's: "
                                                     "SPECTRA_CV_ENGINE_TESTS=1 and a Slurm that answers "
                                                     "(scripts/slurm_local.sh up starts one)")]
FOLDS = ("1", "2", "3")
EPOCHS = 8  # long enough that a task is cancelled mid-training, well before its fold ends
TIMING = ("seconds", "_at", "per_s", "speed")


def _submit(data: Path, root: Path, *extra: str, epochs: int = EPOCHS, check: bool = True):
    args = ["slurm", "submit", "--folds", *FOLDS, "--parallel", "2", "--gpus-per-fold", "0", "--cpus-per-fold", "1",
            "--poll-s", "1", *fold_args(data, root, epochs=epochs), *extra]
    args[args.index("--run-root") + 1] = str(root)
    return spectra_cv(*args, cwd=root, check=check, timeout=900)


def _untimed(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=[c for c in frame.columns if any(t in c for t in TIMING)])


def _report_metrics(root: Path) -> pd.DataFrame:
    return _untimed(pd.read_csv(RunPaths(root=root).artifacts / "cv_metrics.csv"))


def _summary(root: Path) -> pd.DataFrame:
    frame = summary_without_times(root)
    return frame.drop(columns=[c for c in ("image", "code_version") if c in frame.columns])


def _submission(root: Path) -> dict:
    records = sorted((root / "slurm").glob("*/submission.json"))
    return json.loads(records[-1].read_text())


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> Path:
    """A plain ``cv`` of the same three folds and config."""
    root = tmp_path_factory.mktemp("plain_cv")
    spectra_cv("cv", "--folds", *FOLDS, *fold_args(data, root, epochs=EPOCHS), cwd=root, timeout=900)
    spectra_cv("report", "--run-root", ".", "--no-plots", cwd=root)
    return root


def test_a_job_array_gives_what_cv_gives(data, reference, tmp_path_factory):
    root = tmp_path_factory.mktemp("slurm_run")  # beside the reference: the same relative paths to the data
    out = _submit(data, root, "--wait")
    record = _submission(root)
    assert record["array"] == "1,2,3%2" and record["folds"] == [1, 2, 3]
    assert f"job array {record['array_job']} (--array=1,2,3%2)" in out.stdout
    assert f"--dependency=afterany:{record['array_job']}" in out.stdout
    assert [line for line in out.stdout.splitlines() if line.startswith("[fold ")] == [
        "[fold 1] completed", "[fold 2] completed", "[fold 3] completed"]
    folder = root / "slurm" / _latest(root)
    assert (folder / "folds.sbatch").read_text().count("#SBATCH --array=1,2,3%2") == 1  # kept as provenance
    assert "report: " in (folder / "finish.out").read_text()  # the dependent job ran the report
    assert _most_at_once(RunPaths(root=root)) == 2  # three folds, two at a time (--array=…%2 on two cores)
    for fold in (1, 2, 3):
        assert messages(RunPaths(root=root).audit_log(fold)) == messages(RunPaths(root=reference).audit_log(fold))
    pd.testing.assert_frame_equal(_summary(root), _summary(reference))
    pd.testing.assert_frame_equal(_report_metrics(root), _report_metrics(reference))
    again = _submit(data, root)  # rerun = resume: nothing left to run
    assert "nothing to submit" in again.stdout and len(list((root / "slurm").glob("*/submission.json"))) == 1


def _most_at_once(paths: RunPaths) -> int:
    """The most folds that were running at the same moment (from their first and last events)."""
    spans = []
    for fold in map(int, FOLDS):
        events = ev.read_events(paths.events(fold))
        spans.append((events[0].time, events[-1].time))
    moments = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    most = running = 0
    for _, step in moments:
        running += step
        most = max(most, running)
    return most


def _latest(root: Path) -> str:
    return sorted(p.name for p in (root / "slurm").iterdir() if p.is_dir())[-1]


def _wait_for(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _queue_empty(name: str) -> bool:
    out = subprocess.run(["squeue", "--noheader", f"--name={name},{name}-finish"], capture_output=True, text=True)
    return out.returncode == 0 and not out.stdout.strip()


def test_a_cancelled_task_is_the_only_fold_the_next_submit_runs(data, reference, tmp_path_factory):
    root = tmp_path_factory.mktemp("cancelled")  # beside the reference: the same relative paths to the data
    _submit(data, root)
    record = _submission(root)
    paths = RunPaths(root=root)
    last_state = paths.checkpoint_dir(2) / "last_state.pt"
    _wait_for(last_state.exists, 300, "fold 2 to finish its first epoch")  # then cancelled mid-training
    subprocess.run(["scancel", f"{record['array_job']}_2"], check=True)
    _wait_for(lambda: _queue_empty(record["job_name"]), 300, "the jobs to end")
    assert ev.fold_status(ev.read_events(paths.events(2))) == "running"  # cut off: no outcome recorded
    assert not paths.completion_record(2).exists()
    before = {f: paths.events(f).read_bytes() for f in (1, 3)}
    out = _submit(data, root, "--wait")
    assert "fold 1: not submitted (completed with this config)" in out.stdout
    assert "fold 3: not submitted (completed with this config)" in out.stdout
    assert _submission(root)["folds"] == [2] and _submission(root)["array"] == "2%2"
    assert {f: paths.events(f).read_bytes() for f in (1, 3)} == before  # the others did not run again
    resumed = [e for e in ev.read_events(paths.events(2)) if e.type == ev.RESUME and e.data.get("stage") == "train"]
    assert resumed and 1 <= resumed[0].data["after_epoch"] < EPOCHS  # training went on from its last epoch
    for fold in (1, 2, 3):  # and every audit log reads as one uninterrupted run
        assert messages(paths.audit_log(fold)) == messages(RunPaths(root=reference).audit_log(fold))
    pd.testing.assert_frame_equal(_summary(root), _summary(reference))


def _image() -> str | None:
    image = os.environ.get("SPECTRA_CV_TEST_IMAGE", "spectra-cv:cpu")
    if shutil.which("docker") is None:
        return None
    out = subprocess.run(["docker", "image", "inspect", image], capture_output=True, text=True)
    return image if out.returncode == 0 else None


@pytest.mark.skipif(_image() is None, reason="no Docker engine with the CPU image (make build VARIANT=cpu)")
def test_the_container_branch_runs_a_fold_in_docker(data, reference, tmp_path_factory):
    root = tmp_path_factory.mktemp("in_docker")  # beside the reference: the same relative paths to the data
    os.chmod(root, 0o777)
    image = _image()
    args = ["slurm", "submit", "--folds", "1", "--gpus-per-fold", "0", "--cpus-per-fold", "1", "--poll-s", "1",
            "--container", str(image), "--container-runtime", "docker", "--wait", *fold_args(data, root, epochs=EPOCHS)]
    args[args.index("--run-root") + 1] = str(root)
    out = spectra_cv(*args, cwd=root, timeout=900)
    assert "[fold 1] completed" in out.stdout, out.stdout
    script = (root / "slurm" / _latest(root) / "folds.sbatch").read_text()
    assert "docker run --rm --init" in script and "--cap-drop ALL" in script and "--read-only" in script
    paths = RunPaths(root=root)
    start = ev.read_events(paths.events(1))[0]
    assert start.data["image"] == image  # provenance: the fold ran inside the image
    # the image has no compiler, so its fold runs the eager scan where the host ran the fused kernel:
    # the same run line by line, its figures equal to float32 rounding (a few thousandths of a dB)
    ours, theirs = messages(paths.audit_log(1)), messages(RunPaths(root=reference).audit_log(1))
    assert [_NUMBER.sub("#", m) for m in ours] == [_NUMBER.sub("#", m) for m in theirs]
    for mine, other in zip(ours, theirs):
        for a, b in zip(_NUMBER.findall(mine), _NUMBER.findall(other)):
            assert float(a) == pytest.approx(float(b), abs=0.01), (mine, other)


def test_a_request_the_real_partition_cannot_meet_is_refused_before_queueing(data, tmp_path):
    """The defaults (4 CPUs and 1 GPU per fold) against this single-node Slurm without GPUs: sinfo is asked,
    the request refused with the options to change, nothing queued (no array left PENDING for ever)."""
    args = ["slurm", "submit", "--folds", "1", *fold_args(data, tmp_path, epochs=1)]
    args[args.index("--run-root") + 1] = str(tmp_path)
    out = spectra_cv(*args, cwd=tmp_path, check=False, timeout=120)
    assert out.returncode == 1 and "pass --gpus-per-fold 0" in out.stderr and "Nothing was submitted" in out.stderr
    assert not list(tmp_path.glob("slurm/*/submission.json"))
