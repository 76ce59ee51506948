"""The training objective: its config (the original trainer's loss flags) and the composed loss.

``Objective(config, grid, lambda_weights)`` precomputes weights, masks and kernels once as
buffers (``.to(device)`` moves them); calling it on (B, L) prediction and target returns
``(total, terms)`` where ``terms`` holds each *unweighted* term as a 0-d tensor and
``total = charbonnier + derivative_weight·derivative + deriv_weight_roi·roi_derivative +
curvature_weight_roi·roi_curvature + sam_weight·sam + dip_weight·dip`` (sam only when its weight
is > 0). Inputs are cast to float32 and the loss runs with autocast disabled, so it may be called
inside a bf16 autocast region.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from spectra_cv.configs import Config
from spectra_cv.errors import ConfigError
from spectra_cv.objective import terms
from spectra_cv.objective.dips import DipTerm


@dataclass(frozen=True, kw_only=True)
class ObjectiveConfig(Config):
    """Loss settings; defaults are the CV recipe unless a field says otherwise."""

    LABEL: ClassVar[str] = "objective config"

    charbonnier_eps: float = terms.CHARBONNIER_EPS
    """ε of the Charbonnier term sqrt(d² + ε²)."""
    normalise_lambda_weights: bool = field(default=True, metadata={"flag": False})  # --lambda_weights_scale
    """Divide the λ-weights by their mean (mean 1). False keeps the file's scale (the original's,
    mean ≈ 488 for lambda_stats.npz), which makes the balance between terms arbitrary."""
    derivative_weight: float = 0.3
    """--derivative_weight: weight of the λ-weighted derivative L1 over the whole grid."""
    derivative_order: int = 1
    """--derivative_order: order of that derivative (weights are averaged over its support)."""
    deriv_weight_roi: float = 0.6
    """--deriv_weight_roi: weight of the unweighted first-derivative L1 inside the ROI."""
    deriv_roi_min: float = 320.0
    """--deriv_roi_min (nm): lower bound of the derivative ROI."""
    deriv_roi_max: float = 500.0
    """--deriv_roi_max (nm): upper bound of the derivative ROI."""
    curvature_weight_roi: float = 0.3
    """--curvature_weight_roi: weight of the second-derivative term inside the curvature ROI."""
    curvature_roi_min: float = 320.0
    """Lower bound (nm) of the curvature ROI (the original reused --deriv_roi_min)."""
    curvature_roi_max: float = 500.0
    """Upper bound (nm) of the curvature ROI (the original reused --deriv_roi_max)."""
    curvature_mode: str = field(default="symmetric", metadata={"choices": ("symmetric", "underfill")})
    """'symmetric' |D²P − D²T| (default) or 'underfill' max(|D²T| − |D²P|, 0), the original's
    one-sided hinge, which on a noisy Noise2Noise target rewards copying its noise curvature."""
    sam_weight: float = 0.0
    """Weight of the spectral-angle term (mean angle in radians between prediction and target)."""
    dip_loss: bool = True
    """--dip_loss: add the dip-aware term."""
    dip_weight: float = 1.0
    """--dip_weight: weight of the dip-aware term in the total."""
    dip_warmup_epochs: int = 0
    """--dip_warmup_epochs: the dip term is active only when epoch > this (epochs count from 1)."""
    dip_m: int = 6
    """--dip_m: dips kept per spectrum (most prominent first)."""
    dip_window_half_nm: float = 7.0
    """--dip_window_half_nm: half-width of the window around each dip centre."""
    dip_core_half_nm: float = 3.0
    """Half-width of the dip core that the baseline's guard bands must exclude; also the radius
    within which a centre must be the minimum (new: the original had no core, so its bands met
    at the centre)."""
    dip_min_area: float = 5e-4
    """--dip_min_area: a dip whose target area (reflectance·nm) is below this is ignored."""
    dip_w_area: float = 2.5
    """--dip_w_area: weight of the relative area error (with under-fill)."""
    dip_w_equivalent_width: float = 1.5
    """--dip_w_equivalent_width: the original's EW term equals the area term, so this weight is
    added to dip_w_area (same total as the original) without computing it twice."""
    dip_w_centroid: float = 2.0
    """--dip_w_centroid: weight of the centroid error in nm."""
    dip_w_depth: float = 0.3
    """--dip_w_depth: weight of the mean absolute depth-profile error."""
    dip_underfill_factor: float = 2.0
    """--dip_underfill_factor: a predicted area below the target's costs this many times more."""
    dip_detect_sigma_nm: float = 1.0
    """--dip_detect_sigma_nm: σ of the Gaussian that smooths the target before detection (0: none)."""
    dip_roi_min: float = 320.0
    """--dip_roi_min (nm): dip centres must lie at or above this."""
    dip_roi_max: float = 500.0
    """--dip_roi_max (nm): dip centres must lie at or below this."""
    baseline: str = field(default="local", metadata={"choices": ("local", "continuum", "flat")})
    """--baseline: only 'local' (the CV setting) is implemented; 'continuum'/'flat' are refused."""
    baseline_guard_nm: float = 10.0
    """--baseline_guard_nm: width of each guard band, capped at window half − core half."""

    def problems(self) -> list[str]:
        checks = [
            (self.charbonnier_eps > 0, "charbonnier_eps must be > 0"),
            (self.derivative_order >= 1, "--derivative_order must be ≥ 1"),
            (self.baseline == "local", f"--baseline {self.baseline!r} is not implemented; use 'local'"),
            (self.deriv_roi_min < self.deriv_roi_max, "--deriv_roi_min must be below --deriv_roi_max"),
            (self.curvature_roi_min < self.curvature_roi_max, "curvature_roi_min must be below curvature_roi_max"),
            (self.dip_roi_min < self.dip_roi_max, "--dip_roi_min must be below --dip_roi_max"),
            (self.dip_m >= 1, "--dip_m must be ≥ 1"),
            (self.dip_warmup_epochs >= 0, "--dip_warmup_epochs must be ≥ 0"),
            (self.dip_window_half_nm > self.dip_core_half_nm > 0,
             "need --dip_window_half_nm > dip_core_half_nm > 0 (the guard bands lie between them)"),
            (self.baseline_guard_nm > 0, "--baseline_guard_nm must be > 0"),
            (self.dip_min_area >= 0, "--dip_min_area must be ≥ 0"),
            (self.dip_underfill_factor >= 1, "--dip_underfill_factor must be ≥ 1"),
            (self.dip_detect_sigma_nm >= 0, "--dip_detect_sigma_nm must be ≥ 0"),
        ]
        weights = ("sam_weight", "derivative_weight", "deriv_weight_roi", "curvature_weight_roi", "dip_weight",
                   "dip_w_area", "dip_w_equivalent_width", "dip_w_centroid", "dip_w_depth")
        checks += [(getattr(self, name) >= 0, f"--{name} must be ≥ 0") for name in weights]
        return [message for ok, message in checks if not ok]


