"""What a tracking run shows, read from a fold's events: one ``TrackedRun`` per run of the fold.

A fold's ``start`` event begins a run; everything up to the next ``start`` (resumes and retries
included) belongs to it, so a fold that was killed and rerun is still one run. The per-epoch
figures are the ``epoch`` events with superseded epochs dropped: training is sequential, so an
epoch ``e`` replaces every epoch ``≥ e`` seen before it, and a resume of training after epoch
``k`` (``resume`` with ``after_epoch``) drops the lost epochs ``> k`` even before they are redone.

Nothing here imports a tracking library; the backends (``tracking.mlflow_store``,
``tracking.tensorboard_files``) write what these records hold.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spectra_cv import io as sio
from spectra_cv.log import get_logger
from spectra_cv.paths import RunPaths, fold_tag
from spectra_cv.runs import events as ev
from spectra_cv.runs.outputs import FoldOutputs
from spectra_cv.runs.rerun import finished_run

log = get_logger("tracking")

#: Per-epoch figures of an ``epoch`` event → the metric key they are tracked under.
EPOCH_METRICS = {
    "train_loss": "train/loss",
    "lr": "train/lr",
    "examples_per_sec": "train/examples_per_sec",
    "elapsed_s": "train/elapsed_s",
    "val_loss": "val/loss",
    "val_psnr": "val/psnr",
    "val_sam": "val/sam",
    "best_val_psnr": "val/best_psnr",
    "best_val_sam": "val/best_sam",
    "best_epoch": "val/best_epoch",
}
#: ``train_done`` figures → the summary metric they are tracked under (one point, step 0).
TRAIN_SUMMARY = {
    "best_epoch": "score/best_epoch",
    "epochs_run": "score/epochs_run",
    "val_psnr": "score/best_val_psnr",
    "val_sam": "score/best_val_sam",
    "parameters": "score/parameters",
    "seconds": "score/train_seconds",
}
SCORE_SPLITS = ("test", "val", "control", "unseen")
"""The ``evaluated`` event's tables: ``<split> → <method> → <metric> → value``."""


@dataclass(frozen=True)
class Point:
    """One metric value at a step, with the time of the event that carried it."""

    key: str
    value: float
    step: int
    timestamp_ms: int


@dataclass(frozen=True)
class Artifact:
    """A file of the run's (verified to be the one the events name), and where it goes in the tracking run."""

    name: str
    """Its name in the tracking run (the file's own name)."""
    path: Path
    sha256: str


@dataclass(frozen=True)
class TrackedRun:
    """One run of one fold, as a tracking run shows it."""

    fold: int
    key: str
    """Identifies the run across exports: the fold, its ``start`` event's seq and time, the config hash."""
    name: str
    """``fold_03``: what the tracking UI lists."""
    status: str
    """``completed``, ``failed``, ``running``, or ``interrupted`` (no outcome, and no process at work)."""
    start_ms: int
    end_ms: int | None
    params: dict[str, str]
    """The flattened config (``model.d_model``, ``train.lr``, ``film_features``, ``preset``) and provenance."""
    tags: dict[str, str]
    epochs: dict[int, dict[str, Any]]
    """The surviving ``epoch`` event data per epoch (1-based), superseded attempts dropped."""
    points: list[Point]
    """Every metric point: per-epoch figures (step = epoch), then the summary and scores (step 0)."""
    scores: dict[str, dict[str, dict[str, float]]]
    """``evaluated``'s headline figures: ``split → method → metric → value`` (model and every baseline)."""
    artifacts: list[Artifact] = field(default_factory=list)
    note: str = ""
    """The run's result in words (the ``evaluated`` audit line, or the failure)."""

    @property
    def label(self) -> str:
        """A file-name-safe label of the run, unique within its fold: its start time and event seq."""
        _, stamp, seq, _ = self.key.split(":")
        return f"{stamp}_{seq}"


def flatten_config(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"model": {"d_model": 32}}`` → ``{"model.d_model": "32"}``; lists become comma-joined strings."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_config(value, prefix=f"{name}."))
        elif isinstance(value, (list, tuple)):
            out[name] = ",".join(str(v) for v in value)
        else:
            out[name] = str(value)
    return out


