"""The fold pipeline: manifests → train → denoise train/val/test → evaluate, as a resumable run.

A fold's events are its memory. Each stage records that it began (the runbook's audit line, e.g.
``Launching training run``) and that it finished (``Training completed successfully``), with the
hashes that prove its outputs. Running the fold again follows the rerun rules (``runs.rerun``):
a completed fold with the same config and data is skipped, an unfinished one resumes (finished
stages whose outputs still match are skipped, a stage that was cut off carries on — training from
``last_state.pt`` — without announcing itself again, so the audit log of a run that was killed and
rerun reads like one that never stopped), a failed one is retried after a ``Retrying fold_##``
line, and a completed fold whose config or data differ is refused unless forced.

Before anything is written, every input is checked and fingerprinted (``runs.fingerprint``), and
the other folds of the run root are checked for another config (under the start lock, so two
folds started at once cannot both pass). A retrain of a finished fold works in staging places and
swaps its outputs in only when it completes (``runs.outputs``): nothing finished is deleted before
its replacement exists.

The fold writes only its own event file (under the fold lock); audit logs and the summary are the
coordinator's (``runs.coordinator``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spectra_cv import faults, provenance, stages
from spectra_cv import io as sio
from spectra_cv.configs import difference
from spectra_cv.data import contract, loaders
from spectra_cv.data.splits import Split, read_split, split_of
from spectra_cv.denoise import RECORD_FILE, denoise_frame, denoise_manifest, is_complete
from spectra_cv.device import resolve_device
from spectra_cv.errors import DataContractError, FoldError, FoldRefused
from spectra_cv.evaluation import (
    format_metric,
    read_clean,
    read_denoised,
    score_table,
)
from spectra_cv.folds.manifests import check_fold, control_rows, generate, split_fold, unseen_rows
from spectra_cv.log import get_logger, log_to_file
from spectra_cv.metrics import FittedBaseline
from spectra_cv.model.checkpoint import read_checkpoint
from spectra_cv.paths import RunPaths, fold_tag
from spectra_cv.runs import events as ev
from spectra_cv.runs import fingerprint as fp
from spectra_cv.runs import rerun
from spectra_cv.runs.coordinator import fold_alive, sync_if_free
from spectra_cv.runs.events import fold_status
from spectra_cv.runs.fold_baselines import fold_baselines
from spectra_cv.runs.locks import file_lock
from spectra_cv.runs.outputs import FoldOutputs, clear_staging, swap_in
from spectra_cv.runs.summary import TEST_METRICS
from spectra_cv.train.presets import RunConfig
from spectra_cv.train.run import TrainInputs, TrainOutputs, run_training

log = get_logger("fold")

SPLITS = ("train", "val", "test")
LOCK_WAIT_S = 3.0
"""How long a fold waits for its own lock (rides out another process's ``is_held`` probe)."""
REQUEUE_LOCK_WAIT_S = 150.0
"""How long a requeued Slurm task waits for it: the task it replaces may have died with its node,
leaving a lease to go stale (60 s by default) or an NFSv4 lock to expire (the server's 90 s lease)."""


def lock_wait_s() -> float:
    """``REQUEUE_LOCK_WAIT_S`` for a task Slurm restarted (``SLURM_RESTART_COUNT`` ≥ 1), else ``LOCK_WAIT_S``."""
    try:
        restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)
    except ValueError:
        restarts = 0
    return REQUEUE_LOCK_WAIT_S if restarts > 0 else LOCK_WAIT_S


@dataclass(frozen=True, kw_only=True)
class FoldSettings:
    """Everything one fold run needs; the config's hash must agree across folds."""

    fold: int
    config: RunConfig
    data_root: Path
    metadata_dir: Path
    paths: RunPaths = field(default_factory=RunPaths)
    fold_config: Path | None = None
    """A folds.json; None: the built-in sample rotation."""
    device: str = "auto"
    infer_batch_size: int = 64
    amp: bool = True
    """bf16 inference on CUDA (ignored on CPU)."""
    force: bool = False
    """Retrain a completed fold, or restart an unfinished one whose config or data changed."""
    allow_mixed_config: bool = False
    retraining_folds: tuple[int, ...] = ()
    """Folds retrained (``force``) by the same cv run: their finished configs do not count as mixed."""
    clean_manifest: Path | None = None
    """Synthetic data: noise-free truth to score against as well (found beside the data when None)."""
    tracking: str | None = None
    """Export the fold to this tracking backend (``spectra_cv.tracking``) when it ends; None: no tracking."""
    tracking_uri: str | None = None
    """MLflow: the tracking server or store to log to (None: the run root's own store)."""