def original_config() -> ObjectiveConfig:
    """The CV recipe with the original's semantics where they are selectable."""
    return ObjectiveConfig(normalise_lambda_weights=False, curvature_mode="underfill")


class Objective(nn.Module):
    """Composed loss for one wavelength grid; see the module docstring for the total."""

    # buffers (registered in __init__), each (L,) float32
    weights: torch.Tensor
    deriv_weights: torch.Tensor
    roi_mask: torch.Tensor
    curv_mask: torch.Tensor

    def __init__(self, config: ObjectiveConfig, grid: np.ndarray | torch.Tensor,
                 lambda_weights: np.ndarray | torch.Tensor | None = None) -> None:
        """grid: (L,) nm, strictly increasing; lambda_weights: (L,) positive, or None for ones."""
        super().__init__()
        self.config = config
        grid_t = torch.as_tensor(np.asarray(grid, dtype=np.float64))
        length = grid_t.shape[0]
        if grid_t.ndim != 1 or length < 3 or not bool(torch.all(torch.diff(grid_t) > 0)):
            raise ConfigError("the wavelength grid must be 1-D, ≥ 3 points and strictly increasing")
        if lambda_weights is None:
            weights = torch.ones(length, dtype=torch.float64)
        else:
            weights = torch.as_tensor(np.asarray(lambda_weights, dtype=np.float64))
            if weights.shape != (length,) or not bool(torch.all(torch.isfinite(weights) & (weights > 0))):
                raise ConfigError(
                    f"λ-weights must be finite, positive and of shape ({length},); check --lambda_weights")
        if config.normalise_lambda_weights:
            weights = weights / weights.mean()
        order = config.derivative_order
        if length <= order + 1:
            raise ConfigError(f"--derivative_order {order} needs more than {order + 1} grid points")
        spacings = {
            "d": terms.difference_spacings(grid_t, order),
            "d1": terms.difference_spacings(grid_t, 1),
            "d2": terms.difference_spacings(grid_t, 2),
        }
        self._n_levels = {key: len(levels) for key, levels in spacings.items()}
        roi_mask = terms.roi_difference_mask(grid_t, config.deriv_roi_min, config.deriv_roi_max, 1)
        curv_mask = terms.roi_difference_mask(grid_t, config.curvature_roi_min, config.curvature_roi_max, 2)
        if config.deriv_weight_roi > 0 and not bool(roi_mask.any()):
            raise ConfigError("the derivative ROI holds no grid interval; fix --deriv_roi_min/--deriv_roi_max")
        if config.curvature_weight_roi > 0 and not bool(curv_mask.any()):
            raise ConfigError("the curvature ROI holds no grid interval; fix curvature_roi_min/curvature_roi_max")
        f32 = torch.float32
        self.register_buffer("weights", weights.to(f32), persistent=False)
        self.register_buffer("deriv_weights", terms.support_weights(weights, order).to(f32), persistent=False)
        self.register_buffer("roi_mask", roi_mask.to(f32), persistent=False)
        self.register_buffer("curv_mask", curv_mask.to(f32), persistent=False)
        for key, levels in spacings.items():
            for k, spacing in enumerate(levels):
                self.register_buffer(f"spacing_{key}_{k}", spacing.to(f32), persistent=False)
        self.dip: DipTerm | None = None
        if config.dip_loss:
            self.dip = DipTerm(
                grid_t, roi=(config.dip_roi_min, config.dip_roi_max), m=config.dip_m,
                window_half_nm=config.dip_window_half_nm, core_half_nm=config.dip_core_half_nm,
                guard_nm=config.baseline_guard_nm, detect_sigma_nm=config.dip_detect_sigma_nm,
                min_area=config.dip_min_area, underfill=config.dip_underfill_factor,
                w_area=config.dip_w_area, w_equivalent_width=config.dip_w_equivalent_width,
                w_centroid=config.dip_w_centroid, w_depth=config.dip_w_depth,
            )

    def _levels(self, key: str) -> list[torch.Tensor]:
        return [getattr(self, f"spacing_{key}_{k}") for k in range(self._n_levels[key])]

    def dip_active(self, epoch: int | None) -> bool:
        """Whether the dip term counts at ``epoch`` (1-based; None means always, e.g. evaluation)."""
        return self.dip is not None and (epoch is None or epoch > self.config.dip_warmup_epochs)

    def forward(self, pred: torch.Tensor, target: torch.Tensor, epoch: int | None = None,
                dip_target: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """pred, target: (B, L) (or (B, 1, L)) → (total 0-d float32, {term name: 0-d tensor}).

        dip_target (B, L), optional: the spectra the dip term detects and measures dips on instead
        of ``target``. Dip areas are non-linear in the target, so on a single noisy replicate
        (pairwise Noise2Noise) they are biased by rectified noise and the term prefers a noisy
        prediction to the clean one; passing the group's LOO mean here removes most of that bias.
        """
        cfg = self.config
        with torch.autocast(device_type=pred.device.type, enabled=False):
            p = pred.reshape(pred.shape[0], -1).float()  # (B, L)
            t = target.reshape(target.shape[0], -1).float()
            out = {
                "charbonnier": terms.charbonnier(p, t, self.weights, cfg.charbonnier_eps),
                "derivative": terms.derivative_l1(p, t, self._levels("d"), self.deriv_weights),
                "roi_derivative": terms.roi_derivative_l1(p, t, self._levels("d1"), self.roi_mask),
                "roi_curvature": terms.roi_curvature(p, t, self._levels("d2"), self.curv_mask, cfg.curvature_mode),
            }
            total = (out["charbonnier"] + cfg.derivative_weight * out["derivative"]
                     + cfg.deriv_weight_roi * out["roi_derivative"]
                     + cfg.curvature_weight_roi * out["roi_curvature"])
            if cfg.sam_weight > 0:
                out["sam"] = terms.spectral_angle(p, t)
                total = total + cfg.sam_weight * out["sam"]
            if self.dip is not None and self.dip_active(epoch):
                dt = t if dip_target is None else dip_target.reshape(t.shape).float()
                out.update(self.dip(p, dt))
                total = total + cfg.dip_weight * out["dip"]
        return total, out
