"""What a training run trains from, kept in its resumable state and checked by every resume.

``last_state.pt`` lets a killed run go on where it stopped, but only the run it belongs to: the same
settings, trained on the same spectra, groups (the leave-one-out targets follow them), conditioning
and λ-weights. ``Origin`` records the run's config and a sha256 of each of those inputs;
``Origin.changes`` names whatever differs from a stored one, so a resume after an edit is refused,
naming the change, instead of handing back the old model (and its figures) as if it were new.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from spectra_cv.configs import difference
from spectra_cv.train.tensors import SplitArrays


def _digest(*parts: bytes | str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8") if isinstance(part, str) else part)
        digest.update(b"\0")
    return digest.hexdigest()


def _array(values: np.ndarray) -> bytes:
    return np.ascontiguousarray(values).tobytes() + str((values.dtype, values.shape)).encode("utf-8")


@dataclass(frozen=True)
class Origin:
    """A run's config (``RunConfig.to_dict()``) and a sha256 per input it trains on."""

    config: dict[str, Any]
    inputs: dict[str, str]
    """``train spectra``, ``train groups``, ``train conditioning``, the same for ``val``, ``λ-weights``."""

    @classmethod
    def of(cls, config: dict[str, Any], train: SplitArrays, val: SplitArrays,
           weights: np.ndarray | None) -> Origin:
        inputs: dict[str, str] = {}
        for role, split in (("train", train), ("val", val)):
            inputs[f"{role} spectra"] = split.fingerprint  # relative paths and values
            inputs[f"{role} groups"] = _digest("\n".join(split.groups))
            inputs[f"{role} conditioning"] = _digest(_array(split.cond), _array(split.cos_theta))
        inputs["λ-weights"] = _digest(_array(weights) if weights is not None else "uniform")
        return cls(config=config, inputs=inputs)

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config, "inputs": dict(self.inputs)}

    def changes(self, stored: Mapping[str, Any] | None, stored_hash: str | None, config_hash: str) -> list[str]:
        """What differs between this run and the one that wrote ``stored`` (``to_dict()`` of its
        origin; None for a state from a version that kept only its config hash ``stored_hash``)."""
        out = []
        if stored_hash != config_hash:
            old = stored.get("config") if isinstance(stored, Mapping) else None
            settings = difference(old, self.config) if isinstance(old, dict) else \
                f"config hash {str(stored_hash)[:12]} ≠ {config_hash[:12]}"
            out.append(f"its settings differ ({settings})")
        if isinstance(stored, Mapping) and isinstance(stored.get("inputs"), Mapping):
            old_inputs = stored["inputs"]
            changed = [label for label, value in self.inputs.items() if old_inputs.get(label) != value]
            if changed:
                out.append("it was trained on other inputs: the " + ", the ".join(changed) + " changed")
        return out
