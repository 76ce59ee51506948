"""How far a training run is, and how long it may still take: the figures of each epoch event.

The ETA is an upper bound that respects both ways a run ends early: the time budget (the epoch
that crosses it still completes, so the bound rounds up to whole epochs) and the maximum epoch
count. Early stopping can only end a run sooner: ``earliest_stop_epoch`` says when it could at
the soonest (patience runs out if no validation improves from now on).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, kw_only=True)
class EpochProgress:
    """One finished epoch's place in its run (seconds are training wall time, resumes included)."""

    epoch: int
    epochs: int
    elapsed_s: float
    eta_s: float
    """Upper bound of the time left (0 when this epoch ended the run)."""
    earliest_stop_epoch: int | None
    """The soonest epoch at which early stopping could end the run (None: no validation yet)."""

    def to_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "epochs": self.epochs, "elapsed_s": round(self.elapsed_s, 1),
                "eta_s": round(self.eta_s, 1), "earliest_stop_epoch": self.earliest_stop_epoch}


def epoch_progress(*, epoch: int, epochs: int, elapsed_s: float, time_budget_s: float, stopped: bool,
                   bad_validations: int, patience: int, val_every: int, validated: bool) -> EpochProgress:
    """The progress after ``epoch`` (1-based) of at most ``epochs``, ``elapsed_s`` into the run."""
    if stopped or epoch >= epochs:
        return EpochProgress(epoch=epoch, epochs=epochs, elapsed_s=elapsed_s, eta_s=0.0,
                             earliest_stop_epoch=epoch if stopped else None)
    per_epoch = elapsed_s / max(epoch, 1)
    left = epochs - epoch
    if time_budget_s > 0:
        budget_left = max(0.0, time_budget_s - elapsed_s)
        left = min(left, max(1, math.ceil(budget_left / per_epoch))) if per_epoch > 0 else left
    earliest = epoch + (patience - bad_validations) * val_every if validated else None
    if earliest is not None:
        earliest = min(earliest, epochs)
    return EpochProgress(epoch=epoch, epochs=epochs, elapsed_s=elapsed_s, eta_s=left * per_epoch,
                         earliest_stop_epoch=earliest)


def format_duration(seconds: float | None) -> str:
    """``3725`` → ``1h02m``, ``125`` → ``2m05s``, ``7`` → ``7s``; None → ``?``."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    total = int(round(max(0.0, seconds)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"
