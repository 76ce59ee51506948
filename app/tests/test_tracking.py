"""Experiment tracking (spectra_cv.tracking): fold events exported to a real MLflow store and real
TensorBoard event files, read back with each library's own reader.

The folds are written event by event as the fold process writes them (START with the config,
EPOCH per epoch, a kill and a resume that repeats epochs, TRAIN_DONE, EVALUATED, COMPLETED), with
tiny stand-ins for the checkpoint, metrics JSON and report.
"""

from __future__ import annotations

import builtins
import json

import pytest
from click.testing import CliRunner

from spectra_cv.errors import ConfigError
from spectra_cv.io import sha256_file
from spectra_cv.paths import RunPaths
from spectra_cv.runs import events as ev
from spectra_cv.tracking import BACKENDS, TrackingError, export_fold, export_run
from spectra_cv.tracking.history import flatten_config, surviving_epochs, tracked_runs
from spectra_cv.train.presets import cpu_quick

CONFIG = cpu_quick().to_dict()
CONFIG_HASH = cpu_quick().hash()
MODEL = CONFIG["model"]["name"]
BASELINES = ("identity", "gaussian", "ridge", "ridge_wiener")


# --- building a fold's events and files ---------------------------------------------------------
def _val_psnr(fold: int, epoch: int, attempt: int) -> float:
    """Distinct per fold, epoch and attempt, so a superseded value cannot pass for the kept one."""
    return 40.0 + fold + epoch + 0.25 * attempt


def _epoch(w: ev.EventWriter, fold: int, epoch: int, attempt: int, validated: bool = True) -> None:
    psnr = _val_psnr(fold, epoch, attempt)
    w.emit(ev.EPOCH, None, epoch=epoch, epochs=6, train_loss=1.0 / epoch + attempt, lr=1e-3 / epoch,
           val_loss=0.5 / epoch if validated else None, val_psnr=psnr if validated else None,
           val_sam=1.0 / epoch if validated else None, best_epoch=epoch, best_val_psnr=psnr, best_val_sam=1.0 / epoch,
           elapsed_s=2.0 * epoch, eta_s=None if epoch == 1 else 2.0 * (6 - epoch), examples_per_sec=100.0 + attempt)


def _start(paths: RunPaths, fold: int, **extra) -> ev.EventWriter:
    w = ev.EventWriter(paths.events(fold), fold)
    w.emit(ev.START, f"Starting fold_{fold:02d}", config_hash=CONFIG_HASH, config=CONFIG, preset=CONFIG["preset"],
           model=MODEL, seed=0, code_version="0.1.0+gtest", image=None, library_versions={"torch": "x"}, **extra)
    w.emit(ev.TRAIN, "Launching training run")
    return w


def _scores(fold: int, shift: float = 0.0) -> dict:
    table = {"model": {"psnr_mean": 50.0 + fold + shift, "psnr_std": 1.0, "sam_deg_mean": 0.3}}
    for i, name in enumerate(BASELINES):
        table[name] = {"psnr_mean": 44.0 + i + shift, "psnr_std": 1.5, "sam_deg_mean": 0.5 + i / 10}
    return table


def _finish(paths: RunPaths, w: ev.EventWriter, fold: int, content: bytes = b"weights") -> str:
    checkpoint = paths.best_checkpoint(fold, MODEL)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.write_bytes(content + bytes([fold]))
    sha = sha256_file(checkpoint)
    w.emit(ev.TRAIN_DONE, "Training completed successfully", checkpoint_sha256=sha, best_epoch=6, epochs_run=6,
           stopped_because="max epochs", val_psnr=_val_psnr(fold, 6, 1), val_sam=1 / 6, parameters=1234, seconds=12.5)
    w.emit(ev.CHECKPOINT, "Checkpoint ready", checkpoint_sha256=sha)
    metrics = paths.metrics_json(fold)
    metrics.parent.mkdir(parents=True, exist_ok=True)
    metrics.write_text(json.dumps({"fold": fold, "checkpoint_sha256": sha, "splits": {}}))
    w.emit(ev.EVALUATED, f"Test metrics: PSNR {50 + fold:.3f} dB", checkpoint_sha256=sha, test=_scores(fold),
           val=_scores(fold, 0.5), control={"model": {"psnr_mean": 48.0, "sam_deg_mean": None}}, baseline_params={})
    w.emit(ev.COMPLETED, "Fold completed", checkpoint_sha256=sha, total_seconds=20.0)
    paths.report_md.write_text("# Cross-validation report\n")
    return sha


