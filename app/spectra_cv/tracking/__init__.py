"""Experiment tracking without a server: each fold run exported to MLflow or TensorBoard, from its events.

``export_fold(paths, fold, backend)`` reads the fold's ``events.jsonl`` (``tracking.history``) and
writes one tracking run per run of the fold under ``<run root>/tracking/``: an MLflow store
(``tracking.mlflow_store``, read by ``mlflow ui --backend-store-uri sqlite:///…/mlflow.db``) or
TensorBoard event files (``tracking.tensorboard_files``, read by ``tensorboard --logdir``). Params
are the flattened config, metrics the per-epoch figures and the final scores beside the baselines,
artifacts the checkpoint, metrics JSON and report. Written from the events, a fold killed and
resumed is still one run; exporting again (at every fold end, or by hand with ``spectra-cv track``)
updates the same runs and never repeats a metric point.

The libraries are an optional extra (``pip install 'spectra-cv[tracking]'``), imported only by the
backend that is asked for. Exports of one run root take turns (a lock under ``tracking/``), so
folds finishing at once do not write the same store together.
"""

from __future__ import annotations

from pathlib import Path

from spectra_cv.errors import ConfigError, SpectraCVError
from spectra_cv.log import get_logger
from spectra_cv.paths import RunPaths
from spectra_cv.runs import events as ev
from spectra_cv.runs.coordinator import fold_alive
from spectra_cv.runs.locks import file_lock
from spectra_cv.tracking.history import TrackedRun, tracked_runs

log = get_logger("tracking")

MLFLOW = "mlflow"
TENSORBOARD = "tensorboard"
BACKENDS = (MLFLOW, TENSORBOARD)
INSTALL_HINT = "pip install 'spectra-cv[tracking]'"
LOCK_FILE = ".export.lock"


class TrackingError(SpectraCVError):
    """A tracking export failed; names the store and what to do."""


def missing_library(backend: str, exc: ImportError) -> ConfigError:
    """The error for a tracking library that cannot be imported: it names the fix."""
    return ConfigError(f"--tracking {backend} needs a library that is not installed ({exc}); "
                       f"install the tracking extra: {INSTALL_HINT}")


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ConfigError(f"--tracking {backend!r}: not a tracking backend; choose one of {', '.join(BACKENDS)}")


def tracking_dir(paths: RunPaths) -> Path:
    """``<run root>/tracking``: every backend writes under it."""
    return paths.root / "tracking"


def open_hint(paths: RunPaths, backend: str, uri: str | None = None) -> str:
    """The command that shows the exported runs (``mlflow ui …`` or ``tensorboard --logdir …``)."""
    _check_backend(backend)
    if backend == MLFLOW and uri:
        return f"the MLflow UI of {uri}"
    if backend == MLFLOW:
        from spectra_cv.tracking.mlflow_store import tracking_uri

        return f"mlflow ui --backend-store-uri {tracking_uri(paths)}"
    from spectra_cv.tracking.tensorboard_files import logdir

    return f"tensorboard --logdir {logdir(paths)}"


def _runs(paths: RunPaths, fold: int) -> list[TrackedRun]:
    """The fold's runs as the tracking store shows them; TrackingError when it has none."""

    events = ev.read_events(paths.events(fold))
    runs = tracked_runs(paths, fold, events, alive=fold_alive(paths, fold) if events else False)
    if not runs:
        raise _no_run(paths, fold)
    return runs


def _no_run(paths: RunPaths, fold: int) -> TrackingError:
    return TrackingError(f"fold {fold}: {paths.events(fold)} holds no run (the fold has not started); "
                         "run the fold first, or leave it out of --folds")


def require(backend: str) -> None:
    """Import ``backend``'s library now, so a missing one is reported before anything is written."""
    _check_backend(backend)
    if backend == MLFLOW:
        from spectra_cv.tracking import mlflow_store

        mlflow_store.require()
    else:
        from spectra_cv.tracking import tensorboard_files

        tensorboard_files.require()


def _export(paths: RunPaths, fold: int, backend: str, uri: str | None = None) -> Path | str:
    runs = _runs(paths, fold)
    if backend == MLFLOW:
        from spectra_cv.tracking import mlflow_store

        where: Path | str = mlflow_store.export(paths, runs, uri)
    else:
        from spectra_cv.tracking import tensorboard_files

        where = tensorboard_files.export(paths, fold, runs)
    log.info("fold %d: %d run(s) exported to %s (%s)", fold, len(runs), backend, where)
    return where


def _lock(paths: RunPaths):  # noqa: ANN202 - a context manager
    return file_lock(tracking_dir(paths) / LOCK_FILE, "the tracking export lock", blocking=True)


def export_fold(paths: RunPaths, fold: int, backend: str, uri: str | None = None) -> Path | str:
    """Export every run of ``fold`` (its events, checkpoint, metrics JSON, the report) to ``backend``.

    Returns where the runs are: the MLflow store's folder (``tracking/mlflow``) or the fold's
    TensorBoard folder (``tracking/tensorboard/fold_03``). Idempotent; safe to call while the fold
    runs (the latest run then shows as running). Raises ``ConfigError`` for an unknown backend or
    a missing library (naming ``pip install 'spectra-cv[tracking]'``), ``TrackingError`` for a
    fold without a run or a store the library refuses. ``uri``: MLflow's tracking server or store
    (None: the run root's own); the runs are the CV's parent run's children there.
    """
    require(backend)
    with _lock(paths):
        return _export(paths, fold, backend, uri)


def export_run(paths: RunPaths, backend: str, folds: list[int] | None = None,
               uri: str | None = None) -> list[Path | str]:
    """``export_fold`` for each of ``folds`` (None: every fold with events under ``logs/`` that has
    started; a listed fold that has not raises). Returns the paths, in fold order."""

    require(backend)
    if folds is None:
        folds = [f for f in paths.folds_with_events() if ev.runs_of(ev.read_events(paths.events(f)))]
        if not folds:
            raise TrackingError(f"{paths.root / 'logs'}: no fold has started under this run root; "
                                "check --run-root")
    chosen = sorted(set(folds))
    for fold in chosen:  # every listed fold has a run, before anything is written
        if not ev.runs_of(ev.read_events(paths.events(fold))):
            raise _no_run(paths, fold)
    with _lock(paths):
        return [_export(paths, fold, backend, uri) for fold in chosen]
