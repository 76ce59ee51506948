"""Spectra that cannot be a measurement of a sample, or may not be: one rule for every reader.

``data check`` and every split a fold or training reads apply it, so a spectrum one refuses is
refused by all:

* **errors** — all zero (a dark frame, an empty export) or constant (no spectrum was recorded):
  nothing to denoise and nothing to learn from; the row must be re-exported or dropped;
* **warnings** (a user may mean it) — a plateau of ``SATURATION_RUN`` or more consecutive samples at
  the spectrum's maximum (a saturated detector: the denoiser cannot restore a clipped peak), and,
  before clipping, more than ``NEGATIVE_SHARE`` of the values below 0 (a dark-subtraction offset?
  they are clipped to 0 on load).

Each message names the manifest, its 1-based data row and the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from spectra_cv.data.contract import CLIP_RANGE

FLAT_TOLERANCE = 1e-7
"""A spectrum whose values span less than this (relative to its largest magnitude, at least 1) is constant."""
SATURATION_RUN = 8
"""Consecutive samples at exactly the spectrum's maximum that read as a saturated detector."""
NEGATIVE_SHARE = 0.1
"""Share of negative values (before clipping) above which a spectrum is flagged."""


@dataclass(frozen=True)
class Findings:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _longest_run_at_max(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``values`` (N, L): the longest run of samples equal to the row's maximum, and where
    it starts (sample index)."""
    at_max = values == values.max(axis=1, keepdims=True)
    n, length = at_max.shape
    padded = np.zeros((n, length + 2), dtype=np.int8)
    padded[:, 1:-1] = at_max
    edges = np.diff(padded, axis=1)  # +1 where a run starts, -1 one past where it ends
    longest = np.zeros(n, dtype=int)
    start = np.zeros(n, dtype=int)
    for i in range(n):
        starts, ends = np.flatnonzero(edges[i] == 1), np.flatnonzero(edges[i] == -1)
        runs = ends - starts
        k = int(np.argmax(runs))
        longest[i], start[i] = int(runs[k]), int(starts[k])
    return longest, start


def _zero_reason(raw: np.ndarray) -> str:
    """Why a spectrum reads as all zero: it is, or every value is ≤ 0 and loading clips them to 0."""
    if not raw.any():
        return "all zero (a dark frame or an empty export)"
    return (f"every value is ≤ 0 (down to {raw.min():.3g}), so it is all zero once negatives are clipped to 0 "
            "on load (a dark-subtraction offset?)")


def _clipped_note(raw: np.ndarray, seen: np.ndarray) -> str:
    """Say so when a spectrum is constant only once clipped to [0, 1]."""
    return "" if np.array_equal(raw, seen) else " once clipped to [0, 1] on load"


def degenerate(values: np.ndarray, relative_paths: Sequence[str], label: str, grid: np.ndarray,
               rows: Sequence[int] | None = None, unclipped: bool = False) -> Findings:
    """Errors and warnings for the spectra ``values`` (N, L) of ``relative_paths``; ``rows``: their
    0-based manifest rows (default 0…N−1); ``unclipped``: values as read, before clipping to [0, 1] (the
    errors are then judged on the clipped values a fold reads, so ``data check`` refuses what a fold would)."""
    found = Findings()
    if values.size == 0:
        return found
    where = list(rows) if rows is not None else list(range(len(values)))

    def name(i: int | np.integer) -> str:
        return f"{label} row {where[int(i)] + 1}: {relative_paths[int(i)]}"

    seen = np.clip(values, *CLIP_RANGE) if unclipped else values  # what a fold reads
    span = seen.max(axis=1) - seen.min(axis=1)
    scale = np.maximum(1.0, np.abs(seen).max(axis=1))
    zero = ~seen.any(axis=1)
    flat = (span <= FLAT_TOLERANCE * scale) & ~zero
    for i in np.flatnonzero(zero):
        found.errors.append(f"{name(i)}: {_zero_reason(values[i])}; re-export the spectrum or drop the row")
    for i in np.flatnonzero(flat):
        found.errors.append(f"{name(i)}: constant at {seen[i, 0]:.4g}{_clipped_note(values[i], seen[i])} (no "
                            "spectrum was recorded); re-export the spectrum or drop the row")
    usable = ~(zero | flat)
    longest, start = _longest_run_at_max(seen)
    for i in np.flatnonzero(usable & (longest >= SATURATION_RUN)):
        found.warnings.append(
            f"{name(i)}: {longest[i]} consecutive samples at its maximum {seen[i].max():.4g} from "
            f"{grid[start[i]]:g} nm (a saturated detector?); the denoiser cannot restore a clipped peak")
    if unclipped:
        share = (values < 0).mean(axis=1)
        for i in np.flatnonzero(usable & (share > NEGATIVE_SHARE)):
            found.warnings.append(
                f"{name(i)}: {share[i]:.0%} of its values are negative (a dark-subtraction offset?); they are "
                "clipped to 0 on load")
    return found
