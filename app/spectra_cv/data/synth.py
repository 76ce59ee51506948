"""Synthetic Track H data in the user's exact layout, with clean ground truth beside it (docs/data-format.md).

``write_synthetic(OUT, config)`` writes::

    OUT/spectra_for_fold/   wavelength_grid.npy, manifest.csv, lambda_stats.npz,
                            treatment_<k>/sample_<X>/<angle>/rep_<NNN>.npy   float32 (601,)
    OUT/metadata/           dose_features.csv, dose_sampling_weights.csv, dose_stats.json
    OUT/clean/              clean_manifest.csv (group_id, treatment, sample, angle, clean_path,
                            replicates, scytonemin_depth) and
                            treatment_<k>/sample_<X>/<angle>.npy   float32 (601,): the noise-free
                            spectrum of that group, the expectation of every replicate in it
    OUT/synth_config.json   the config (preset, seed, sizes) and the generator's physics

so every command that takes a data root and a metadata directory runs on it unchanged. The
derived files are computed by ``spectra_cv.data.stats`` from the generated (unclipped) spectra.

The model (one group = treatment × sample × angle): a smooth low-rank baseline (UV rise below 320
nm, a linear slope, a small step near 460 nm and a large one near 535 nm, with per-sample and
per-angle random coefficients) times Gaussian absorption dips at 334, 372, 404 and 476 nm whose 372
nm (scytonemin) depth grows with the treatment's UVA dose. Each sample adds its own smooth departure
(``SMOOTH_DEVIATION``: what a low-rank model misses and the Wiener filter's smooth prior catches;
small for most samples, large for a few, as in the real data), and every clean spectrum carries the
instrument's fine fixed pattern (``FIXED_PATTERN``: a ripple of ~1.6 % rms, more below 320 nm, the
same in all spectra: in the real data 95 % of the groups' fine structure is one such pattern;
smoothing destroys it, linear maps fitted on data keep it). Each replicate is ``clean·(1 + gain) +
offset + tilt·(−1…1) + σ(λ)·ε`` with gain ~ N(0, 0.004), offset ~ N(0, 0.0015), tilt ~ N(0, 0.001)
and ε slightly correlated unit noise; σ(λ) ≈ 0.003–0.005 mid-band, rising to ≈ 0.015 at 300 nm and
with reflectance toward 600 nm. The noise's power by frequency follows the real data's within a
factor 1.5 in every octave (``REAL_NOISE_OCTAVES``). Measured (full preset, seed 0; real data in
brackets): within-group variance 2.51e-5 [2.52e-5], between-spectrum variance 6.57e-3 [6.65e-3]
(seeds 1–5: 4.8–6.7e-3), values 0.036–0.81 between the 0.1st and 99.9th percentiles [0.035–0.81].
Each dip shows as a local minimum within 5 nm of its centre in all groups but a handful per 10,000
(checked over 200 seeds, before the fixed pattern was added; ``tests/test_synth.py`` checks it for
the demo's groups).

Random streams are keyed by (seed, treatment[, sample, angle]), never by position (the smooth
departures' amplitude strata are dealt over all 27 samples of ``SAMPLES`` by the seed alone), so a group's
clean spectrum does not depend on the preset and a smaller preset's replicates are a prefix of a
larger one's. Same seed, same bytes. Generating is fast (full: 0.4 s); writing is bounded by one
fsync per file in ``spectra_cv.io`` (full: 2.5 s without fsync, 15–70 s with it on a busy disk).
"""

from __future__ import annotations

import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd
from scipy.stats import chi2, kurtosis

from spectra_cv import io
from spectra_cv.data import contract, stats
from spectra_cv.data.smooth import smooth_factor
from spectra_cv.errors import ConfigError
from spectra_cv.log import get_logger

log = get_logger("data.synth")