def _killed(paths: RunPaths, fold: int) -> ev.EventWriter:
    """A fold killed during epoch 6: epochs 1-5 ran, the last state saved after epoch 3."""
    w = _start(paths, fold)
    for epoch in range(1, 6):
        _epoch(w, fold, epoch, attempt=0, validated=epoch != 2)
    return w


def _resume_and_finish(paths: RunPaths, w: ev.EventWriter, fold: int) -> str:
    """The rerun: resumes after the last event, training resumes after epoch 3 and redoes 4-6."""
    w.emit(ev.RESUME, None, after=len(w.events) - 1)
    w.emit(ev.RESUME, None, stage="train", after_epoch=3, state="checkpoints/last_state.pt")
    for epoch in range(4, 7):
        _epoch(w, fold, epoch, attempt=1)
    return _finish(paths, w, fold)


def _completed(paths: RunPaths, fold: int) -> str:
    w = _start(paths, fold)
    for epoch in range(1, 7):
        _epoch(w, fold, epoch, attempt=1)
    return _finish(paths, w, fold)


def _expected_val_psnr(fold: int, resumed: bool = True) -> list[tuple[int, float]]:
    """(epoch, val PSNR) once per epoch: epoch 2 has no validation; 1-3 from before the kill, 4-6 after."""
    epochs = range(1, 7) if resumed else range(1, 6)
    return [(e, _val_psnr(fold, e, 1 if resumed and e > 3 else 0)) for e in epochs if e != 2]


def _expected_params() -> dict[str, str]:
    params = flatten_config(CONFIG)
    params.update(config_hash=CONFIG_HASH, code_version="0.1.0+gtest")
    return params


# --- the events → runs rules --------------------------------------------------------------------
def test_superseded_epochs_leave_each_epoch_once_with_the_values_after_the_resume(tmp_path):
    paths = RunPaths(root=tmp_path)
    w = _killed(paths, 1)
    w.emit(ev.RESUME, None, stage="train", after_epoch=3, state="x")
    # resumed, killed again before any new epoch: epochs 4-5 were lost and are gone already
    assert list(surviving_epochs(ev.current_run(w.events))) == [1, 2, 3]
    _resume_and_finish(paths, w, 1)
    kept = surviving_epochs(ev.current_run(w.events))
    assert [(e, x.data.get("val_psnr")) for e, x in kept.items() if e != 2] == _expected_val_psnr(1)
    # a restart from epoch 1 without a resume event (no last state): everything before is superseded
    _epoch(w, 1, 1, attempt=7)
    assert list(surviving_epochs(ev.current_run(w.events))) == [1]


