"""A run's whole configuration (model + objective + trainer + FiLM features) and named presets.

Presets are Python functions returning a ``RunConfig``; CLI flags override their fields.

* ``recipe()`` — the cross-validation recipe: D384×8 d_state 16, FiLM 8→64, bs 600, 200 epochs,
  patience 21, the full objective, EMA 0.999, bf16 autocast on CUDA.
* ``cpu_quick()`` — the same pipeline sized for 2 CPU cores (minutes per fold).

Measured choices (fold 1 of the real data, validation split; see the issue notes):

* the residual head (the network predicts a correction to its input): the original
  sigmoid-rebuild head stays selectable with ``--no_residual --out_activation sigmoid``;
* bidirectional mixers: a causal scan can only smooth with a lag, and learned no better than
  the identity in minutes; ``--no_bidirectional`` restores the original's single direction;
* ``dip_weight`` 0.002: with λ-weights normalised to mean 1 the fidelity terms are ~0.005,
  while the dip term is O(1); at the runbook's 1.0 it swamped them and validation PSNR fell to
  18.8 dB in three epochs. 0.002 ≈ 1/488 restores the original's balance (its weights had mean 488).
* ``prior="ridge"``: the residual starts from ridge regression fitted on the train split (the
  strongest baseline, chosen exactly as the baseline is) instead of from the noisy input. Without
  it the CPU model plateaued at 47.3 dB validation PSNR (Gaussian smoothing: 49.5); a PCA prior
  started at 53.7 and crept up; the ridge prior starts at ridge level (54.30) and the network adds
  a little (54.32 after 6 epochs). ``--prior none`` restores the plain residual.
  Since the prior's α is chosen on held-out samples of the train split (as the ridge baseline's),
  fold 1 validation starts at 54.96 dB after one epoch and peaks at 55.04 (epoch 7 of 11 in 840 s);
  five-fold test: model 54.73 ± 0.34 dB, ridge 54.68 ± 0.37 (the network adds ~0.05 dB).
* ``prior="ridge_wiener"`` (``PRIOR``): the mean of ridge and the Wiener filter, the best linear
  method (five-fold test 55.28 ± 0.24 dB); alone, the network stayed at it (fold 1 val 55.07).
* ``SIGNAL_JITTER``: a smooth relative deviation added to inputs and targets alike; fold 1
  validation 55.14 dB / 0.2877° against the prior's 55.10 / 0.2888 (absolute deviations raised PSNR
  more but worsened SAM; a SAM term in the objective worsened SAM). Five-fold test with both:
  55.48 ± 0.27 dB, 0.306°, above ridge+Wiener in every fold (+0.20 ± 0.05 dB).
* ``MADE_PAIRS``: half of every batch made anew (a group's mean mixed with another sample's of the
  same treatment and angle, carrying another spectrum's real residual; the target is that signal) and
  validation-SAM ties within 0.001° broken by PSNR when keeping a checkpoint; fold 1 validation
  55.33 / 0.2873 and (seed 1) 55.35 / 0.2860 against 55.18 / 0.2877 without.
* No dose conditioning (``cpu_quick`` only): no FiLM conditioning on the dose features. With only three
  samples per treatment in a fold's train split, the dose identifies their group means; without it
  fold 1 validation rose to 55.41 / 0.2870 and fold 5 to 56.12 dB (SAM 0.3454, against 0.3418).
  The recipe keeps FiLM until a GPU run compares the two. Every lever and its figures:
  docs/model-levers.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from spectra_cv.data import contract
from spectra_cv.errors import ConfigError
from spectra_cv.model.mamba_uv import ModelConfig
from spectra_cv.model.zoo import cv_recipe_config, model_config
from spectra_cv.objective import ObjectiveConfig
from spectra_cv.train.config import TrainConfig, config_hash, config_to_dict

BALANCED_DIP_WEIGHT = 0.002
"""Dip-term weight that keeps the original's balance once λ-weights are normalised to mean 1."""


PRIOR = "ridge_wiener"
"""The presets' prior: the mean of ridge and the Wiener filter, the best linear method measured."""
SIGNAL_JITTER: dict[str, Any] = {"signal_jitter": 3e-3, "signal_jitter_relative": True, "signal_jitter_length": 80.0}
"""The presets' smooth relative deviation of inputs and targets (5.5 % rms, ℓ = 40 nm): chosen on
fold 1's validation split (docs/model-levers.md)."""
MADE_PAIRS: dict[str, Any] = {"residual_transplant": 0.5, "signal_mix": 0.5, "select_sam_tie": 0.001}
"""Half of every batch made anew (a group's mean mixed with another sample's, carrying another
spectrum's real residual) and SAM ties within 0.001° broken by PSNR: chosen on fold 1's validation
split, two seeds (docs/model-levers.md)."""


