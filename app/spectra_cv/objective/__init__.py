"""Training objective: pure loss terms on (B, L) tensors and their composition (torch only)."""

from __future__ import annotations

from spectra_cv.objective.dips import DipTerm, detect_dips
from spectra_cv.objective.objective import Objective, ObjectiveConfig, original_config

__all__ = ["DipTerm", "Objective", "ObjectiveConfig", "detect_dips", "original_config"]