def test_a_fold_run_carries_its_config_scores_and_artifacts_and_a_retrain_is_another_run(tmp_path):
    paths = RunPaths(root=tmp_path)
    w = _killed(paths, 3)
    old_sha = _resume_and_finish(paths, w, 3)
    (run,) = tracked_runs(paths, 3, ev.read_events(paths.events(3)))
    assert run.name == "fold_03" and run.status == "completed" and run.params == _expected_params()
    assert run.scores["test"]["ridge"]["psnr_mean"] == 46.0 and run.scores["control"]["model"] == {"psnr_mean": 48.0}
    assert [a.name for a in run.artifacts] == [f"{MODEL}_best.pt", "fold_03_metrics.json", "cv_report.md"]
    assert run.artifacts[0].sha256 == old_sha and run.note.startswith("Test metrics: PSNR 53.000")
    # a forced retrain writes its own checkpoint beside (staged), then swaps it in: a second run
    w.emit(ev.START, "Starting fold_03", config_hash=CONFIG_HASH, config=CONFIG, model=MODEL, staged=True)
    _epoch(w, 3, 1, attempt=2)
    first, second = tracked_runs(paths, 3, ev.read_events(paths.events(3)))
    assert first.key != second.key and second.status == "interrupted" and list(second.epochs) == [1]
    assert [a.name for a in first.artifacts] == [f"{MODEL}_best.pt", "fold_03_metrics.json", "cv_report.md"]
    new_sha = _finish(paths, w, 3, content=b"retrained")
    first, second = tracked_runs(paths, 3, ev.read_events(paths.events(3)))
    assert first.artifacts == [] and new_sha != old_sha  # its checkpoint and metrics were replaced by the retrain
    assert [a.sha256 for a in second.artifacts][:1] == [new_sha]


# --- MLflow ---------------------------------------------------------------------------------------
def _mlflow_state(paths: RunPaths) -> dict[int, dict]:
    """Every active MLflow run, read back with MLflow's own client, by fold."""
    from mlflow.tracking import MlflowClient

    from spectra_cv.tracking.mlflow_store import EXPERIMENT, tracking_uri

    client = MlflowClient(tracking_uri=tracking_uri(paths))
    experiment = client.get_experiment_by_name(EXPERIMENT)
    state: dict[int, dict] = {}
    for run in client.search_runs([experiment.experiment_id]):
        if run.data.tags.get("spectra_cv.kind") == "cross-validation":
            continue  # the CV's parent run (test_the_folds_are_children_of_one_cv_run)
        fold = int(run.data.tags["spectra_cv.fold"])
        assert fold not in state, f"two MLflow runs for fold {fold}"
        state[fold] = {
            "id": run.info.run_id, "name": run.info.run_name, "status": run.info.status, "params": run.data.params,
            "tags": run.data.tags, "metrics": run.data.metrics,
            "history": {key: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
                        for key in run.data.metrics},
            "artifacts": sorted(a.path for a in client.list_artifacts(run.info.run_id)),
        }
    return state