# Real per-treatment dose table (notes/original-system.md §2.1): label, P_UVA, P_UVB (mW/cm²).
DOSE_TABLE: dict[int, tuple[str, float, float]] = {
    1: ("2", 3.185, 0.707),
    2: ("3", 2.488, 0.768),
    3: ("5", 1.692, 0.584),
    4: ("7", 1.095, 0.338),
    5: ("9", 0.647, 0.246),
    6: ("control", 0.0, 0.0),
}
UVA_HOURS, UVB_HOURS = 24.0, 1.065625
MDV_REFERENCE = (2.2671, 0.768)  # UVA, UVB mW/cm² (the *_pct_MDV denominators)
SAMPLES: dict[int, tuple[str, ...]] = {
    1: ("A", "B", "C", "E", "H"),
    2: ("A", "C", "D", "F", "H"),
    3: ("B", "F", "G", "I", "J"),
    4: ("C", "D", "E", "I", "J"),
    5: ("A", "C", "G", "H", "J"),
    6: ("G", "I"),  # the zero-dose control: only G and I are in the real manifest
}
ANGLES = ("6Oclock", "12Oclock")
CLEAN_DIR, CONFIG_FILE, CLEAN_MANIFEST = "clean", "synth_config.json", "clean_manifest.csv"

# Physics of the generator (documented in synth_config.json of every output).
BASELINE = {"c0": 0.09, "uv": 0.035, "uv_tau_nm": 10.0, "slope": 0.15, "kink": 0.02, "kink_nm": 460.0,
            "kink_width_nm": 4.0, "step": 0.16, "step_nm": 535.0, "step_width_nm": 18.0}
DIPS = ((334.0, 5.0, 0.12), (372.0, 7.0, 0.09), (404.0, 6.0, 0.10), (476.0, 5.0, 0.10))
"""Absorption dips: (centre nm, Gaussian σ nm, base depth in optical density)."""
SCYTONEMIN_DIP, SCYTONEMIN_DOSE_DEPTH = 1, 0.20
"""Index of the 372 nm dip in DIPS and its extra depth at UVA_norm = 1."""
NOISE = {"floor": 0.0025, "uv": 0.014, "uv_tau_nm": 14.0, "proportional": 0.011, "kernel_side": 0.12,
         "gain_sd": 0.004, "offset_sd": 0.0015, "tilt_sd": 0.0010}
REAL_NOISE_OCTAVES = (0.247, 0.0167, 0.0144, 0.0166, 0.0288, 0.0543, 0.1054, 0.1913, 0.261, 0.0646)
"""Share of the replicate noise power (spectrum − its group mean) per frequency octave of the
601-point grid — f = 0, 1, 2–3, 4–7, …, 128–255, 256–300 cycles per spectrum (``noise_octaves``) —
measured on the 8,100 Track H spectra (``app/benchmarks/noise_real.py`` re-measures it). The
generator's noise is held to it within a factor 1.5 in every octave (tests/test_synth.py)."""
SMOOTH_DEVIATION = {"variance": 2e-4, "length_samples": 80.0, "tail_dof": 2.0, "tail_scale": 0.4, "tail_max": 2.5}
"""Each sample's own smooth departure from the low-rank model (additive, shared by its angles): a
draw from variance·exp(−(i − j)²/2ℓ²), the structure the real data's Wiener filter picks up, times
a heavy-tailed amplitude per sample, ``tail_scale``·√(ν/χ²_ν) with ν = ``tail_dof`` (capped at
``tail_max``; quantiles stratified over the samples: ``deviation_amplitudes``): most samples depart
a little, a few far. Measured on the 54 group means (``group_mean_tails``; re-measured by
``app/benchmarks/noise_real.py``): the real data's principal-component scores have excess kurtosis
up to 3.6 and 2 groups lie beyond the 99th percentile of a Gaussian's Mahalanobis distance; with
Gaussian amplitudes the generator gave kurtosis 0.7 on average and no such group, with these 2–3
such groups in every seed (0–5) and kurtosis 1.3–12.6. Linear denoisers are the best possible for
Gaussian signals: with Gaussian amplitudes the demo's model gained nothing over ridge and Wiener
(+0.01 dB, ahead in 3 of 5 folds), unlike on the real data."""
FIXED_PATTERN = {"mid": 0.016, "uv": 0.07, "uv_tau_nm": 12.0, "corr_samples": 1.0}
"""The instrument's fine fixed pattern: a relative ripple (rms ``mid``, rising by ``uv`` below
~320 nm) correlated over ~``corr_samples`` grid points, the same in every spectrum of a dataset."""
MAX_CLEAN = 0.85
DOSE_COLUMNS = ("treatment_number", "column_label", "UVA_hours_h", "UVB_hours_h", "P_UVA_mW_cm2", "P_UVB_mW_cm2",
                "UVA_total_mWh_cm2", "UVB_total_mWh_cm2", "UVA_over_UVB", "UVA_norm", "UVB_norm", "UVA_total_z",
                "UVB_total_z", "UVA_pct_MDV", "UVB_pct_MDV")
