"""The rerun rules: what running a fold again does, decided from its events and what it would read now.

The same command again is always safe (``spectra-cv fold``, ``cv``, ``make cv``, ``docker compose
run fold``, the runbook script):

* never run → **start**;
* completed with the same config hash and the same data fingerprint, its result intact → **skip**
  (with ``force`` too: a forced campaign interrupted halfway resumes instead of retraining the
  folds it already finished);
* completed, but the config or the data differ → **refused**, naming what differs; ``force``
  retrains it *beside* the finished result (staged), which stays until the new run completes;
* completed, but its result is not intact (checkpoint missing or not matching its completion
  record, metrics or denoised outputs missing) → retrain beside it (staged);
* unfinished (interrupted or failed) with the same config and data → **resume** (a failure is
  retried, and says so);
* unfinished with another config or other data → **refused**; ``force`` starts afresh (staged
  when a finished result exists) — unless it is a retrain and the finished result beside it matches
  what is asked now: then that result stands (**skip**) and the retrain is left for later;
* a swap of a retrain that began and did not end → finish it first.

To retrain a fold whose config and data are unchanged, remove its folders.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from spectra_cv.configs import difference
from spectra_cv.errors import DataContractError, FoldRefused
from spectra_cv.log import get_logger
from spectra_cv.paths import RunPaths
from spectra_cv.runs import events as ev

log = get_logger("runs.rerun")

START, RETRAIN, RESUME, RETRY, SKIP, FINISH_SWAP = "start", "retrain", "resume", "retry", "skip", "finish_swap"
__all__ = ["FoldRefused", "Decision", "FinishedFold", "decide", "finished_run", "finished_folds"]


@dataclass(frozen=True)
class Decision:
    action: str
    staged: bool = False
    """Whether the run writes into the staging places (a finished result exists beside it)."""
    reason: str = ""
    """Why (an audit line for a retrain, the failure for a retry)."""
    after: int | None = None
    """The event seq a resume or retry picks up after."""


def is_staged(run: list[ev.Event]) -> bool:
    return bool(run and run[0].data.get("staged"))


def finished_run(events: list[ev.Event]) -> list[ev.Event] | None:
    """The run whose outputs are the live finished result, or None.

    That is the latest completed run, unless a later run wrote the live paths (a non-staged start)."""
    found = None
    for run in ev.runs_of(events):
        if ev.run_status(run) == "completed":
            found = run
        elif not is_staged(run):
            found = None
    return found


@dataclass(frozen=True)
class FinishedFold:
    """A fold's live finished result (``finished_run``): its run's config and best epoch."""

    fold: int
    run: list[ev.Event]

    @property
    def config_hash(self) -> str:
        return str(self.run[0].data.get("config_hash"))

    @property
    def config(self) -> dict[str, Any] | None:
        config = self.run[0].data.get("config")
        return config if isinstance(config, dict) else None

    @property
    def best_epoch(self) -> int | None:
        trained = ev.last_of(self.run, ev.TRAIN_DONE)
        return int(trained.data["best_epoch"]) if trained is not None and "best_epoch" in trained.data else None


def finished_folds(paths: RunPaths, *, skip_unreadable: bool = False) -> dict[int, FinishedFold]:
    """Every fold under ``paths`` with a finished result, read from its events: the one reader of
    completed runs' configs (the fold's mixed-config check, the final model, the cluster plans).

    An unreadable event file raises, or with ``skip_unreadable`` is logged and left out."""
    out = {}
    for fold in paths.folds_with_events():
        try:
            events = ev.read_events(paths.events(fold))
        except DataContractError as exc:
            if not skip_unreadable:
                raise
            log.warning("fold %d: its events cannot be read, so its config is not checked: %s", fold, exc)
            continue
        run = finished_run(events)
        if run is not None:
            out[fold] = FinishedFold(fold, run)
    return out


def swap_pending(run: list[ev.Event]) -> bool:
    return any(e.type == ev.SWAP for e in run) and ev.run_status(run) != "completed"


def decide(
    events: list[ev.Event],
    *,
    tag: str,
    config_hash: str,
    config: dict[str, Any],
    data_change: Callable[[list[ev.Event]], str | None],
    completion_problem: Callable[[], str | None],
    force: bool,
) -> Decision:
    """What to do with fold ``tag`` now (``FoldRefused`` when it must not run as asked).

    ``data_change(run)``: how the data read now differ from what ``run`` read (None: the same).
    ``completion_problem()``: why the live finished result is not intact (None: it is).
    """
    runs = ev.runs_of(events)
    finished = finished_run(events)
    staged_if_needed = finished is not None
    if not runs:
        return Decision(START)
    current = runs[-1]
    if swap_pending(current):
        return Decision(FINISH_SWAP, staged=True)
    def differences(run: list[ev.Event], config_phrase: str, since: str) -> list[str]:
        found = []
        if run[0].data.get("config_hash") != config_hash:
            found.append(f"{config_phrase} ({difference(run[0].data.get('config'), config)})")
        changed = data_change(run)
        if changed is not None:
            found.append(f"the data changed since it {since}: {changed}")
        return found

    if ev.run_status(current) == "completed":
        differs = differences(current, "the config differs", "ran")
        if differs:
            if force:
                return Decision(RETRAIN, staged=True,
                                reason=f"Retraining {tag} (--force: {'; '.join(differs)}); its finished result "
                                       "stays until this run completes")
            raise FoldRefused(
                f"{tag} completed, but {'; and '.join(differs)}. Its finished result is kept. To retrain it with "
                f"these settings and this data, rerun with --force (FORCE=1 for make and compose): the new run "
                f"works beside the finished one and replaces it only when it completes. To keep it, rerun with "
                f"the settings and data it was run with")
        problem = completion_problem()
        if problem is not None:
            return Decision(RETRAIN, staged=True,
                            reason=f"Retraining {tag}: {problem}; what is left of its result stays until this "
                                   "run completes")
        return Decision(SKIP)  # with force too: nothing differs, so there is nothing to retrain
    # an unfinished run: interrupted (no outcome) or failed
    differs = differences(current, "it was started with another config", "started")
    if differs and finished is not None and is_staged(current) \
            and not differences(finished, "", "") and completion_problem() is None:
        return Decision(SKIP, reason=f"{tag}: its finished result matches these settings and data; the unfinished "
                                     "retrain with other ones is left as it is (rerun with its settings to resume it)")
    if differs:
        if force:
            return Decision(RETRAIN if staged_if_needed else START, staged=staged_if_needed,
                            reason=f"Starting {tag} afresh (--force: the unfinished run is abandoned, "
                                   f"{'; '.join(differs)})")
        raise FoldRefused(
            f"{tag} has an unfinished run, but {'; and '.join(differs)}, so it cannot be resumed. Rerun with the "
            f"settings and data it started with to resume it, or with --force (FORCE=1 for make and compose) to "
            f"start it afresh{' (its finished result stays until the new run completes)' if staged_if_needed else ''}")
    if ev.run_status(current) == "failed":
        failure = next(e for e in reversed(current) if e.type == ev.FAILED)
        return Decision(RETRY, staged=is_staged(current), reason=f"Retrying {tag} after: {failure.message}",
                        after=failure.seq)
    return Decision(RESUME, staged=is_staged(current), after=current[-1].seq)
