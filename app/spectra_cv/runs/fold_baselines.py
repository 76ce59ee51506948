"""A fold's baselines: fitted once on its train split, recorded, and reused.

The classical baselines are fitted on the fold's train split with their parameters chosen on its
held-out samples (``metrics.baselines``). The fold does that once: the model's linear prior is built
from the fitted ridge and Wiener maps (``train.prior``), and evaluation scores the same fits. The
chosen parameters and every grid point's held-out score go to ``fold_##_baselines.json`` beside the
metrics; a resumed or rescored fold rebuilds the maps from it with those parameters, searching no
grid (about a second for the real data's 4,500 train spectra), as long as it was written for the
same train spectra (their fingerprint: relative paths and values).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from spectra_cv import io as sio
from spectra_cv.data.splits import Split
from spectra_cv.log import get_logger
from spectra_cv.metrics import FittedBaseline, fit_baselines, loo_means, refit_baselines
from spectra_cv.train.tensors import fingerprint

log = get_logger("fold_baselines")

RECORD_VERSION = 1


def fold_baselines(train: Split, record: Path) -> dict[str, FittedBaseline]:
    """The baselines of the train split ``train``: rebuilt from ``record`` when it was written for
    these spectra, otherwise fitted (grids searched on held-out samples) and recorded there."""
    digest = fingerprint(train.relative_paths, train.noisy)
    ref = loo_means(train.noisy, train.groups)
    chosen = _read(record, digest)
    if chosen is not None:
        try:
            rebuilt = refit_baselines(train.noisy, ref, train.groups,
                                      {name: entry["params"] for name, entry in chosen.items()})
        except (KeyError, TypeError, ValueError) as exc:  # a record edited by hand: its parameters unusable
            log.warning("baselines: %s holds unusable parameters (%s); fitting anew", record, exc)
        else:
            log.info("baselines: rebuilt from %s with their chosen parameters (no grid searched)", record.name)
            return {name: FittedBaseline(name, b.params, _scores(chosen[name].get("held_out_psnr")), b.transform)
                    for name, b in rebuilt.items()}
    log.info("baselines: fitting each on %d train spectra, parameters chosen on held-out samples", len(train.noisy))
    fitted = fit_baselines(train.noisy, ref, train.groups)
    sio.atomic_write_json(record, {
        "version": RECORD_VERSION, "train_fingerprint": digest,
        "baselines": {name: {"params": b.params, "held_out_psnr": _finite(b.train_scores)}
                      for name, b in fitted.items()},
    })
    return fitted


def _read(record: Path, digest: str) -> dict[str, dict[str, Any]] | None:
    """The record's baselines, or None (logged) when it is missing, unreadable or of other spectra."""
    if not record.is_file():
        return None
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
        entries = data["baselines"]
        usable = data.get("version") == RECORD_VERSION and data.get("train_fingerprint") == digest
        if usable and all(isinstance(e, dict) and isinstance(e.get("params"), dict) for e in entries.values()):
            return dict(entries)
        log.info("baselines: %s was written for other train spectra (or by another version); fitting anew",
                 record.name)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("baselines: %s is unreadable (%s); fitting anew", record, exc)
    return None


def _finite(scores: dict[str, float]) -> dict[str, float | None]:
    return {label: v if math.isfinite(v) else None for label, v in scores.items()}


def _scores(recorded: Any) -> dict[str, float]:
    if not isinstance(recorded, dict):
        return {}
    return {str(k): float("nan") if v is None else float(v) for k, v in recorded.items()}
