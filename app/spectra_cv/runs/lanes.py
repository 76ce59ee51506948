"""How folds are laid onto lanes and GPUs: the one rule of ``cv --parallel/--gpus`` and ``make cv``.

``parallel`` lanes (default: one per GPU, or one without GPUs) each run their folds one after
another; fold *i* of the list goes to lane *i* mod lanes, and lane *k* uses GPU *k* mod the number
of GPUs. A GPU therefore holds one fold at a time unless more lanes than GPUs are asked for (then
some GPUs hold two, with a warning). ``scripts/compose_cv.sh`` (``make cv``, one container per
fold) implements the same rule in bash; a test holds the two plans equal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from spectra_cv.errors import ConfigError


@dataclass(frozen=True)
class Lane:
    index: int
    gpu: str | None
    """The GPU id its folds see (``CUDA_VISIBLE_DEVICES``); None: the CPU or every device."""
    folds: tuple[int, ...]


def plan_lanes(folds: Sequence[int], parallel: int | None = None, gpus: Sequence[str] = ()) -> list[Lane]:
    """The lanes for ``folds`` (in order); lanes without a fold are left out."""
    count = parallel if parallel is not None else max(1, len(gpus))
    if count < 1:
        raise ConfigError(f"--parallel must be >= 1; got {count}")
    lanes = []
    for k in range(count):
        mine = tuple(folds[i] for i in range(k, len(folds), count))
        if mine:
            lanes.append(Lane(index=k, gpu=gpus[k % len(gpus)] if gpus else None, folds=mine))
    return lanes


def shared_gpus(lanes: Sequence[Lane]) -> list[str]:
    """GPUs that more than one lane uses (each then holds two folds at once)."""
    seen: dict[str, int] = {}
    for lane in lanes:
        if lane.gpu is not None:
            seen[lane.gpu] = seen.get(lane.gpu, 0) + 1
    return sorted(g for g, n in seen.items() if n > 1)
