"""The MLflow backend: each fold run as an MLflow run in a server-less store under the run root.

The store is ``<run root>/tracking/mlflow/``: an SQLite database (``mlflow.db``) and the artifact
folder beside it. MLflow 3 refuses its old file store unless ``MLFLOW_ALLOW_FILE_STORE`` is set
(it is in maintenance mode), while ``mlflow ui --backend-store-uri sqlite:///…/mlflow.db`` reads
SQLite with no server running, so SQLite it is (mlflow-skinny plus SQLAlchemy and Alembic write it).

Idempotent: a run is found again by its ``spectra_cv.run_key`` tag, and an export logs only the
metric points, params, tags and artifacts it lacks (MLflow's SQL store also ignores a point logged
twice). MLflow cannot delete metric points, so when a run holds a point the events no longer
describe — an epoch exported before a kill and redone after the resume — the run is deleted and
logged afresh: the store still holds one (active) run per fold run, with each step once.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from spectra_cv.log import get_logger
from spectra_cv.paths import RunPaths
from spectra_cv.tracking import TrackingError, missing_library
from spectra_cv.tracking.history import Point, TrackedRun

log = get_logger("tracking.mlflow")

STORE_DIR = "mlflow"
DB_FILE = "mlflow.db"
ARTIFACTS_DIR = "artifacts"
EXPERIMENT = "spectra-cv"
"""One experiment per store: the store lives under one run root."""
TAG = "spectra_cv."
KEY_TAG = f"{TAG}run_key"
ARTIFACT_TAG = f"{TAG}artifact_sha256."
NOTE_TAG = "mlflow.note.content"
PARENT_TAG = "mlflow.parentRunId"
"""MLflow's own tag: the UI nests a run under the run it names."""
STATUS = {"completed": "FINISHED", "failed": "FAILED", "interrupted": "KILLED", "running": "RUNNING"}
# log_batch limits of the MLflow API (per request)
MAX_PARAMS, MAX_TAGS, MAX_METRICS = 100, 100, 1000


def store_dir(paths: RunPaths) -> Path:
    return paths.root / "tracking" / STORE_DIR


def tracking_uri(paths: RunPaths) -> str:
    """``sqlite:///<absolute path>/mlflow.db``: what ``mlflow ui --backend-store-uri`` takes."""
    return f"sqlite:///{(store_dir(paths) / DB_FILE).resolve().as_posix()}"


class _Api:
    """The MLflow names this backend uses, imported on first use."""

    def __init__(self) -> None:
        # an export must not phone home; MLflow ≥ 3.2 sends usage telemetry unless told not to
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        try:
            import alembic  # noqa: F401 - the SQLite store's schema migrations
            import sqlalchemy  # noqa: F401 - the SQLite store
            from mlflow.entities import Metric, Param, RunTag, ViewType
            from mlflow.exceptions import MlflowException
            from mlflow.tracking import MlflowClient
            from sqlalchemy.exc import SQLAlchemyError
        except ImportError as exc:
            raise missing_library("mlflow", exc) from exc
        self.Client, self.Metric, self.Param, self.RunTag = MlflowClient, Metric, Param, RunTag
        self.ViewType, self.Error = ViewType, MlflowException
        self.StoreError = (SQLAlchemyError, sqlite3.Error)


def require() -> None:
    """Raise the install hint (``ConfigError``) unless MLflow and its SQLite store import."""
    _Api()


def export(paths: RunPaths, runs: list[TrackedRun], uri: str | None = None) -> Path | str:
    """Write ``runs`` (one fold's) as children of the CV's parent run, and the parent's aggregates and
    report: into ``uri`` (a tracking server or any store MLflow supports) or the run root's own store.
    Returns where: the store's folder, or ``uri``."""
    api = _Api()
    folder = store_dir(paths)
    if uri is None:
        folder.mkdir(parents=True, exist_ok=True)
    try:
        client = api.Client(tracking_uri=uri or tracking_uri(paths))
        experiment = _experiment(client, folder) if uri is None else _remote_experiment(client)
        parent = _parent(api, client, experiment, paths)
        for run in runs:
            _sync(api, client, experiment, run, parent)
        sync_parent(api, client, parent, paths)
    except (api.Error, *api.StoreError) as exc:
        damage = _database_damage(exc)
        if damage is not None:
            raise TrackingError(f"{folder / DB_FILE}: the MLflow store cannot be read ({damage}): it is damaged. Move "
                                f"it aside (mv {folder} {folder}.damaged) and export again: every run is rebuilt from "
                                "the events, which the store only mirrors") from exc
        raise TrackingError(f"{folder / DB_FILE}: MLflow refused the export ({exc}); if the store is damaged, "
                            f"remove {folder} and export again (it is rebuilt from the events)") from exc
    return folder if uri is None else uri


