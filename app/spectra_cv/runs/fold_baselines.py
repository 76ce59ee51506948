"""A fold's baselines: fitted once on its train split, recorded, and reused.

The classical baselines are fitted on the fold's train split with their parameters chosen on its
held-out samples (``metrics.baselines``). The fold does that once: the model's linear prior is the
fitted baseline its config names (``train.prior``; the presets' is ridge+Wiener), and evaluation
scores the same fits. The chosen parameters and every grid point's held-out score go to
``fold_##_baselines.json`` beside the metrics; a resumed or rescored fold rebuilds the maps from it
with those parameters, searching no grid (about a second for the real data's 4,500 train spectra),
as long as it was written for the same train spectra (their fingerprint: relative paths and
values) under the same selection rule (grids, limits, inner folds: ``metrics.baselines.selection_rule``).
A record that fails any check is fitted anew and rewritten, with a line in the log saying why.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from spectra_cv import io as sio
from spectra_cv.data.splits import Split
from spectra_cv.log import get_logger
from spectra_cv.metrics import FittedBaseline, fit_baselines, loo_means, refit_baselines
from spectra_cv.metrics.baselines import selection_rule
from spectra_cv.train.tensors import fingerprint

log = get_logger("fold_baselines")

RECORD_VERSION = 1


def rule_digest() -> str:
    """sha256 of the record's version and the baselines' selection rule (grids, limits, inner folds):
    parameters chosen under another rule are chosen again."""
    text = json.dumps({"version": RECORD_VERSION, "rule": selection_rule()}, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def fold_baselines(train: Split, record: Path) -> dict[str, FittedBaseline]:
    """The baselines of the train split ``train``: rebuilt from ``record`` when it was written for
    these spectra under this selection rule, otherwise fitted (grids searched on held-out samples)
    and recorded there."""
    digest = fingerprint(train.relative_paths, train.noisy)
    ref = loo_means(train.noisy, train.groups)
    rebuilt = _rebuild(record, digest, train, ref)
    if rebuilt is not None:
        log.info("baselines: rebuilt from %s with their chosen parameters (no grid searched)", record.name)
        return rebuilt
    log.info("baselines: fitting each on %d train spectra, parameters chosen on held-out samples", len(train.noisy))
    fitted = fit_baselines(train.noisy, ref, train.groups)
    sio.atomic_write_json(record, {
        "version": RECORD_VERSION, "rule_sha256": rule_digest(), "train_fingerprint": digest,
        "baselines": {name: {"params": b.params, "held_out_psnr": _finite(b.train_scores)}
                      for name, b in fitted.items()},
    })
    return fitted


def _rebuild(record: Path, digest: str, train: Split, ref: np.ndarray) -> dict[str, FittedBaseline] | None:
    """The recorded baselines rebuilt with their parameters, or None (logged) when the record is
    missing, unreadable, of other spectra or another rule, or its parameters give no finite map."""
    if not record.is_file():
        return None
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
        if data.get("train_fingerprint") != digest or data.get("rule_sha256") != rule_digest():
            log.info("baselines: %s was written for other train spectra or another selection rule; fitting anew",
                     record.name)
            return None
        entries = data["baselines"]
        scores = {name: _scores(entry.get("held_out_psnr")) for name, entry in entries.items()}
        rebuilt = refit_baselines(train.noisy, ref, train.groups, {n: e["params"] for n, e in entries.items()})
        probe = train.noisy[:1]
        if not all(np.isfinite(b.apply(probe)).all() for b in rebuilt.values()):
            raise ValueError("a rebuilt map gives non-finite values")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError, IndexError,
            ZeroDivisionError, FloatingPointError, np.linalg.LinAlgError) as exc:
        log.warning("baselines: %s is unreadable or holds unusable parameters (%s); fitting anew", record, exc)
        return None
    return {name: FittedBaseline(name, b.params, scores.get(name, {}), b.transform) for name, b in rebuilt.items()}


def _finite(scores: dict[str, float]) -> dict[str, float | None]:
    return {label: v if math.isfinite(v) else None for label, v in scores.items()}


def _scores(recorded: Any) -> dict[str, float]:
    if not isinstance(recorded, dict):
        raise TypeError("held_out_psnr is not a table of scores")
    return {str(k): float("nan") if v is None else float(v) for k, v in recorded.items()}
