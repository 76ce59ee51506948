"""The dataset as tensors on the device: spectra, groups, conditioning; N2N targets by index.

The whole corpus is ~20 MB, so a split lives on the device as a handful of tensors and batches
are formed by indexing: no DataLoader, no workers. Noise2Noise partners are drawn by index
arithmetic inside each (treatment, sample, angle) group; leave-one-out means come from group sums.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from spectra_cv.data import contract
from spectra_cv.data.smooth import smooth_factor
from spectra_cv.data.splits import Split
from spectra_cv.errors import DataContractError


@dataclass(frozen=True, kw_only=True)
class SplitArrays(Split):
    """A split read by ``data.splits`` (host memory, manifest order) with what training adds."""

    cond: np.ndarray
    """(N, F) float32 normalised conditioning features (F may be 0)."""
    fingerprint: str
    """sha256 of the relative paths and spectra bytes: identifies exactly the data trained on."""


def fingerprint(relative_paths: list[str] | tuple[str, ...], noisy: np.ndarray) -> str:
    """sha256 over the relative paths (in order) and the float32 spectra bytes."""
    digest = hashlib.sha256()
    digest.update("\n".join(relative_paths).encode("utf-8"))
    digest.update(np.ascontiguousarray(noisy, dtype=np.float32).tobytes())
    return digest.hexdigest()


def with_conditioning(split: Split, cond: np.ndarray, label: str = "manifest") -> SplitArrays:
    """A split read by ``data.splits`` with its conditioning rows and fingerprint, for training."""
    if cond.shape[0] != len(split.relative_paths):
        raise DataContractError(f"{label}: {cond.shape[0]} conditioning rows for {len(split.relative_paths)} spectra")
    return SplitArrays(
        relative_paths=split.relative_paths,
        noisy=split.noisy,
        groups=split.groups,
        cos_theta=split.cos_theta,
        warnings=split.warnings,
        cond=np.asarray(cond, dtype=np.float32),
        fingerprint=fingerprint(split.relative_paths, split.noisy),
    )


def smooth_deviation_factor(length: int, variance: float, length_scale: float,
                            device: torch.device) -> torch.Tensor:
    """(L, L) float32 F with z @ F ~ N(0, variance · exp(−(i − j)²/2ℓ²)) for z ~ N(0, I) of shape (·, L).

    The transpose of ``data.smooth.smooth_factor`` (Fᵀ F = K), for row vectors.
    """
    return torch.as_tensor(smooth_factor(length, length_scale, variance).T, dtype=torch.float32, device=device)


class DeviceSplit:
    """A split on the device with group bookkeeping for N2N partners and LOO means.

    Shapes: ``noisy`` (N, L); ``cond`` (N, F); ``cos`` (N,); ``group`` (N,) int64.
    """

    def __init__(self, arrays: SplitArrays, wavelength: np.ndarray, device: torch.device) -> None:
        self.arrays = arrays
        self.device = device
        self.noisy = torch.as_tensor(arrays.noisy, device=device)
        self.cond = torch.as_tensor(arrays.cond, device=device)
        self.cos = torch.as_tensor(arrays.cos_theta, device=device)
        names, inverse = np.unique(np.asarray(arrays.groups), return_inverse=True)
        counts = np.bincount(inverse, minlength=len(names))
        if counts.min(initial=2) < contract.MIN_REPLICATES_PER_GROUP:
            small = names[counts < contract.MIN_REPLICATES_PER_GROUP][0]
            raise DataContractError(
                f"group {small} has {counts.min()} replicate(s); Noise2Noise needs at least "
                f"{contract.MIN_REPLICATES_PER_GROUP} per group: add replicates or drop the group"
            )
        order = np.argsort(inverse, kind="stable")
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order)) - offsets[inverse[order]]
        self.group = torch.as_tensor(inverse, dtype=torch.long, device=device)
        self.group_names = tuple(str(n) for n in names)
        self._order = torch.as_tensor(order, dtype=torch.long, device=device)
        self._offset = torch.as_tensor(offsets[inverse], dtype=torch.long, device=device)
        self._size = torch.as_tensor(counts[inverse], dtype=torch.long, device=device)
        self._rank = torch.as_tensor(rank, dtype=torch.long, device=device)
        lam = torch.as_tensor(wavelength, dtype=torch.float32, device=device)
        self.lambda_norm = 2.0 * (lam - lam[0]) / (lam[-1] - lam[0]) - 1.0  # (L,)
        sums = torch.zeros(len(names), self.noisy.shape[1], dtype=torch.float64, device=device)
        sums.index_add_(0, self.group, self.noisy.double())
        size = self._size.double().unsqueeze(1)
        self.loo = ((sums[self.group] - self.noisy.double()) / (size - 1.0)).float()  # (N, L)
        self._jitter_factors: dict[tuple[float, float], torch.Tensor] = {}
        families = np.array(["/".join((g.split("/")[0], g.split("/")[-1])) for g in names])[inverse]
        _, family = np.unique(families, return_inverse=True)
        fam_counts = np.bincount(family)
        fam_order = np.argsort(family, kind="stable")
        fam_offsets = np.concatenate([[0], np.cumsum(fam_counts)[:-1]])
        self._fam_order = torch.as_tensor(fam_order, dtype=torch.long, device=device)
        self._fam_offset = torch.as_tensor(fam_offsets[family], dtype=torch.long, device=device)
        self._fam_size = torch.as_tensor(fam_counts[family], dtype=torch.long, device=device)

    def __len__(self) -> int:
        return int(self.noisy.shape[0])

    def cond_of(self, idx: torch.Tensor) -> torch.Tensor | None:
        """The model's ``cond`` for rows ``idx``: (B, F), or None for a model without dose conditioning."""
        return self.cond[idx] if self.cond.shape[1] > 0 else None

    def inputs(self, idx: torch.Tensor, shift: torch.Tensor | None = None) -> torch.Tensor:
        """Model input (B, 3, L): reflectance (+ ``shift`` (B, L) when given), λ normalised to [−1, 1],
        cos θ repeated along λ."""
        refl = self.noisy[idx] if shift is None else self.noisy[idx] + shift  # (B, L)
        lam = self.lambda_norm.expand_as(refl)
        cos = self.cos[idx].unsqueeze(1).expand_as(refl)
        return torch.stack([refl, lam, cos], dim=1)

    def jitter_factor(self, variance: float, length_scale: float) -> torch.Tensor:
        """The ``smooth_deviation_factor`` of this split's length, built once per setting."""
        key = (float(variance), float(length_scale))
        if key not in self._jitter_factors:
            self._jitter_factors[key] = smooth_deviation_factor(self.noisy.shape[1], *key, self.device)
        return self._jitter_factors[key]

    def partner_draws(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """``count`` random 62-bit integers from ``generator`` (CPU), on the device in one copy:
        the raw draws ``partners`` turns into partner indices (one per spectrum of an epoch)."""
        return torch.randint(0, 2**62, (count,), generator=generator, device=generator.device).to(self.device)

    def mates(self, idx: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
        """Index of a spectrum of the same treatment and angle as each of ``idx`` (any sample of it,
        uniform; ``draws`` from ``partner_draws``): whose group mean ``--signal_mix`` mixes in."""
        return self._fam_order[self._fam_offset[idx] + draws % self._fam_size[idx]]

    def partners(self, idx: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
        """Index of another replicate of each spectrum's group, uniform over the group (never itself).

        idx, draws: (B,) on the device; ``draws`` from ``partner_draws``.
        """
        size = self._size[idx]
        shift = draws % (size - 1) + 1  # 1 … n−1
        pos = (self._rank[idx] + shift) % size
        return self._order[self._offset[idx] + pos]