HASH_EXCLUDED_TRAIN = ("device", "checkpoint_blocks", "deterministic", "compile")
"""Train settings that decide where and how, not what, a run computes: outside the config hash."""
HASH_OMITTED_WHEN_OFF: dict[str, Any] = {"residual_transplant": 0.0, "signal_mix": 0.0, "select_sam_tie": 0.0}
"""Train settings added after runs were recorded: left out of the hash while off, so a config that
does not use them keeps the hash it had before they existed (a rerun is not refused as changed)."""


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """Everything that decides what a training run computes (paths and device excluded)."""

    model: ModelConfig
    """Architecture (stored in every checkpoint)."""
    objective: ObjectiveConfig
    """Loss terms and weights."""
    train: TrainConfig
    """Optimisation, Noise2Noise, evaluation, numerics."""
    film_features: tuple[str, ...] = contract.CV_FILM_FEATURES
    """Conditioning features, in order (empty: no FiLM)."""
    preset: str = "custom"
    """Name of the preset the run started from (provenance only)."""

    def __post_init__(self) -> None:
        if self.model.film and self.model.cond_dim != len(self.film_features):
            raise ConfigError(
                f"--film_features gives {len(self.film_features)} feature(s) but the model's cond_dim is "
                f"{self.model.cond_dim}; they must match"
            )
        if not self.model.film and self.film_features:
            raise ConfigError("--film_features given without --geometry_film; add --geometry_film or drop them")

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    def hash(self) -> str:
        """Hash of what must be equal across folds (the device is not part of it)."""
        data = self.to_dict()
        data["train"] = {k: v for k, v in data["train"].items() if k not in HASH_EXCLUDED_TRAIN
                         and not (k in HASH_OMITTED_WHEN_OFF and v == HASH_OMITTED_WHEN_OFF[k])}
        data.pop("preset", None)
        return config_hash(data)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunConfig:
        return cls(
            model=ModelConfig.from_dict(values["model"]),
            objective=ObjectiveConfig.from_dict(values["objective"]),
            train=TrainConfig.from_dict(values["train"]),
            film_features=tuple(values.get("film_features", ())),
            preset=str(values.get("preset", "custom")),
        )


def recipe() -> RunConfig:
    """The cross-validation recipe's settings (residual head by default; see the module docstring)."""
    features = contract.CV_FILM_FEATURES
    return RunConfig(
        model=cv_recipe_config(residual=True, out_activation="clamp", bidirectional=True, prior=PRIOR,
                               cond_dim=len(features)),
        objective=ObjectiveConfig(dip_weight=BALANCED_DIP_WEIGHT),
        train=TrainConfig(
            epochs=200, batch_size=600, lr=3e-4, lr_min=3e-5, weight_decay=1e-4, early_stop_patience=21,
            ema=True, ema_decay=0.999, amp=True, amp_dtype="bf16", **SIGNAL_JITTER, **MADE_PAIRS,
            checkpoint_blocks=True,  # batch 600 fits in 80 GB with the PyTorch scan too (make bench)
        ),
        film_features=features,
        preset="recipe",
    )


def cpu_quick() -> RunConfig:
    """Small enough for 2 CPU cores: bidirectional D32×2, expand 1, d_state 4; 14 minutes per fold.

    Targets are leave-one-out means (``--no_noise2noise_pairwise``): as unbiased as a partner
    replicate but ~1/√n as noisy, which matters when only a few thousand steps fit the budget.
    No dose conditioning (see above); the angle still reaches the network as an input channel.
    """
    return RunConfig(
        model=model_config(
            "mamba_tiny_uv", d_model=32, n_layers=2, d_state=4, expand=1, film=False, film_hidden_dim=32,
            cond_dim=1, residual=True, out_activation="clamp", bidirectional=True, prior=PRIOR,
        ),
        objective=ObjectiveConfig(dip_weight=BALANCED_DIP_WEIGHT),
        train=TrainConfig(
            epochs=60, batch_size=64, lr=1e-3, lr_min=5e-5, warmup_epochs=1.0, weight_decay=1e-4,
            noise2noise_pairwise=False, early_stop_patience=10, ema=True, ema_decay=0.995, time_budget_s=840.0,
            **SIGNAL_JITTER, **MADE_PAIRS,
        ),
        film_features=(),
        preset="cpu_quick",
    )


PRESETS = {"recipe": recipe, "cpu_quick": cpu_quick}


def preset(name: str) -> RunConfig:
    """The named preset; unknown names raise ConfigError listing the known ones."""
    if name not in PRESETS:
        raise ConfigError(f"--preset {name!r} is unknown; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]()