def _ms(stamp: str) -> int:
    """An event time (``2026-03-15T19:42:03``, UTC) as epoch milliseconds."""
    return int(ev.timestamp(stamp) * 1000)


def _number(value: Any) -> float | None:
    """A finite float, or None (absent, null, text, NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def surviving_epochs(run: list[ev.Event]) -> dict[int, ev.Event]:
    """The ``epoch`` events that still describe the run's training, by epoch, in epoch order."""
    kept: dict[int, ev.Event] = {}
    for event in run:
        if event.type == ev.RESUME and event.data.get("after_epoch") is not None:
            after = int(event.data["after_epoch"])
            kept = {e: x for e, x in kept.items() if e <= after}
        elif event.type == ev.EPOCH and event.data.get("epoch") is not None:
            epoch = int(event.data["epoch"])
            kept = {e: x for e, x in kept.items() if e < epoch}
            kept[epoch] = event
    return dict(sorted(kept.items()))


def _scores(evaluated: ev.Event | None) -> dict[str, dict[str, dict[str, float]]]:
    scores: dict[str, dict[str, dict[str, float]]] = {}
    if evaluated is None:
        return scores
    for split in SCORE_SPLITS:
        table = evaluated.data.get(split) or {}
        for method, figures in table.items():
            values = {m: v for m, v in ((m, _number(x)) for m, x in (figures or {}).items()) if v is not None}
            if values:
                scores.setdefault(split, {})[str(method)] = values
    return scores


def _status(run: list[ev.Event], later_start: bool, alive: bool) -> str:
    status = ev.run_status(run)
    if status == "running" and (later_start or not alive):
        return "interrupted"
    return status


def _params(start: ev.Event) -> dict[str, str]:
    d = start.data
    params = flatten_config(dict(d.get("config") or {}))
    params["config_hash"] = str(d.get("config_hash", ""))
    params["code_version"] = str(d.get("code_version", ""))
    return params


def _tags(fold: int, start: ev.Event, run: list[ev.Event], status: str) -> dict[str, str]:
    d = start.data
    tags = {
        "fold": str(fold), "status": status, "started_at": start.time,
        "config_hash": str(d.get("config_hash", "")), "preset": str(d.get("preset", "")),
        "model": str(d.get("model", "")), "seed": str(d.get("seed", "")),
        "code_version": str(d.get("code_version", "")), "image": str(d.get("image") or ""),
        "data_digest": str(d.get("data_digest", "")), "staged": str(bool(d.get("staged"))).lower(),
        "library_versions": json.dumps(d.get("library_versions") or {}, sort_keys=True),
    }
    trained = ev.last_of(run, ev.TRAIN_DONE)
    if trained is not None:
        tags["stopped_because"] = str(trained.data.get("stopped_because", ""))
        tags["checkpoint_sha256"] = str(trained.data.get("checkpoint_sha256", ""))
    failed = ev.last_of(run, ev.FAILED)
    if status == "failed" and failed is not None:
        tags["error"] = str(failed.data.get("error") or failed.message or "")
    return tags


def _points(run: list[ev.Event], epochs: dict[int, ev.Event], scores: dict[str, Any]) -> list[Point]:
    points: list[Point] = []
    for epoch, event in epochs.items():
        stamp = _ms(event.time)
        for field_name, key in EPOCH_METRICS.items():
            value = _number(event.data.get(field_name))
            if value is not None:
                points.append(Point(key, value, epoch, stamp))
    trained = ev.last_of(run, ev.TRAIN_DONE)
    if trained is not None:
        for field_name, key in TRAIN_SUMMARY.items():
            value = _number(trained.data.get(field_name))
            if value is not None:
                points.append(Point(key, value, 0, _ms(trained.time)))
    evaluated = ev.last_of(run, ev.EVALUATED)
    if evaluated is not None:
        stamp = _ms(evaluated.time)
        for split, methods in scores.items():
            for method, figures in methods.items():
                points += [Point(f"score/{split}/{method}/{m}", v, 0, stamp) for m, v in figures.items()]
    return points


