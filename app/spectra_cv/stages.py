"""Where a run's wall time goes: its stages timed in process, for ``make bench``.

``timed(name)`` measures a block and keeps ``(name, seconds)`` in this process's list; ``recorded()``
returns the list. The fold times its stages (manifests, reading the train split, the baselines,
training, each epoch, denoising and scoring per split, the controls, the coordinator's sync);
``benchmarks/bench_fold_stages.py`` runs folds in process and writes the list as
``bench/fold_stages.json``. Stages may nest (the baselines are fitted inside training, when the
prior needs them): each records its own wall time.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

_RECORDED: list[tuple[str, float]] = []


@contextlib.contextmanager
def timed(name: str) -> Iterator[None]:
    """Record the wall time of the block as stage ``name`` (also when it raises)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        record(name, time.perf_counter() - started)


def record(name: str, seconds: float) -> None:
    """Record ``seconds`` of stage ``name``."""
    _RECORDED.append((name, float(seconds)))


def recorded() -> list[tuple[str, float]]:
    """Every stage recorded in this process so far, in order."""
    return list(_RECORDED)