"""Per-treatment columns of dose_features.csv, in the real file's order."""


@dataclass(frozen=True, kw_only=True)
class SynthConfig:
    """Size and seed of a synthetic dataset (the physics are module constants)."""

    preset: str = "custom"
    """Name recorded in synth_config.json."""
    replicates: int
    """Replicates per (treatment, sample, angle) group (--replicates); the real data have 150."""
    seed: int = 0
    """Seed of every random stream (--seed); same seed, byte-identical files."""
    treatments: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
    """Treatments to write (6 is the zero-dose control with samples G and I)."""
    angles: tuple[str, ...] = ANGLES
    """Angle folders; each must start with a clock hour."""
    noise_scale: float = 1.0
    """Multiplies σ(λ), gain and offset jitter (1 = real-like)."""

    def __post_init__(self) -> None:
        if not contract.MIN_REPLICATES_PER_GROUP <= self.replicates <= 999:
            raise ConfigError(f"--replicates {self.replicates}: need 2..999 (Noise2Noise needs two per group)")
        if self.seed < 0:
            raise ConfigError(f"--seed {self.seed}: must be ≥ 0")
        unknown = sorted(set(self.treatments) - set(DOSE_TABLE))
        if unknown or not self.treatments or len(set(self.treatments)) != len(self.treatments):
            raise ConfigError(f"treatments {self.treatments}: choose distinct values from 1..6")
        for angle in self.angles:
            try:
                contract.angle_to_cos(angle)
            except ValueError as exc:
                raise ConfigError(str(exc)) from exc
        if not self.noise_scale >= 0:
            raise ConfigError(f"noise_scale {self.noise_scale}: must be ≥ 0")


def tiny(seed: int = 0) -> SynthConfig:
    """Unit tests: 54 groups × 4 replicates (216 spectra); generates in ~0.05 s."""
    return SynthConfig(preset="tiny", replicates=4, seed=seed)


def demo(seed: int = 0) -> SynthConfig:
    """A CPU cross-validation of a small model in minutes: 54 groups × 60 (3,240 spectra).

    60 replicates give the linear methods enough spectra per split (1,800 to train) to rank as on
    the real data's 150; with 20 the Wiener filter's noise covariance is barely estimable."""
    return SynthConfig(preset="demo", replicates=60, seed=seed)


def full(seed: int = 0) -> SynthConfig:
    """The real dimensions: 54 groups × 150 replicates = 8,100 spectra of 601 points."""
    return SynthConfig(preset="full", replicates=150, seed=seed)


PRESETS = {"tiny": tiny, "demo": demo, "full": full}


@dataclass(frozen=True)
class SynthData:
    """A generated dataset in memory."""

    wavelength: np.ndarray  # (L,) float32
    manifest: pd.DataFrame  # one row per spectrum, contract.MANIFEST_COLUMNS
    spectra: np.ndarray  # (N, L) float32, unclipped, manifest order
    groups: pd.DataFrame  # one row per group: group_id, treatment, sample, angle, scytonemin_depth
    clean: np.ndarray  # (G, L) float32, groups order
    dose_features: pd.DataFrame = field(repr=False)  # one row per spectrum, manifest order


def wavelength_grid() -> np.ndarray:
    """The contract's grid: float32 (601,), 300.0 … 600.0 nm in 0.5 nm steps."""
    return np.linspace(contract.GRID_START_NM, contract.GRID_STOP_NM, contract.SEQUENCE_LENGTH).astype(np.float32)