def _remote_experiment(client: Any) -> str:
    """The experiment on a tracking server: ``MLFLOW_EXPERIMENT_NAME``, else ``EXPERIMENT`` (created on
    first use; the server chooses where its artifacts go)."""
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
    found = client.get_experiment_by_name(name)
    if found is None:
        return str(client.create_experiment(name))
    if found.lifecycle_stage == "deleted":
        client.restore_experiment(found.experiment_id)
    return str(found.experiment_id)


def _database_damage(exc: BaseException) -> str | None:
    """SQLite's own words when ``exc`` (or what it wraps: MLflow wraps SQLAlchemy, which wraps sqlite3)
    says the database file is damaged or is not one; None for any other refusal."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, sqlite3.DatabaseError) and not isinstance(seen, sqlite3.OperationalError):
            return str(seen).splitlines()[0][:160]
        seen = seen.__cause__ or seen.__context__ or getattr(seen, "orig", None)
    text = str(exc)
    for words in ("database disk image is malformed", "file is not a database"):
        if words in text:
            return words
    return None


def _experiment(client: Any, folder: Path) -> str:
    """The store's experiment (created on first use). MLflow records its artifact folder as an
    absolute URI, so a store reached by another path (the run root moved, or mounted elsewhere)
    would copy artifacts to where the run root used to be: refused, with the fix."""
    artifacts = (folder / ARTIFACTS_DIR).resolve().as_uri()
    found = client.get_experiment_by_name(EXPERIMENT)
    if found is None:
        return str(client.create_experiment(EXPERIMENT, artifact_location=artifacts))
    if found.artifact_location != artifacts:
        raise TrackingError(
            f"{folder / DB_FILE}: its artifacts are recorded at {found.artifact_location}, not {artifacts} (the run "
            f"root was moved or is mounted at another path); remove {folder} and export again: the runs are "
            "rebuilt from the events")
    if found.lifecycle_stage == "deleted":
        client.restore_experiment(found.experiment_id)
    return str(found.experiment_id)


def _find(api: _Api, client: Any, experiment: str, key: str) -> Any | None:
    """The active MLflow run of ``key`` (a duplicate left by an interrupted export is deleted)."""
    found = client.search_runs([experiment], filter_string=f"tags.`{KEY_TAG}` = '{key}'",
                               run_view_type=api.ViewType.ACTIVE_ONLY, max_results=50,
                               order_by=["attributes.start_time ASC"])
    for extra in found[1:]:
        log.warning("MLflow run %s duplicates %s (%s); deleting it", extra.info.run_id, found[0].info.run_id, key)
        client.delete_run(extra.info.run_id)
    return found[0] if found else None


def _point_key(point: Point) -> tuple[str, int, float, int]:
    return point.key, point.step, point.value, point.timestamp_ms


def _logged_points(client: Any, mlrun: Any) -> set[tuple[str, int, float, int]]:
    logged = set()
    for key in mlrun.data.metrics:
        for m in client.get_metric_history(mlrun.info.run_id, key):
            logged.add((m.key, int(m.step), float(m.value), int(m.timestamp)))
    return logged


def _stale(mlrun: Any, run: TrackedRun, logged: set[tuple[str, int, float, int]]) -> str | None:
    """Why ``mlrun`` cannot be brought up to ``run`` by adding to it (None: it can)."""
    wanted = {_point_key(p) for p in run.points}
    extra = sorted(logged - wanted)
    if extra:
        key, step, value, _ = extra[0]
        return f"{len(extra)} metric point(s) the events no longer hold (e.g. {key} at step {step}: {value:g})"
    for name, value in mlrun.data.params.items():
        if run.params.get(name, value) != value:
            return f"param {name} is {value!r}, the events say {run.params[name]!r}"
    return None


def _batches(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _sync(api: _Api, client: Any, experiment: str, run: TrackedRun, parent: str | None = None) -> None:
    mlrun = _find(api, client, experiment, run.key)
    logged: set[tuple[str, int, float, int]] = set()
    if mlrun is not None:
        logged = _logged_points(client, mlrun)
        why = _stale(mlrun, run, logged)
        if why is not None:
            log.info("%s: MLflow run %s holds %s; logging the run afresh", run.name, mlrun.info.run_id, why)
            client.delete_run(mlrun.info.run_id)
            mlrun, logged = None, set()
    if mlrun is None:
        mlrun = client.create_run(experiment, start_time=run.start_ms, tags={KEY_TAG: run.key}, run_name=run.name)
        log.info("%s: new MLflow run %s", run.name, mlrun.info.run_id)
    run_id = mlrun.info.run_id
    have_params, have_tags = dict(mlrun.data.params), dict(mlrun.data.tags)

    params = [api.Param(k, v) for k, v in run.params.items() if k not in have_params]
    tags = {f"{TAG}{k}": v for k, v in run.tags.items()}
    if parent is not None:
        tags[PARENT_TAG] = parent
    if run.note:
        tags[NOTE_TAG] = run.note
    new_tags = [api.RunTag(k, v) for k, v in tags.items() if have_tags.get(k) != v]
    metrics = [api.Metric(p.key, p.value, p.timestamp_ms, p.step) for p in run.points if _point_key(p) not in logged]
    for batch in _batches(params, MAX_PARAMS):
        client.log_batch(run_id, params=batch)
    for batch in _batches(new_tags, MAX_TAGS):
        client.log_batch(run_id, tags=batch)
    for batch in _batches(metrics, MAX_METRICS):
        client.log_batch(run_id, metrics=batch)
    for gone in sorted(k for k in have_tags if k.startswith(TAG) and k not in tags and k != KEY_TAG
                       and not k.startswith(ARTIFACT_TAG)):
        client.delete_tag(run_id, gone)  # e.g. the error of a failure a retry has since put right

    for artifact in run.artifacts:
        tag = f"{ARTIFACT_TAG}{artifact.name}"
        if have_tags.get(tag) != artifact.sha256:
            client.log_artifact(run_id, str(artifact.path))
            client.set_tag(run_id, tag, artifact.sha256)

    status = STATUS[run.status]
    info = mlrun.info
    if status == "RUNNING":
        if info.status != status:
            client.update_run(run_id, status=status)
    elif info.status != status or info.end_time != run.end_ms:
        client.set_terminated(run_id, status=status, end_time=run.end_ms)
    log.debug("%s: MLflow run %s: %d param(s), %d tag(s), %d metric point(s) logged", run.name, run_id,
              len(params), len(new_tags), len(metrics))



AGGREGATED = ("test_psnr_mean", "test_sam_deg_mean", "test_rmse_mean", "test_roi_psnr_mean",
              "baseline_ridge_psnr_mean", "baseline_wiener_psnr_mean", "baseline_ridge_wiener_psnr_mean")
"""Summary columns the CV's parent run carries as across-fold means (and sample stds)."""


