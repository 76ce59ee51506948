"""The data contract: the user's on-disk layout, its names and invariants (docs/data-format.md).

One module says what a valid dataset is: its names, shapes and constants. ``data.check`` walks a
data root and a metadata directory against them and reports *every* problem it finds; the readers
(``loaders``, ``conditioning``, ``rows``) enforce them on what they read.
"""

from __future__ import annotations

import math
import re

# --- file names inside the data root ------------------------------------------------------------
GRID_FILE = "wavelength_grid.npy"
LAMBDA_STATS_FILE = "lambda_stats.npz"
MANIFEST_FILE = "manifest.csv"

# --- file names inside the metadata directory ---------------------------------------------------
DOSE_FEATURES_FILE = "dose_features.csv"
SAMPLING_WEIGHTS_FILE = "dose_sampling_weights.csv"
DOSE_STATS_FILE = "dose_stats.json"

# --- manifest ------------------------------------------------------------------------------------
MANIFEST_COLUMNS = ("relative_path", "treatment", "sample", "angle", "group_id", "source_path")
"""Columns every manifest carries, in the user's order (fold manifests keep all of them)."""
REQUIRED_MANIFEST_COLUMNS = ("relative_path", "treatment", "sample", "angle", "group_id")
"""Columns without which nothing can run (``source_path`` is provenance only)."""

SPECTRUM_SUFFIXES = (".npy", ".npz", ".csv", ".txt")
NPZ_KEY = "reflectance"
TABLE_COLUMNS = ("wavelength_nm", "reflectance")

LAMBDA_STATS_KEYS = ("wavelength", "variance", "variance_clipped", "precision", "alpha", "weights")

# --- physics and grid ----------------------------------------------------------------------------
SEQUENCE_LENGTH = 601
GRID_START_NM = 300.0
GRID_STOP_NM = 600.0
ROI_NM = (320.0, 500.0)
"""Region of interest: absorption dips live here; λ-weights are ×3 inside it."""
ROI_WEIGHT = 3.0
CLIP_RANGE = (0.0, 1.0)

# --- conditioning (FiLM) -------------------------------------------------------------------------
CV_FILM_FEATURES = (
    "cos_theta",
    "UVA_total",
    "UVB_total",
    "UVA_over_UVB",
    "P_UVA_mW_cm2",
    "P_UVB_mW_cm2",
    "UVA_norm",
    "UVB_norm",
)
"""The eight conditioning features of the CV recipe."""

FILM_FEATURE_COLUMNS: dict[str, str | None] = {
    "cos_theta": None,  # derived from the angle label
    "uva_total": "UVA_total_mWh_cm2",
    "u_total": "UVA_total_mWh_cm2",
    "uvb_total": "UVB_total_mWh_cm2",
    "v_total": "UVB_total_mWh_cm2",
    "uva_hours": "UVA_hours_h",
    "uvb_hours": "UVB_hours_h",
    "p_uva": "P_UVA_mW_cm2",
    "p_uva_mw_cm2": "P_UVA_mW_cm2",
    "uva_power": "P_UVA_mW_cm2",
    "p_uvb": "P_UVB_mW_cm2",
    "p_uvb_mw_cm2": "P_UVB_mW_cm2",
    "uvb_power": "P_UVB_mW_cm2",
    "uva_over_uvb": "UVA_over_UVB",
    "uva_norm": "UVA_norm",
    "uvb_norm": "UVB_norm",
    "uva_total_z": "UVA_total_z",
    "uvb_total_z": "UVB_total_z",
}
"""FiLM feature name (matched case-insensitively) → dose_features.csv column."""

DOSE_TOTAL_COLUMNS = ("UVA_total_mWh_cm2", "UVB_total_mWh_cm2")
"""Both zero ⇔ the row is a zero-dose control."""
RATIO_FEATURE = "uva_over_uvb"
"""The one FiLM feature (lower case) a zero-dose control row may leave undefined: its UVA/UVB is 0/0."""

FOLD_SAMPLES_PER_TREATMENT = 5
"""Treatments with exactly this many samples join CV; others (the control) are left out, loudly."""
MIN_REPLICATES_PER_GROUP = 2
"""Noise2Noise needs at least two replicates per (treatment, sample, angle) group."""

HOUR_RE = re.compile(r"^\s*(\d+)\s*(.*)$", re.DOTALL)
CLOCK_HOURS = 12
"""An angle label's leading integer is a clock hour, 0–12 (0 and 12 are the same position)."""
DEGREE_UNITS = ("deg", "°", "º", "˚")
"""Suffixes that say a label is an angle in degrees (the degree sign and its look-alikes, the ordinal
º and the ring ˚), which is refused rather than read as hours."""


def angle_to_cos(angle: str) -> float:
    """cos θ of an angle label given as a clock hour: ``6Oclock`` → −1, ``12Oclock`` → +1.

    The leading integer is the hour h (0–12; what follows it is free, e.g. ``Oclock`` or ``h``);
    cos θ = cos(2πh/12). A label without a leading hour is an error (the original silently returned
    0.0), and so is one that reads as degrees (``45deg``, ``30°``) or an hour past 12: the original
    took ``45deg`` for 9 o'clock.
    """
    match = HOUR_RE.match(str(angle))
    if match is None:
        raise ValueError(f"angle {angle!r} has no leading clock hour; use labels like '6Oclock' or '12Oclock'")
    hour, rest = int(match.group(1)), match.group(2).strip().lower()
    if hour > CLOCK_HOURS or rest.startswith(DEGREE_UNITS):
        raise ValueError(
            f"angle {angle!r} is not a clock hour (0–12); convert angles to clock positions, e.g. "
            "'6Oclock' or '12Oclock'"
        )
    value = math.cos(2.0 * math.pi * (hour % CLOCK_HOURS) / CLOCK_HOURS)
    return float(round(value, 12))


def film_column(feature: str) -> str | None:
    """dose_features.csv column for a FiLM feature name (``None`` for ``cos_theta``).

    Raises ``KeyError`` naming the known features when ``feature`` is unknown.
    """
    key = feature.lower()
    if key not in FILM_FEATURE_COLUMNS:
        known = ", ".join(sorted(FILM_FEATURE_COLUMNS))
        raise KeyError(f"unknown FiLM feature {feature!r}; known: {known}")
    return FILM_FEATURE_COLUMNS[key]