def treatment_doses() -> pd.DataFrame:
    """Per-treatment dose columns of dose_features.csv (index: treatment number)."""
    rows = []
    max_a = max(p for _, p, _ in DOSE_TABLE.values())
    max_b = max(p for _, _, p in DOSE_TABLE.values())
    for k, (label, pa, pb) in DOSE_TABLE.items():
        hours = (UVA_HOURS, UVB_HOURS) if pa > 0 else (0.0, 0.0)
        ta, tb = pa * hours[0], pb * hours[1]
        rows.append({
            "treatment_number": k, "column_label": label, "UVA_hours_h": hours[0], "UVB_hours_h": hours[1],
            "P_UVA_mW_cm2": pa, "P_UVB_mW_cm2": pb, "UVA_total_mWh_cm2": ta, "UVB_total_mWh_cm2": tb,
            "UVA_over_UVB": ta / tb if tb > 0 else np.nan, "UVA_norm": pa / max_a, "UVB_norm": pb / max_b,
            "UVA_pct_MDV": 100 * pa / MDV_REFERENCE[0] if pa > 0 else np.nan,
            "UVB_pct_MDV": 100 * pb / MDV_REFERENCE[1] if pb > 0 else np.nan,
        })
    table = pd.DataFrame(rows).set_index("treatment_number", drop=False)
    dosed = table[table["P_UVA_mW_cm2"] > 0]  # z-scores over treatments 1–5, population std
    for col, total in (("UVA_total_z", "UVA_total_mWh_cm2"), ("UVB_total_z", "UVB_total_mWh_cm2")):
        table[col] = (table[total] - dosed[total].mean()) / dosed[total].std(ddof=0)
    return table[list(DOSE_COLUMNS)]


def _groups(config: SynthConfig) -> pd.DataFrame:
    rows = [
        {"treatment_number": t, "sample_index": s, "angle": a, "treatment": f"treatment_{t}",
         "sample": f"sample_{letter}", "group_id": f"treatment_{t}/sample_{letter}/{a}"}
        for t in config.treatments for s, letter in enumerate(SAMPLES[t]) for a in config.angles
    ]
    return pd.DataFrame(rows)


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *key]))


def _angle_key(angle: str) -> int:
    """A stable integer for an angle label (keys its random streams)."""
    return zlib.crc32(angle.encode("utf-8"))


def _strata(rng: np.random.Generator, n: int, columns: int) -> np.ndarray:
    """Latin-hypercube quantiles (n, columns) in (0, 1): each column puts one draw in each of n equal
    strata, in a random order (written here: a few lines, and scipy.stats.qmc.LatinHypercube draws
    other numbers, which would change every generated dataset)."""
    strata = np.stack([rng.permutation(n) for _ in range(columns)], axis=1)  # (n, columns)
    return (strata + rng.random((n, columns))) / n


def sample_factors(seed: int, treatment: int, n_samples: int) -> np.ndarray:
    """Baseline factors of a treatment's samples: (n_samples, 5) standard-normal scores, clipped to ±2.

    Latin-hypercube over the treatment's samples (one stratum per sample and factor, randomly
    paired), so 27 samples cover the spread evenly and the dataset statistics vary little by seed.
    """
    q = _strata(_rng(seed, treatment, 1_000), n_samples, 5)  # (S, 5) in (0, 1)
    inv = NormalDist().inv_cdf
    return np.clip(np.vectorize(inv)(np.clip(q, 1e-9, 1 - 1e-9)), -2.0, 2.0)