def _matching(candidates: list[Path], sha: str | None) -> tuple[Path, str] | None:
    """The first existing candidate whose sha256 is ``sha`` (any existing one when ``sha`` is None)."""
    for path in candidates:
        if path.is_file():
            digest = sio.sha256_file(path)
            if sha is None or digest == sha:
                return path, digest
    return None


def _metrics_json_matching(candidates: list[Path], sha: str) -> tuple[Path, str] | None:
    for path in candidates:
        try:
            if json.loads(path.read_text()).get("checkpoint_sha256") == sha:
                return path, sio.sha256_file(path)
        except (OSError, ValueError):
            continue
    return None


def _artifacts(paths: RunPaths, fold: int, run: list[ev.Event], is_finished: bool) -> list[Artifact]:
    """The checkpoint and metrics JSON this run produced (wherever they lie now: live, or still
    staged by a retrain), and the run root's report when this run is the fold's finished result.
    A file that a later run has replaced is not this run's, and is left out."""
    start = run[0]
    model = str(start.data.get("model") or (start.data.get("config") or {}).get("model", {}).get("name")
                or "mamba_tiny_uv")
    places = [FoldOutputs(paths, fold, staged=False), FoldOutputs(paths, fold, staged=True)]
    if start.data.get("staged"):
        places.reverse()
    found: list[Artifact] = []
    trained = ev.last_of(run, ev.TRAIN_DONE)
    sha = str(trained.data.get("checkpoint_sha256")) if trained is not None else None
    if sha:
        hit = _matching([p.best_checkpoint(model) for p in places], sha)
        if hit is not None:
            found.append(Artifact(hit[0].name, hit[0], hit[1]))
        else:
            log.debug("%s: checkpoint sha256 %s is no longer on disk", fold_tag(fold), sha[:12])
    evaluated = ev.last_of(run, ev.EVALUATED)
    if evaluated is not None and evaluated.data.get("checkpoint_sha256"):
        hit = _metrics_json_matching([p.metrics_json for p in places], str(evaluated.data["checkpoint_sha256"]))
        if hit is not None:
            found.append(Artifact(hit[0].name, hit[0], hit[1]))
    if is_finished:
        hit = _matching([paths.report_md], None)
        if hit is not None:
            found.append(Artifact(hit[0].name, hit[0], hit[1]))
    return found


def tracked_runs(paths: RunPaths, fold: int, events: list[ev.Event], alive: bool = False) -> list[TrackedRun]:
    """Every run of ``fold`` in its events, oldest first. ``alive``: a process holds the fold's lock
    (an unfinished latest run then shows as ``running`` rather than ``interrupted``)."""
    runs = ev.runs_of(events)
    finished = finished_run(events)
    finished_seq = finished[0].seq if finished else None
    out = []
    for i, run in enumerate(runs):
        start = run[0]
        status = _status(run, later_start=i < len(runs) - 1, alive=alive)
        epochs = surviving_epochs(run)
        evaluated = ev.last_of(run, ev.EVALUATED)
        scores = _scores(evaluated)
        end = next((e for e in reversed(run) if e.type in (ev.COMPLETED, ev.FAILED)), None)
        end_ms = _ms(end.time) if end is not None and status in ("completed", "failed") else None
        if status == "interrupted":
            end_ms = _ms(run[-1].time)
        shown = ev.last_of(run, ev.FAILED) if status == "failed" else evaluated
        note = (shown.message or "") if shown is not None else ""
        out.append(TrackedRun(
            fold=fold, key=f"{fold_tag(fold)}:{start.time.replace(':', '').replace('-', '')}:{start.seq}:"
                           f"{str(start.data.get('config_hash', ''))[:12]}",
            name=fold_tag(fold), status=status, start_ms=_ms(start.time), end_ms=end_ms,
            params=_params(start), tags=_tags(fold, start, run, status),
            epochs={e: dict(x.data) for e, x in epochs.items()}, points=_points(run, epochs, scores),
            scores=scores, artifacts=_artifacts(paths, fold, run, is_finished=start.seq == finished_seq), note=note,
        ))
    return out