@dataclass(frozen=True)
class FoldOutcome:
    fold: int
    status: str
    """``completed`` or ``skipped``."""
    checkpoint: Path
    test_psnr: float | None


def run_fold(settings: FoldSettings) -> FoldOutcome:
    """Run (or resume, or skip) one fold; the fold lock keeps a second process of it out."""

    check_fold(settings.fold)
    paths = settings.paths
    try:
        with file_lock(paths.fold_lock(settings.fold), f"fold {settings.fold}", wait_s=lock_wait_s()):
            writer = ev.EventWriter(paths.events(settings.fold), settings.fold)
            try:
                return _Pipeline(settings, writer).run()
            except FoldRefused:
                raise  # nothing ran: the fold's history is unchanged
            except Exception as exc:
                if fold_status(writer.events) == "running":  # an error outside any stage: still recorded
                    writer.emit(ev.FAILED, f"Fold failed: {exc}", stage="pipeline",
                                error=f"{type(exc).__name__}: {exc}")
                raise
    finally:
        with stages.timed("coordinator"):
            _sync(paths)  # after the lock is released, so a run left without an outcome reads "interrupted"
        if settings.tracking is not None:
            _track(settings)


def _sync(paths: RunPaths) -> None:
    """The coordinator's pass on the way out: the audit log and summary describe the fold's work, so
    their failure is a warning and never the fold's (its events hold everything they are made from)."""
    try:
        sync_if_free(paths)
    except Exception as exc:  # noqa: BLE001 - a side effect of the work, not the work
        log.warning("the audit logs and summary were not updated: %s: %s. The fold's outcome stands (its "
                    "events hold it); `spectra-cv coordinator --once` writes them once the cause is fixed",
                    type(exc).__name__, exc)


def _track(settings: FoldSettings) -> None:
    """Export the fold to its tracking backend; a failure there is a warning, never the fold's."""
    from spectra_cv import tracking

    if not ev.runs_of(ev.read_events(settings.paths.events(settings.fold))):
        return  # refused before it started: nothing to show
    try:
        tracking.export_fold(settings.paths, settings.fold, settings.tracking or "", settings.tracking_uri)
    except Exception as exc:  # noqa: BLE001 - any failure of a side effect (a broken store, a full disk) is a warning
        log.warning("fold %d: not exported to %s: %s: %s. The fold's own outcome stands; fix the store (or move "
                    "it aside) and run `spectra-cv track --tracking %s --folds %d` to export it again",
                    settings.fold, settings.tracking, type(exc).__name__, exc, settings.tracking, settings.fold)


def _finite(value: Any) -> Any:
    """JSON-safe copy: NaN/inf become None (events are strict JSON)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _seconds_since(event: ev.Event) -> float:
    """Seconds from ``event``'s time stamp to now."""
    return time.time() - ev.timestamp(event.time)