def test_mlflow_one_run_per_fold_through_a_kill_and_a_resume_and_again_on_every_export(tmp_path):
    pytest.importorskip("mlflow", reason="the tracking extra: pip install 'spectra-cv[tracking]'")
    paths = RunPaths(root=tmp_path / "run")
    w = _killed(paths, 1)
    w2 = _start(paths, 2)  # fold 2 fails after epoch 3; its retry will resume after that epoch
    for epoch in range(1, 4):
        _epoch(w2, 2, epoch, attempt=1)
    w2.emit(ev.FAILED, "Training failed: RuntimeError: disk full", stage="train", error="RuntimeError: disk full")
    assert export_run(paths, "mlflow") == [paths.root / "tracking" / "mlflow"] * 2

    state = _mlflow_state(paths)
    assert sorted(state) == [1, 2]
    killed = state[1]
    assert killed["status"] == "KILLED" and killed["tags"]["spectra_cv.status"] == "interrupted"
    assert killed["history"]["val/psnr"] == _expected_val_psnr(1, resumed=False)
    assert [s for s, _ in killed["history"]["train/loss"]] == [1, 2, 3, 4, 5]
    assert killed["artifacts"] == []
    failed = state[2]
    assert failed["status"] == "FAILED" and failed["tags"]["spectra_cv.error"] == "RuntimeError: disk full"

    first_ids = {fold: run["id"] for fold, run in state.items()}
    _resume_and_finish(paths, w, 1)
    w2.emit(ev.RESUME, "Retrying fold_02", after=len(w2.events) - 1)
    w2.emit(ev.RESUME, None, stage="train", after_epoch=3, state="x")  # nothing exported is superseded
    for epoch in range(4, 7):
        _epoch(w2, 2, epoch, attempt=1)
    _finish(paths, w2, 2)
    export_fold(paths, 1, "mlflow")
    export_fold(paths, 2, "mlflow")
    state = _mlflow_state(paths)
    assert sorted(state) == [1, 2]  # the resumed fold is still one run
    # fold 2's run was topped up; fold 1's held epochs 4-5 of the killed attempt, which MLflow cannot
    # delete: it was logged afresh (the old one is deleted, so search_runs sees one run per fold)
    assert state[2]["id"] == first_ids[2] and state[1]["id"] != first_ids[1]
    fold1 = state[1]
    assert fold1["name"] == "fold_01" and fold1["status"] == "FINISHED"
    assert fold1["params"] == _expected_params()
    assert fold1["history"]["val/psnr"] == _expected_val_psnr(1)  # each epoch once, 4-6 from after the resume
    for key, history in fold1["history"].items():
        assert len({s for s, _ in history}) == len(history), f"{key}: a step logged twice: {history}"
    assert [s for s, _ in fold1["history"]["train/lr"]] == [1, 2, 3, 4, 5, 6]
    assert fold1["metrics"]["score/test/model/psnr_mean"] == 51.0
    for i, name in enumerate(BASELINES):
        assert fold1["metrics"][f"score/test/{name}/psnr_mean"] == 44.0 + i
        assert fold1["metrics"][f"score/val/{name}/sam_deg_mean"] == pytest.approx(0.5 + i / 10)
    assert fold1["metrics"]["score/control/model/psnr_mean"] == 48.0 and fold1["metrics"]["score/best_epoch"] == 6
    assert fold1["artifacts"] == sorted([f"{MODEL}_best.pt", "fold_01_metrics.json", "cv_report.md"])
    assert fold1["tags"]["mlflow.note.content"].startswith("Test metrics: PSNR 51.000")
    assert state[2]["params"] == _expected_params() and state[2]["status"] == "FINISHED"
    assert "spectra_cv.error" not in state[2]["tags"]  # the retry put the failure right
    assert state[2]["history"]["val/psnr"] == [(e, _val_psnr(2, e, 1)) for e in range(1, 7)]

    export_run(paths, "mlflow")  # what every fold end does: nothing new, nothing twice
    assert _mlflow_state(paths) == state
    copied = paths.root / "tracking" / "mlflow" / "artifacts" / fold1["id"] / "artifacts" / f"{MODEL}_best.pt"
    assert copied.read_bytes() == paths.best_checkpoint(1, MODEL).read_bytes()

    moved = RunPaths(root=paths.root.rename(tmp_path / "moved"))  # MLflow's artifact folder is absolute
    with pytest.raises(TrackingError, match=r"recorded at .*/run/tracking/mlflow/artifacts.*"
                                            r"remove .*moved/tracking/mlflow"):
        export_fold(moved, 1, "mlflow")

    store = moved.root / "tracking" / "mlflow" / "mlflow.db"  # a damaged database: named, with the repair
    store.write_bytes(store.read_bytes()[: store.stat().st_size // 2])
    with pytest.raises(TrackingError, match=r"mlflow.db: the MLflow store cannot be read \(database disk image is "
                                            r"malformed\): it is damaged. Move it aside"):
        export_fold(moved, 1, "mlflow")


# --- TensorBoard ------------------------------------------------------------------------------------
def _tensorboard_state(paths: RunPaths) -> dict[str, dict]:
    """Every TensorBoard run under the log dir, read back with TensorBoard's own EventAccumulator."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logdir = paths.root / "tracking" / "tensorboard"
    state = {}
    for folder in sorted(p.parent for p in logdir.rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
        acc.Reload()
        tags = acc.Tags()
        state[folder.relative_to(logdir).as_posix()] = {
            "scalars": {t: [(s.step, s.value) for s in acc.Scalars(t)] for t in tags["scalars"]},
            "text": {t: acc.Tensors(t)[0].tensor_proto.string_val[0].decode() for t in tags["tensors"]},
            "hparams": sorted(acc.PluginTagToContent("hparams")),
        }
    return state


def test_tensorboard_one_run_per_fold_through_a_kill_and_a_resume_rewritten_whole(tmp_path):
    pytest.importorskip("tensorboard", reason="the tracking extra: pip install 'spectra-cv[tracking]'")
    paths = RunPaths(root=tmp_path / "run")
    w = _killed(paths, 1)
    _completed(paths, 2)
    assert export_run(paths, "tensorboard") == [paths.root / "tracking" / "tensorboard" / f"fold_0{f}" for f in (1, 2)]
    state = _tensorboard_state(paths)
    assert [name.split("/")[0] for name in state] == ["fold_01", "fold_02"]
    killed = state[next(n for n in state if n.startswith("fold_01/"))]
    assert killed["scalars"]["val/psnr"] == _expected_val_psnr(1, resumed=False)  # exact in float32

    _resume_and_finish(paths, w, 1)
    export_fold(paths, 1, "tensorboard")
    state = _tensorboard_state(paths)
    assert len(state) == 2
    fold1 = state[next(n for n in state if n.startswith("fold_01/"))]
    assert fold1["scalars"]["val/psnr"] == _expected_val_psnr(1)
    assert [s for s, _ in fold1["scalars"]["train/loss"]] == [1, 2, 3, 4, 5, 6]
    assert fold1["scalars"]["score/test/model/psnr_mean"] == [(0, 51.0)]
    for i, name in enumerate(BASELINES):
        assert fold1["scalars"][f"score/test/{name}/psnr_mean"] == [(0, 44.0 + i)]
    config = json.loads("\n".join(line[4:] for line in fold1["text"]["config/text_summary"].splitlines()))
    assert config == _expected_params()
    assert "| status | completed |" in fold1["text"]["run/text_summary"]
    for artifact in (f"{MODEL}_best.pt", "fold_01_metrics.json", "cv_report.md"):
        assert artifact in fold1["text"]["artifacts/text_summary"]
    assert "ridge_wiener" in fold1["text"]["scores/text_summary"]
    assert fold1["hparams"] == ["_hparams_/experiment", "_hparams_/session_end_info", "_hparams_/session_start_info"]

    export_run(paths, "tensorboard")
    assert _tensorboard_state(paths) == state
    leftovers = [p.name for p in (paths.root / "tracking" / "tensorboard").iterdir() if p.name.startswith(".")]
    assert leftovers == []


# --- errors and the command line -------------------------------------------------------------------
@pytest.mark.parametrize("backend, module", [("mlflow", "mlflow"), ("tensorboard", "torch.utils.tensorboard")])
def test_a_missing_library_is_a_project_error_that_names_the_extra(tmp_path, monkeypatch, backend, module):
    paths = RunPaths(root=tmp_path)
    _completed(paths, 1)
    real_import = builtins.__import__

    def failing_import(name, *args, **kwargs):
        if name == module or name.startswith(module + "."):
            raise ImportError(f"No module named {module!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", failing_import)
    with pytest.raises(ConfigError, match=r"pip install 'spectra-cv\[tracking\]'"):
        export_fold(paths, 1, backend)
    assert not (tmp_path / "tracking").exists()  # nothing written

    from spectra_cv.cli import main

    out = CliRunner().invoke(main, ["-q", "track", "--run-root", str(tmp_path), "--tracking", backend])
    assert out.exit_code == 1 and "spectra-cv[tracking]" in out.output


@pytest.mark.parametrize("args, env, expected", [
    ([], {}, None),
    (["--tracking-uri", "http://lab:5000"], {}, "mlflow"),  # the URI given: MLflow, without --tracking
    ([], {"MLFLOW_TRACKING_URI": "http://lab:5000"}, None),  # a lab's environment alone starts no tracking
    (["--tracking", "mlflow"], {"MLFLOW_TRACKING_URI": "http://lab:5000"}, "mlflow"),
    (["--tracking", "tensorboard"], {"MLFLOW_TRACKING_URI": "http://lab:5000"}, "tensorboard"),
    (["--tracking", "tensorboard", "--tracking-uri", "http://lab:5000"], {}, "usage"),
])
def test_a_tracking_uri_on_the_command_line_means_mlflow_and_never_tensorboard(args, env, expected):
    import click

    from spectra_cv.cli.options import tracking_backend, tracking_uri_option

    @click.command()
    @click.option("--tracking", type=click.Choice(BACKENDS), default=None)
    @tracking_uri_option
    def command(tracking, tracking_uri):
        click.echo(f"backend={tracking_backend(tracking, tracking_uri)}")

    out = CliRunner().invoke(command, args, env={"MLFLOW_TRACKING_URI": None, **env})
    if expected == "usage":
        assert out.exit_code == 2 and "--tracking-uri" in out.output and "--tracking mlflow" in out.output
    else:
        assert out.exit_code == 0 and out.output == f"backend={expected}\n", out.output


def test_track_needs_a_backend_or_a_uri(tmp_path):
    from spectra_cv.cli import main

    out = CliRunner().invoke(main, ["track", "--run-root", str(tmp_path)], env={"MLFLOW_TRACKING_URI": None})
    assert out.exit_code == 2 and "--tracking" in out.output


def test_track_command_exports_the_folds_asked_for_and_refuses_one_not_started(tmp_path):
    pytest.importorskip("tensorboard")
    from spectra_cv.cli import main

    paths = RunPaths(root=tmp_path)
    _completed(paths, 1)
    _completed(paths, 3)
    runner = CliRunner()
    out = runner.invoke(main, ["-q", "track", "--run-root", str(tmp_path), "--tracking", "tensorboard",
                               "--folds", "1", "3"])
    assert out.exit_code == 0, out.output
    assert "open with: tensorboard --logdir" in out.output
    assert sorted(p.name for p in (tmp_path / "tracking" / "tensorboard").iterdir()) == ["fold_01", "fold_03"]
    out = runner.invoke(main, ["-q", "track", "--run-root", str(tmp_path), "--tracking", "tensorboard", "--folds", "2"])
    assert out.exit_code == 1 and "fold 2:" in out.output and "has not started" in out.output
    out = runner.invoke(main, ["track", "--run-root", str(tmp_path), "--tracking", "wandb"])
    assert out.exit_code == 2 and "wandb" in out.output
    with pytest.raises(TrackingError, match="no fold has started"):
        export_run(RunPaths(root=tmp_path / "empty"), "tensorboard")
    assert BACKENDS == ("mlflow", "tensorboard")


def test_a_real_fold_run_with_tracking_exports_itself_when_it_ends(uninterrupted, data, tmp_path):
    """`fold --tracking tensorboard` (what cv forwards to every fold): the rerun of a completed fold
    skips it, and the fold's runs are exported on the way out, epoch events included."""
    import shutil

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from runs_support import fold_args, spectra_cv

    root = tmp_path / "run"
    shutil.copytree(uninterrupted, root, ignore=shutil.ignore_patterns("*.lock"))
    out = spectra_cv("fold", "--fold", "1", *fold_args(data, root), "--tracking", "tensorboard", cwd=root)
    assert "[fold 1] skipped" in out.stdout
    runs = [p for p in (root / "tracking" / "tensorboard" / "fold_01").rglob("events.out.tfevents.*")]
    assert runs, list((root / "tracking").rglob("*"))
    scalars = set()
    for path in runs:
        acc = EventAccumulator(str(path.parent))
        acc.Reload()
        scalars |= set(acc.Tags()["scalars"])
    assert any("val_psnr" in tag for tag in scalars), scalars


def test_a_broken_tracking_store_is_a_warning_not_the_folds_failure(uninterrupted, data, tmp_path):
    """Tracking is a side effect: a store that cannot be written (here a file where its folder goes)
    leaves the completed fold's exit status 0, with a warning that names the fix."""
    import shutil

    from runs_support import fold_args, spectra_cv

    root = tmp_path / "run"
    shutil.copytree(uninterrupted, root, ignore=shutil.ignore_patterns("*.lock"))
    (root / "tracking").write_text("not a folder\n")
    out = spectra_cv("fold", "--fold", "1", *fold_args(data, root), "--tracking", "tensorboard", cwd=root,
                     check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "[fold 1] skipped" in out.stdout
    assert "not exported to tensorboard" in out.stderr and "spectra-cv track --tracking tensorboard --folds 1" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.slow  # ~6 s: two reports in their own processes (make test-slow, in .ci/run)
def test_report_with_tracking_exports_the_run_and_a_broken_store_leaves_the_report_standing(uninterrupted, tmp_path):
    """`report --tracking …` exports the folds and the CV run with the report's files; a store that
    cannot be written is a warning naming the fix, and the report is written all the same (exit 0)."""
    import shutil

    from runs_support import spectra_cv

    root = tmp_path / "run"
    shutil.copytree(uninterrupted, root, ignore=shutil.ignore_patterns("*.lock"))
    out = spectra_cv("report", "--run-root", ".", "--no-plots", "--tracking", "tensorboard", cwd=root)
    assert "tensorboard: " in out.stdout and (root / "tracking" / "tensorboard" / "fold_01").is_dir()
    shutil.rmtree(root / "tracking")
    (root / "tracking").write_text("not a folder\n")
    RunPaths(root=root).report_md.unlink()
    out = spectra_cv("report", "--run-root", ".", "--no-plots", "--tracking", "tensorboard", cwd=root, check=False)
    assert out.returncode == 0 and RunPaths(root=root).report_md.is_file(), out.stderr[-2000:]
    assert "not exported to tensorboard" in out.stderr and "spectra-cv track --tracking tensorboard" in out.stderr
    assert "Traceback" not in out.stderr


def test_the_folds_are_children_of_one_cv_run_in_any_store_mlflow_supports(tmp_path):
    """--tracking-uri: the runs go to that store (here another SQLite database, as a lab's server would
    take them), each fold run a child of one parent CV run that carries the across-fold figures and the
    report with its plots; the run root's own store is not written."""
    pytest.importorskip("mlflow", reason="the tracking extra: pip install 'spectra-cv[tracking]'")
    from mlflow.tracking import MlflowClient

    from spectra_cv.runs.coordinator import Coordinator

    paths = RunPaths(root=tmp_path / "run")
    _completed(paths, 1)
    _killed(paths, 2)
    Coordinator(paths).sync()
    paths.plots_dir.mkdir(parents=True)
    (paths.plots_dir / "fold_metrics.png").write_bytes(b"\x89PNG fake")
    paths.report_md.write_text("# Cross-validation report\n")
    uri = f"sqlite:///{tmp_path / 'lab' / 'mlflow.db'}"
    (tmp_path / "lab").mkdir()
    export_run(paths, "mlflow", uri=uri)
    export_run(paths, "mlflow", uri=uri)  # again: nothing twice
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("spectra-cv").experiment_id])
    parents = [r for r in runs if r.data.tags.get("spectra_cv.kind") == "cross-validation"]
    assert len(parents) == 1 and len(runs) == 3
    parent = parents[0]
    assert {r.data.tags.get("mlflow.parentRunId") for r in runs if r is not parent} == {parent.info.run_id}
    assert parent.data.metrics["folds_completed"] == 1.0 and "cv_test_psnr_mean" in parent.data.metrics
    assert len(client.get_metric_history(parent.info.run_id, "folds_completed")) == 1
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert "cv_report.md" in artifacts and "plots" in artifacts
    assert [a.path for a in client.list_artifacts(parent.info.run_id, "plots")] == ["plots/fold_metrics.png"]
    assert not (paths.root / "tracking" / "mlflow" / "mlflow.db").exists()