def _parent(api: _Api, client: Any, experiment: str, paths: RunPaths) -> str:
    """The CV's parent run (one per run root, found again by its key), created on first use."""
    root = paths.root.resolve()
    key = f"cv:{root}"
    found = _find(api, client, experiment, key)
    if found is not None:
        return str(found.info.run_id)
    run = client.create_run(experiment, tags={KEY_TAG: key, f"{TAG}kind": "cross-validation"},
                            run_name=f"cv {root.name}")
    return str(run.info.run_id)


def _aggregates(paths: RunPaths) -> tuple[dict[str, float], bool]:
    """(across-fold means and stds of the completed folds, whether a fold is still at work)."""
    from spectra_cv.runs.summary import read_summary

    if not paths.summary_csv.is_file():
        return {}, False
    import pandas as pd

    table = read_summary(paths.summary_csv)
    done = table[table["status"] == "completed"]
    out = {"folds_completed": float(len(done))}
    for column in (c for c in AGGREGATED if c in done):
        values = pd.to_numeric(done[column], errors="coerce").dropna()
        if len(values):
            out[f"cv_{column}"] = float(values.mean())
        if len(values) > 1:
            out[f"cv_{column}_std"] = float(values.std(ddof=1))
    return out, bool((table["status"] == "running").any())


def sync_parent(api: _Api, client: Any, run_id: str, paths: RunPaths) -> None:
    """The parent run's across-fold figures (logged when they change), the report and its plots as
    artifacts (when their bytes change), and its status (running while a fold is at work)."""
    import time

    from spectra_cv.io import sha256_file

    metrics, running = _aggregates(paths)
    have = client.get_run(run_id).data
    now = int(time.time() * 1000)
    changed = [api.Metric(k, v, now, 0) for k, v in metrics.items() if have.metrics.get(k) != v]
    if changed:
        client.log_batch(run_id, metrics=changed)
    files: list[tuple[Path, str | None]] = [(paths.report_md, None), (paths.report_metrics_csv, None)]
    files += [(p, "plots") for p in sorted(paths.plots_dir.glob("*")) if p.suffix in (".png", ".svg")] \
        if paths.plots_dir.is_dir() else []
    for path, folder in files:
        if not path.is_file():
            continue
        tag, sha = f"{ARTIFACT_TAG}{folder + '/' if folder else ''}{path.name}", sha256_file(path)
        if have.tags.get(tag) != sha:
            client.log_artifact(run_id, str(path), folder)
            client.set_tag(run_id, tag, sha)
    status = "RUNNING" if running else "FINISHED"
    if client.get_run(run_id).info.status != status:
        if running:
            client.update_run(run_id, status=status)
        else:
            client.set_terminated(run_id, status=status)