class _Pipeline:
    def __init__(self, settings: FoldSettings, writer: ev.EventWriter) -> None:
        self.s = settings
        self.w = writer
        self.fold = settings.fold
        self.tag = fold_tag(settings.fold)
        self.paths = settings.paths
        self.config_hash = settings.config.hash()
        self.model = settings.config.model.name
        self.out = FoldOutputs(self.paths, self.fold)
        self.fingerprint = fp.DataFingerprint()
        self._train_data: Split | None = None
        self._fitted: dict[str, FittedBaseline] | None = None

    @property
    def checkpoint(self) -> Path:
        return self.out.best_checkpoint(self.model)

    # --- event helpers -------------------------------------------------------------------------
    @property
    def run_events(self) -> list[ev.Event]:
        return ev.current_run(self.w.events)

    def _seen(self, type_: str, **match: Any) -> ev.Event | None:
        """The last matching event of this run, unless a failure came after it."""
        run = self.run_events
        found = ev.last_of(run, type_, **match)
        if found is None or any(e.type == ev.FAILED and e.seq > found.seq for e in run):
            return None
        return found

    def _rooted(self, path: Path) -> str:
        """``path`` relative to the run root (found again when both move together), symlinks kept;
        ``inputs_at`` records the absolute paths too."""
        try:
            return os.path.relpath(os.path.abspath(path), os.path.abspath(self.paths.root))
        except ValueError:  # pragma: no cover - another drive
            return os.path.abspath(path)

    def _rel(self, path: Path) -> str:
        try:
            return path.relative_to(self.paths.root).as_posix()
        except ValueError:
            return str(path)

    @contextlib.contextmanager
    def _stage(self, failure: str, stage: str) -> Iterator[None]:
        """Record ``<failure>: <error>`` as the run's failure when the block raises."""
        try:
            yield
        except Exception as exc:
            self.w.emit(ev.FAILED, f"{failure}: {exc}", stage=stage, error=f"{type(exc).__name__}: {exc}")
            raise

    # --- the run ------------------------------------------------------------------------------
    def run(self) -> FoldOutcome:
        if rerun.swap_pending(self.run_events):
            self._finish_swap()  # needs no inputs: a half-swapped result is put right before anything else
        with file_lock(self.paths.start_lock, "the run root's start lock", blocking=True):
            cfg = self.s.config
            self.fingerprint = fp.fold_inputs(self.fold, self.s.data_root, self.s.metadata_dir, self.s.fold_config,
                                              film=bool(cfg.film_features))  # every input checked first
            self._check_other_folds()
            decision = rerun.decide(
                self.w.events, tag=self.tag, config_hash=self.config_hash, config=cfg.to_dict(),
                data_change=self._data_change, completion_problem=self._completion_problem, force=self.s.force,
            )
            if decision.action == rerun.START and self._completion_problem() is None:
                # a finished result without the events that made it (the log folder was removed): keep it
                decision = rerun.Decision(rerun.RETRAIN, staged=True, reason=(
                    f"Starting {self.tag} beside a finished result found without its events; that result stays "
                    "until this run completes"))
            self.out = FoldOutputs(self.paths, self.fold, staged=decision.staged)
            self.out.remove_leftovers(self.model)  # a kill mid-write leaves a temp file; this process owns them
            if decision.action == rerun.SKIP:
                finished = rerun.finished_run(self.w.events)
                done = ev.last_of(finished or [], ev.COMPLETED)
                sha = str(done.data.get("checkpoint_sha256", "")) if done is not None else ""
                self.w.emit(ev.SKIP, f"Skipping {self.tag}: already completed ({self._rel(self.checkpoint)}, "
                                     f"sha256 {sha[:12]})")
                if decision.reason:
                    log.warning("%s", decision.reason)
                return FoldOutcome(self.fold, "skipped", self.checkpoint, None)
            if decision.action in (rerun.START, rerun.RETRAIN):
                self._start(decision)
            elif decision.action == rerun.RETRY:
                self.w.emit(ev.RESUME, decision.reason, after=decision.after)
            else:
                self.w.emit(ev.RESUME, None, after=decision.after)
                log.info("%s: resuming an interrupted run (its audit log goes on as one run)", self.tag)
        self._manifests()
        best = self._train()
        for split in SPLITS:
            self._infer(split, best)
        test = self._evaluate(best)
        self._complete(best, test)
        return FoldOutcome(self.fold, "completed", self.paths.best_checkpoint(self.fold, self.model),
                           test.get("psnr_mean"))

    def _start(self, decision: rerun.Decision) -> None:
        cfg = self.s.config
        clear_staging(self.out)  # an abandoned retrain's leftovers (never the finished result)
        if not decision.staged:  # no finished result exists: the live places are this run's own
            for stale in (self.out.last_state, self.out.completion_record, self.checkpoint):
                stale.unlink(missing_ok=True)  # a new run trains afresh; an old best must not pass for its own
        fp.save(self.out.fingerprint, self.fingerprint)
        finished = rerun.finished_run(self.w.events)
        replaces = ev.last_of(finished, ev.COMPLETED).data.get("checkpoint_sha256") if finished else None  # type: ignore[union-attr]
        self.w.emit(
            ev.START, f"Starting {self.tag}",
            config_hash=self.config_hash, config=cfg.to_dict(), preset=cfg.preset, model=cfg.model.name,
            seed=cfg.train.seed, device=self.s.device, data_root=self._rooted(self.s.data_root),
            metadata_dir=self._rooted(self.s.metadata_dir),
            fold_config=self._rooted(self.s.fold_config) if self.s.fold_config else None,
            inputs_at={"data_root": os.path.abspath(self.s.data_root),
                       "metadata_dir": os.path.abspath(self.s.metadata_dir),
                       "fold_config": os.path.abspath(self.s.fold_config) if self.s.fold_config else None},
            data_digest=self.fingerprint.digest, fingerprint=self._rel(self.out.fingerprint),
            staged=decision.staged, replaces=replaces,
            code_version=provenance.code_version(), image=provenance.image(),
            library_versions=provenance.library_versions(),
        )
        if decision.reason:
            self.w.emit(ev.NOTE, decision.reason)

    # --- the rerun rules' questions ---------------------------------------------------------------
    def _data_change(self, run: list[ev.Event]) -> str | None:
        start = run[0]  # its per-file list: where the run wrote it, or (a retrain swapped in since) the live place
        stored_at = [self.paths.root / str(start.data.get("fingerprint", "")), self.out.live().fingerprint]
        return fp.describe_change(start.data.get("data_digest"), self.fingerprint, stored_at)

    def _completion_problem(self) -> str | None:
        """Why the live finished result is not intact (None: checkpoint, record, metrics and every
        denoised split agree)."""
        live = self.out.live()
        record_path, checkpoint = live.completion_record, live.best_checkpoint(self.model)
        for needed in (record_path, checkpoint, live.metrics_json):
            if not needed.is_file():
                return f"{self._rel(needed)} is missing"
        try:
            record = json.loads(record_path.read_text())
        except ValueError:
            return f"{self._rel(record_path)} is not readable JSON"
        sha = sio.sha256_file(checkpoint)
        if record.get("checkpoint_sha256") != sha:
            return f"{self._rel(checkpoint)} no longer matches its completion record"

        for split in SPLITS:
            denoised = live.denoised(split) / RECORD_FILE
            try:
                if json.loads(denoised.read_text()).get("checkpoint_sha256") != sha:
                    return f"{self._rel(live.denoised(split))} was not denoised by its checkpoint"
            except (OSError, ValueError):
                return f"{self._rel(denoised)} is missing or unreadable"
        return None

    def _check_other_folds(self) -> None:
        """Refuse to start beside a running fold, or after completed folds, of another config."""
        if self.s.allow_mixed_config:
            return
        running: dict[int, str] = {}
        for other in self.paths.folds_with_events():
            if other == self.fold:
                continue
            try:
                runs = ev.runs_of(ev.read_events(self.paths.events(other)))
            except DataContractError as exc:
                log.warning("%s: cannot check fold %d's config: %s", self.tag, other, exc)
                continue
            if runs and ev.run_status(runs[-1]) == "running" and fold_alive(self.paths, other):
                if runs[-1][0].data.get("config_hash") != self.config_hash:
                    running[other] = str(runs[-1][0].data.get("config_hash"))
        completed = {f: done for f, done in rerun.finished_folds(self.paths, skip_unreadable=True).items()
                     if f != self.fold and f not in self.s.retraining_folds and done.config_hash != self.config_hash}
        if running:
            listed = ", ".join(f"fold {f} ({h[:12]})" for f, h in sorted(running.items()))
            raise FoldRefused(
                f"{self.tag}: this config (hash {self.config_hash[:12]}) differs from {listed}, running now in this "
                "run root; cross-validation needs one config for every fold. Wait for it (or stop it) and rerun with "
                "its settings, or pass --allow-mixed-config")
        if completed:
            mine = self.s.config.to_dict()
            listed = ", ".join(f"fold {f} ({difference(done.config, mine)})" for f, done in sorted(completed.items()))
            raise FoldRefused(
                f"{self.tag}: this config (hash {self.config_hash[:12]}) differs from completed {listed}; "
                "cross-validation needs one config for every fold (hyperparameters stay fixed across folds). "
                "Rerun with the same settings, retrain every fold with these (`spectra-cv cv --force`, or "
                "`make cv FORCE=1`), or pass --allow-mixed-config")

    # --- stages -------------------------------------------------------------------------------
    def _manifests(self) -> None:

        done = self._seen(ev.MANIFESTS_DONE)
        if done is not None and self._manifest_hashes() == done.data.get("sha256"):
            return
        if self._seen(ev.MANIFESTS) is None:
            self.w.emit(ev.MANIFESTS, "Generating manifests")
        with self._stage("Manifest generation failed", "manifests"), log_to_file(self.out.manifests_log), \
                stages.timed("manifests"):
            result = generate(self.fold, self.s.data_root / contract.MANIFEST_FILE, self.paths.root / "manifests",
                              config=self.s.fold_config, check_files=True, directory=self.out.manifests_dir)
            hashes = self._manifest_hashes()
            if done is not None and hashes != done.data.get("sha256"):
                raise FoldError(f"{self.tag}: the manifests regenerated differ from the ones this run started with "
                                "(the data or folds.json changed); rerun with --force to start the fold afresh")
        if done is None:
            listed = ", ".join(self._rel(result.manifests[role]) for role in SPLITS)
            self.w.emit(ev.MANIFESTS_DONE, f"Generated manifests: {listed}", sha256=hashes, counts=result.counts)

    def _manifest_hashes(self) -> dict[str, str] | None:
        files = {role: self.out.manifest(role) for role in SPLITS}
        if not all(p.is_file() for p in files.values()):
            return None
        return {role: sio.sha256_file(p) for role, p in files.items()}

    def _train(self) -> str:
        """Train (or resume, or reuse the finished training); returns the checkpoint's sha256."""
        done = self._seen(ev.TRAIN_DONE)
        if done is not None and self.checkpoint.is_file() \
                and sio.sha256_file(self.checkpoint) == done.data.get("checkpoint_sha256"):
            return str(done.data["checkpoint_sha256"])
        if self._seen(ev.TRAIN) is None:
            self.w.emit(ev.TRAIN, "Launching training run")
        faults.point(f"{self.tag}_training")
        t0 = time.perf_counter()
        with self._stage("Training failed", "train"), log_to_file(self.out.train_log), stages.timed("training"):
            result = self._run_training()
        seconds = time.perf_counter() - t0
        if not self.checkpoint.is_file():
            self.w.emit(ev.FAILED, "Checkpoint missing - aborting", stage="train", error="checkpoint missing")
            raise FoldError(f"{self.tag}: training ended without {self.checkpoint}")

        ckpt = read_checkpoint(self.checkpoint)
        sha = sio.sha256_file(self.checkpoint)
        fingerprint = ckpt.get("data_fingerprint") or {}
        self.w.emit(
            ev.TRAIN_DONE, "Training completed successfully",
            checkpoint_sha256=sha, best_epoch=result.best_epoch, epochs_run=result.epochs_run,
            stopped_because=result.stopped_because, val_psnr=_finite(result.best_val.get("psnr")),
            val_sam=_finite(result.best_val.get("sam")), parameters=int(ckpt.get("n_parameters", 0)),
            train_fingerprint=str(fingerprint.get("train", "")), seconds=round(seconds, 3),
            hardware=provenance.hardware(str(resolve_device(self.s.device))),
        )
        self.w.emit(ev.CHECKPOINT, f"Checkpoint ready: {self._rel(self.checkpoint)}", checkpoint_sha256=sha)
        return sha

    def _run_training(self) -> Any:

        cfg = self.s.config
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, device=self.s.device))
        meta = self.s.metadata_dir
        weights = meta / contract.SAMPLING_WEIGHTS_FILE
        live = self.out.live()
        inputs = TrainInputs(
            train_dir=self.s.data_root, val_dir=self.s.data_root,
            train_manifest=self.out.manifest("train"), val_manifest=self.out.manifest("val"),
            manifest_labels=(self._rel(live.manifest("train")), self._rel(live.manifest("val"))),
            dose_features_csv=meta / contract.DOSE_FEATURES_FILE if cfg.film_features else None,
            dose_sampling_weights_csv=weights if weights.is_file() else None,
            dose_stats_json=meta / contract.DOSE_STATS_FILE if cfg.film_features else None,
            lambda_weights=self.s.data_root / contract.LAMBDA_STATS_FILE,
            train_split=self._train_split(),  # read once: the baselines (the prior's) are fitted on it too
        )
        outputs = TrainOutputs(checkpoint_dir=self.out.checkpoint_dir, model_name=cfg.model.name,
                               speed_log_json=self.out.speed_log, log_dir=self.out.log_dir)

        def trainer_audit(message: str) -> None:
            # the trainer's own milestones; a resumed attempt repeats them word for word, keep one
            if not any(e.message == message for e in self.run_events):
                self.w.emit(ev.NOTE, message)

        def on_resume(epoch: int, path: Path) -> None:
            self.w.emit(ev.RESUME, None, stage="train", after_epoch=epoch, state=self._rel(path))

        def on_epoch(data: dict[str, Any]) -> None:
            self.w.emit(ev.EPOCH, None, **data)

        return run_training(cfg, inputs, outputs, audit=trainer_audit, run_name=self.tag, on_resume=on_resume,
                            on_epoch=on_epoch, baselines=self._baselines)

    def _train_split(self) -> Split:
        if self._train_data is None:
            with stages.timed("train split read"):
                grid = loaders.read_grid(self.s.data_root)
                self._train_data = read_split(self.s.data_root, self.out.manifest("train"), grid)
        return self._train_data

    def _baselines(self) -> dict[str, FittedBaseline]:
        """The baselines of the fold's train split, fitted once (``runs.fold_baselines``): the prior and
        the evaluation share them, and a resumed fold rebuilds them from its record."""
        if self._fitted is None:
            train = self._train_split()
            with stages.timed("baselines"):
                self._fitted = fold_baselines(train, self.out.baselines_json)
        return self._fitted

    def _infer(self, split: str, checkpoint_sha: str) -> None:

        out = self.out.denoised(split)
        manifest = self.out.manifest(split)
        done = self._seen(ev.INFER_DONE, split=split)
        if done is not None and done.data.get("checkpoint_sha256") == checkpoint_sha \
                and is_complete(out, self.checkpoint, manifest):
            return
        if self._seen(ev.INFER, split=split) is None:
            self.w.emit(ev.INFER, f"Starting inference for {split} -> {self._rel(out)}", split=split)
        film = bool(self.s.config.film_features)
        with self._stage(f"Inference failed for {split}", f"infer_{split}"), \
                log_to_file(self.out.inference_log(split)), stages.timed(f"denoise {split}"):
            result = denoise_manifest(
                checkpoint=self.checkpoint, manifest=manifest, root_dir=self.s.data_root, output_root=out,
                batch_size=self.s.infer_batch_size, device=self.s.device, amp=self.s.amp,
                dose_features_csv=self.s.metadata_dir / contract.DOSE_FEATURES_FILE if film else None,
            )
        self.w.emit(ev.INFER_DONE, f"Completed inference for {split}", split=split, rows=len(result.relative_paths),
                    seconds=round(result.seconds, 3), checkpoint_sha256=checkpoint_sha)

    def _clean_manifest(self) -> Path | None:
        if self.s.clean_manifest is not None:
            return self.s.clean_manifest
        beside = self.s.data_root.parent / "clean" / "clean_manifest.csv"
        if beside.is_file():
            log.info("%s: synthetic data: scoring against the clean truth in %s too", self.tag, beside)
            return beside
        return None

    def _evaluate(self, checkpoint_sha: str) -> dict[str, Any]:

        done = self._seen(ev.EVALUATED)
        if done is not None and done.data.get("checkpoint_sha256") == checkpoint_sha \
                and self.out.metrics_json.is_file():
            return dict(done.data["test"].get("model", {}))
        with self._stage("Evaluation failed", "evaluate"):
            grid = loaders.read_grid(self.s.data_root)
            train = self._train_split()
            baselines = self._baselines()  # fitted once per fold: the prior's, reused for val, test and controls
            clean_manifest = self._clean_manifest()
            tables: dict[str, Any] = {}
            warnings = list(train.warnings)
            for split in ("val", "test"):
                log.info("%s: scoring the model and the baselines on %s", self.tag, split)
                with stages.timed(f"score {split}"):
                    data = read_split(self.s.data_root, self.out.manifest(split), grid)
                    warnings += data.warnings
                    pred = read_denoised(self.out.denoised(split), data.relative_paths, grid.shape[0])
                    clean = read_clean(clean_manifest, data.groups) if clean_manifest is not None else None
                    tables[split] = score_table(pred, data, train, grid, clean, baselines)
            with stages.timed("controls"):
                for split, table in self._score_left_out(train, grid, baselines, clean_manifest).items():
                    tables[split] = table
            sio.atomic_write_json(self.out.metrics_json,
                                  _finite({"fold": self.fold, "checkpoint_sha256": checkpoint_sha,
                                           "wavelength_nm": [round(float(x), 4) for x in grid], "splits": tables,
                                           "data_warnings": warnings}))
        headline = {split: {method: _finite({k: row["loo"].get(k) for k in TEST_METRICS})
                            for method, row in table.items()} for split, table in tables.items()}
        test = headline["test"]
        model = test["model"]
        params = {name: _finite(row.get("params", {})) for name, row in tables["test"].items() if name != "model"}

        def psnr(method: str, split: str = "test") -> str:
            return format_metric(headline[split].get(method, {}).get("psnr_mean"), missing="n/a")

        controls = ""
        if "control" in headline:
            controls = (f"; control samples (never trained on): PSNR {psnr('model', 'control')} dB, SAM "
                        f"{format_metric(headline['control']['model'].get('sam_deg_mean'), '.3f', 'n/a')}° "
                        f"(ridge {psnr('ridge', 'control')} dB, ridge+Wiener {psnr('ridge_wiener', 'control')} dB)")
        if "unseen" in headline:
            controls += (f"; samples in no role (never seen): PSNR {psnr('model', 'unseen')} dB (ridge+Wiener "
                         f"{psnr('ridge_wiener', 'unseen')} dB)")
        self.w.emit(
            ev.EVALUATED,
            f"Test metrics: PSNR {psnr('model')} ± {format_metric(model.get('psnr_std'), missing='n/a')} dB, SAM "
            f"{format_metric(model.get('sam_deg_mean'), '.3f', 'n/a')}° (Gaussian {psnr('gaussian')} dB, "
            f"ridge {psnr('ridge')} dB, ridge+Wiener {psnr('ridge_wiener')} dB){controls}",
            checkpoint_sha256=checkpoint_sha, test=test, val=headline["val"], control=headline.get("control"),
            unseen=headline.get("unseen"),
            baseline_params=params,
        )
        return model

    def _score_left_out(self, train: Any, grid: Any, baselines: dict[str, Any],
                        clean_manifest: Path | None) -> dict[str, Any]:
        """The model and the baselines on what the fold never sees, denoised in memory: ``control``, the
        treatments left out of CV (the zero-dose control), and ``unseen``, samples of CV treatments a
        folds.json leaves out of every role (a leave-samples-out check). Each only when the data have it."""
        manifest = self.s.data_root / contract.MANIFEST_FILE
        frame, assignment, _ = split_fold(self.fold, manifest, self.s.fold_config, check_files=False)
        tables: dict[str, Any] = {}
        control = control_rows(frame, assignment)
        if control.empty:
            log.info("%s: no treatment is left out of CV, so there are no control samples to score", self.tag)
        else:
            label = f"{manifest} (rows of {', '.join(sorted(assignment.excluded))})"
            log.info("%s: denoising and scoring the %d control spectra (%s)", self.tag, len(control),
                     ", ".join(sorted(assignment.excluded)))
            tables["control"] = self._score_rows(control, label, train, grid, baselines, clean_manifest)
        unseen = unseen_rows(frame, assignment)
        if not unseen.empty:
            samples = sorted(set(unseen["treatment"].astype(str) + "/" + unseen["sample"].astype(str)))
            log.info("%s: denoising and scoring the %d spectra of samples in no role of this fold (%s)", self.tag,
                     len(unseen), ", ".join(samples))
            label = f"{manifest} (samples in no role: {', '.join(samples)})"
            tables["unseen"] = self._score_rows(unseen, label, train, grid, baselines, clean_manifest)
        return tables

    def _score_rows(self, rows: Any, label: str, train: Any, grid: Any, baselines: dict[str, Any],
                    clean_manifest: Path | None) -> dict[str, Any]:
        data = split_of(self.s.data_root, rows, grid, label)
        film = bool(self.s.config.film_features)
        pred = denoise_frame(
            checkpoint=self.checkpoint, frame=rows, root_dir=self.s.data_root, label=label,
            batch_size=self.s.infer_batch_size, device=self.s.device, amp=self.s.amp,
            dose_features_csv=self.s.metadata_dir / contract.DOSE_FEATURES_FILE if film else None,
        ).denoised
        clean = read_clean(clean_manifest, data.groups) if clean_manifest is not None else None
        return score_table(pred, data, train, grid, clean, baselines)

    def _complete(self, checkpoint_sha: str, test: dict[str, Any]) -> None:
        start = ev.last_of(self.run_events, ev.START)
        assert start is not None
        total = _seconds_since(start)
        live = self.out.live()
        sio.atomic_write_json(self.out.completion_record, {
            "fold": self.fold, "config_hash": self.config_hash,
            "checkpoint": self._rel(live.best_checkpoint(self.model)),
            "checkpoint_sha256": checkpoint_sha, "metrics_json": self._rel(live.metrics_json),
            "data_digest": self.fingerprint.digest, "test": test,
        })
        if self.out.staged:
            missing = self.out.missing(self.model)
            if missing:
                raise FoldError(f"{self.tag}: the retrain lacks {', '.join(self._rel(p) for p in missing)}; "
                                "its finished result was left as it is")
            self.w.emit(ev.SWAP, f"Swapping the retrained {self.tag} in (checkpoint sha256 {checkpoint_sha[:12]}, "
                                 f"replacing {str(start.data.get('replaces') or '')[:12] or 'what was left'})",
                        checkpoint_sha256=checkpoint_sha)
            swap_in(self.out, self.model)
        self.w.emit(ev.COMPLETED, "Fold completed", checkpoint_sha256=checkpoint_sha, total_seconds=round(total, 1))

    def _finish_swap(self) -> None:
        """A swap that began before a crash: finish it, check the result, record the completion it was
        heading for (or, if the staged outputs were lost meanwhile, a failure: the next run retrains)."""
        run = self.run_events
        swap = ev.last_of(run, ev.SWAP)
        assert swap is not None
        model = str(run[0].data.get("model", self.model))
        staged = FoldOutputs(self.paths, self.fold, staged=True)
        swap_in(staged, model)
        live = staged.live()
        sha = str(swap.data.get("checkpoint_sha256"))
        missing = live.missing(model)
        problem = None
        if missing:
            problem = f"{', '.join(self._rel(p) for p in missing)} missing"
        elif sio.sha256_file(live.best_checkpoint(model)) != sha \
                or json.loads(live.completion_record.read_text()).get("checkpoint_sha256") != sha:
            problem = "its staged outputs were lost before the swap finished"
        if problem is not None:
            self.w.emit(ev.FAILED, f"Fold failed: the interrupted swap of the retrained {self.tag} could not be "
                                   f"finished ({problem}); rerun to retrain it", stage="swap", error=problem)
            return
        self.w.emit(ev.COMPLETED, "Fold completed", checkpoint_sha256=sha,
                    total_seconds=round(_seconds_since(run[0]), 1))
        log.info("%s: finished the swap a crash interrupted", self.tag)