def clean_spectrum(wl: np.ndarray, uva_norm: float, z: np.ndarray, sample_rng: np.random.Generator,
                   angle_rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Noise-free reflectance of one group: float64 (L,), and its scytonemin dip depth.

    ``z`` (5,) are the sample's baseline scores (``sample_factors``); ``sample_rng`` draws the rest
    of what a sample's angles share (dip depths and centres), ``angle_rng`` the angle's own changes.
    """
    b = BASELINE
    level, uv_f, slope_f, step_f = np.exp([0.23 * z[0], 0.38 * z[1], 0.17 * z[2], 0.19 * z[3]])
    step_nm = b["step_nm"] + 5.0 * z[4]
    depth_f = np.clip(np.exp(0.15 * sample_rng.standard_normal(len(DIPS))), 0.8, 1.3)  # (K,)
    centre_shift = np.clip(0.7 * sample_rng.standard_normal(len(DIPS)), -1.5, 1.5)  # (K,)
    za = np.clip(angle_rng.standard_normal(2), -2.0, 2.0)
    level *= np.exp(0.08 * za[0])
    slope_f *= np.exp(0.05 * za[1])

    lam = wl.astype(np.float64)  # (L,)
    sig = lambda x: 1.0 / (1.0 + np.exp(-x))  # noqa: E731
    base = (uv_f * (b["c0"] + b["uv"] * (1 - np.exp(-(lam - lam[0]) / b["uv_tau_nm"])))
            + slope_f * b["slope"] * (lam - lam[0]) / (lam[-1] - lam[0])
            + b["kink"] * sig((lam - b["kink_nm"]) / b["kink_width_nm"])
            + step_f * b["step"] * sig((lam - step_nm) / b["step_width_nm"]))  # (L,)
    level = min(level, MAX_CLEAN / base.max())
    centres, widths, depths = (np.array(c, dtype=np.float64) for c in zip(*DIPS, strict=True))  # (K,) each
    depths = depths * depth_f
    depths[SCYTONEMIN_DIP] += SCYTONEMIN_DOSE_DEPTH * uva_norm * depth_f[SCYTONEMIN_DIP]
    od = (depths[:, None] * np.exp(-0.5 * ((lam[None, :] - (centres + centre_shift)[:, None])
                                           / widths[:, None]) ** 2)).sum(axis=0)  # (L,)
    return level * base * np.exp(-od), float(depths[SCYTONEMIN_DIP])


def noise_sigma(wl: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """Replicate noise σ(λ) for a clean spectrum: float64 (L,)."""
    n = NOISE
    lam = wl.astype(np.float64)
    uv = n["uv"] * np.exp(-(lam - lam[0]) / n["uv_tau_nm"])
    return np.sqrt(n["floor"] ** 2 + uv**2 + (n["proportional"] * clean) ** 2)


def noise_octaves(spectra: np.ndarray, group_ids: list[str] | np.ndarray) -> np.ndarray:
    """Share of the replicate noise power per frequency octave (see ``REAL_NOISE_OCTAVES``).

    The noise of a spectrum is its difference from its group's mean, scaled by √(n/(n − 1)) so
    that it estimates one replicate's noise; power is |rFFT|² averaged over all spectra.
    """
    x = np.asarray(spectra, dtype=np.float64)
    names, inverse = np.unique(np.asarray(group_ids), return_inverse=True)
    noise = np.empty_like(x)
    for k in range(len(names)):
        rows = inverse == k
        n = int(rows.sum())
        noise[rows] = (x[rows] - x[rows].mean(axis=0)) * np.sqrt(n / max(n - 1, 1))
    power = (np.abs(np.fft.rfft(noise, axis=1)) ** 2).mean(axis=0)  # (L//2 + 1,)
    bands, low = [power[0]], 1
    while low < power.shape[0]:
        bands.append(power[low:min(2 * low, power.shape[0])].sum())
        low *= 2
    shares = np.asarray(bands)
    return shares / shares.sum()


def group_mean_tails(means: np.ndarray, components: int = 6) -> tuple[float, int]:
    """How heavy-tailed a dataset's group means are: the largest excess kurtosis of their scores on
    their first ``components`` principal components, and how many groups lie beyond the 99th
    percentile of a Gaussian's Mahalanobis distance on them (see ``SMOOTH_DEVIATION``)."""
    centred = np.asarray(means, dtype=np.float64) - np.mean(means, axis=0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    scores = (u * s)[:, :components]
    z = scores / scores.std(axis=0)
    outliers = int(((z**2).sum(axis=1) > chi2.ppf(0.99, components)).sum())
    return float(kurtosis(scores, axis=0).max()), outliers


def smooth_deviations(seed: int, keys: list[tuple[int, int]], length: int) -> dict[tuple[int, int], np.ndarray]:
    """One smooth deviation (L,) per (treatment, sample) key: its shape from its own stream, its size from
    ``deviation_amplitudes``."""
    d = SMOOTH_DEVIATION
    factor = smooth_factor(length, d["length_samples"], d["variance"])
    amplitudes = deviation_amplitudes(seed)
    return {key: amplitudes[key] * (factor @ _rng(seed, *key, 3).standard_normal(length)) for key in keys}


def deviation_amplitudes(seed: int) -> dict[tuple[int, int], float]:
    """Each (treatment, sample index)'s smooth-deviation amplitude (``SMOOTH_DEVIATION``'s tail).

    Stratified over all 27 samples of ``SAMPLES`` (one quantile stratum each, randomly assigned by the
    seed alone, whatever treatments a config writes), so every dataset has the same spread of
    amplitudes — one sample far out, two or three well out, most close in — as the real data's
    group means do, instead of a tail that comes and goes with the seed."""
    d = SMOOTH_DEVIATION
    keys = [(t, s) for t, letters in SAMPLES.items() for s in range(len(letters))]
    q = _strata(_rng(seed, 5_000), len(keys), 1)[:, 0]  # (27,) in (0, 1)
    amplitude = d["tail_scale"] * np.sqrt(d["tail_dof"] / chi2.ppf(1.0 - q, d["tail_dof"]))
    return {key: float(min(a, d["tail_max"])) for key, a in zip(keys, amplitude, strict=True)}


def fixed_pattern(seed: int, length: int) -> np.ndarray:
    """The dataset's relative fixed pattern p (L,): every clean spectrum is multiplied by (1 + p)."""
    f = FIXED_PATTERN
    w = _rng(seed, 7_000).standard_normal(length + 8)
    taps = np.exp(-0.5 * (np.arange(-4, 5) / f["corr_samples"]) ** 2)
    ripple = np.convolve(w, taps / np.sqrt(np.sum(taps**2)), mode="valid")  # (L,) unit variance
    steps = np.arange(length) * 0.5  # nm from the grid's start
    return (f["mid"] + f["uv"] * np.exp(-steps / f["uv_tau_nm"])) * ripple


def replicates(clean: np.ndarray, sigma: np.ndarray, count: int, noise_rng: np.random.Generator,
               jitter_rng: np.random.Generator, scale: float = 1.0,
               tilt_rng: np.random.Generator | None = None) -> np.ndarray:
    """``count`` noisy replicates of one clean spectrum: clean, sigma (L,) → float32 (count, L).

    Each replicate (a spot of the sample) gets its own gain, offset and tilt across the band on top
    of the correlated noise σ(λ)·ε. The tilts come from ``tilt_rng`` (none without it), so that
    each stream's first draws stay the same whatever ``count`` is.
    """
    L, a = clean.shape[0], NOISE["kernel_side"]
    w = noise_rng.standard_normal((count, L + 2))  # (R, L+2)
    eps = (a * w[:, :-2] + w[:, 1:-1] + a * w[:, 2:]) / np.sqrt(1 + 2 * a * a)  # (R, L), unit variance
    jitter = jitter_rng.standard_normal((count, 2))  # (R, 2)
    gain = scale * NOISE["gain_sd"] * jitter[:, :1]  # (R, 1)
    offset = scale * NOISE["offset_sd"] * jitter[:, 1:]  # (R, 1)
    tilt = 0.0 if tilt_rng is None else (
        scale * NOISE["tilt_sd"] * tilt_rng.standard_normal((count, 1)) * np.linspace(-1.0, 1.0, L))  # (R, L)
    return (clean[None, :] * (1 + gain) + offset + tilt + scale * sigma[None, :] * eps).astype(np.float32)


def generate(config: SynthConfig) -> SynthData:
    """Generate a dataset in memory (no files)."""
    wl = wavelength_grid()
    doses = treatment_doses()
    groups = _groups(config)
    R = config.replicates
    clean = np.empty((len(groups), wl.shape[0]), dtype=np.float32)
    spectra = np.empty((len(groups) * R, wl.shape[0]), dtype=np.float32)
    depth = np.empty(len(groups))
    factors: dict[int, np.ndarray] = {}
    pattern = fixed_pattern(config.seed, wl.shape[0])
    deviations = smooth_deviations(config.seed, sorted({(int(r.treatment_number), int(r.sample_index))
                                                        for r in groups.itertuples(index=False)}), wl.shape[0])
    for g, row in enumerate(groups.itertuples(index=False)):  # loop over groups; replicates are vectorised
        key = (row.treatment_number, row.sample_index)
        if row.treatment_number not in factors:
            factors[row.treatment_number] = sample_factors(config.seed, row.treatment_number,
                                                           len(SAMPLES[row.treatment_number]))
        c, depth[g] = clean_spectrum(wl, float(doses.loc[row.treatment_number, "UVA_norm"]),
                                     factors[row.treatment_number][row.sample_index],
                                     _rng(config.seed, *key), _rng(config.seed, *key, _angle_key(row.angle)))
        c = (c + deviations[key]) * (1.0 + pattern)
        clean[g] = c.astype(np.float32)
        spectra[g * R:(g + 1) * R] = replicates(
            c, noise_sigma(wl, c), R, _rng(config.seed, *key, _angle_key(row.angle), 1),
            _rng(config.seed, *key, _angle_key(row.angle), 2), config.noise_scale,
            tilt_rng=_rng(config.seed, *key, _angle_key(row.angle), 4))
    groups["scytonemin_depth"] = depth
    per_spectrum = groups.loc[groups.index.repeat(R)].reset_index(drop=True)
    rep = np.tile(np.arange(R), len(groups))
    rel = [f"{gid}/rep_{r:03d}.npy" for gid, r in zip(per_spectrum["group_id"], rep, strict=True)]
    manifest = pd.DataFrame({
        "relative_path": rel, "treatment": per_spectrum["treatment"], "sample": per_spectrum["sample"],
        "angle": per_spectrum["angle"], "group_id": per_spectrum["group_id"],
        "source_path": [f"synthetic://{config.preset}/seed_{config.seed}/{p}" for p in rel],
    })
    dose_cols = doses.drop(columns=["treatment_number", "column_label"]).columns
    dose_rows = doses.loc[per_spectrum["treatment_number"]].reset_index(drop=True)
    dose_features = pd.concat([
        manifest[["relative_path", "treatment"]], per_spectrum[["treatment_number"]],
        manifest[["sample", "angle", "group_id"]], dose_rows[["column_label", *dose_cols]]], axis=1)
    return SynthData(wavelength=wl, manifest=manifest, spectra=spectra,
                     groups=groups[["group_id", "treatment", "sample", "angle", "scytonemin_depth"]],
                     clean=clean, dose_features=dose_features)


def write_synthetic(out: str | Path, config: SynthConfig, force: bool = False) -> SynthData:
    """Generate and write the full layout under ``out`` (see the module docstring).

    ``out`` must be absent or empty unless ``force`` (then its old content is replaced whole).
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not force)):
        raise ConfigError(f"{out}: exists and is not an empty directory; choose a new OUT or pass --force")
    start = time.perf_counter()
    data = generate(config)
    rel = data.manifest["relative_path"].tolist()
    # The tree is built in a hidden sibling and renamed into place whole: one sync for thousands
    # of files, and a crash never leaves a half-written dataset under ``out``.
    with io.staged_directory(out, replace=force) as stage:
        root, meta, clean_dir = stage / "spectra_for_fold", stage / "metadata", stage / CLEAN_DIR
        for path, x in zip(rel, data.spectra, strict=True):
            io.atomic_save_npy(root / path, x, durable=False)
        clean_paths = [f"{gid}.npy" for gid in data.groups["group_id"]]
        for path, x in zip(clean_paths, data.clean, strict=True):
            io.atomic_save_npy(clean_dir / path, x, durable=False)
        io.atomic_save_npy(root / contract.GRID_FILE, data.wavelength, durable=False)
        io.atomic_write_csv(root / contract.MANIFEST_FILE, data.manifest, durable=False)
        io.atomic_write_csv(meta / contract.DOSE_FEATURES_FILE, data.dose_features, durable=False, na_rep="nan")
        clean_manifest = data.groups.assign(clean_path=clean_paths, replicates=config.replicates)
        columns = ["group_id", "treatment", "sample", "angle", "clean_path", "replicates", "scytonemin_depth"]
        io.atomic_write_csv(clean_dir / CLEAN_MANIFEST, clean_manifest[columns], durable=False)
        stats.write_stats(
            stats.StatsTargets.in_layout(root, meta),
            stats.lambda_stats(data.spectra, data.wavelength),
            stats.sampling_weights(data.dose_features, rel),
            stats.dose_stats(data.dose_features, rel),
        )
        io.atomic_write_json(stage / CONFIG_FILE, {
            "config": {**asdict(config), "treatments": list(config.treatments), "angles": list(config.angles)},
            "physics": {"baseline": BASELINE, "dips_centre_sigma_depth": [list(d) for d in DIPS],
                        "scytonemin_dose_depth": SCYTONEMIN_DOSE_DEPTH, "noise": NOISE, "max_clean": MAX_CLEAN,
                        "smooth_deviation": SMOOTH_DEVIATION, "fixed_pattern": FIXED_PATTERN},
            "layout": {"data_root": "spectra_for_fold", "metadata_dir": "metadata",
                       "clean_manifest": f"{CLEAN_DIR}/{CLEAN_MANIFEST}"},
        }, durable=False)
    log.info("synthetic %s (seed %d): %d spectra in %d groups under %s in %.1f s", config.preset,
             config.seed, len(rel), len(data.groups), out, time.perf_counter() - start)
    return data
