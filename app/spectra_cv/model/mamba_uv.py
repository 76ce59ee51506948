"""MambaUV: the spectral denoiser (Conv1d stem → n × [LayerNorm → FiLM → Mamba → residual] → head).

Input ``x: (B, 3, L)`` holds [reflectance, λ normalised to [−1, 1], cos θ]; ``cond: (B, cond_dim)``
the normalised FiLM features. Output ``(B, 1, L)`` is the denoised reflectance.

Two output paths (``ModelConfig.residual``):

* ``residual=False`` — the original Track H model: the head rebuilds the whole spectrum,
  ``out = act(head(h))`` with ``act`` = sigmoid (original default), clamp to [0, 1] or none.
* ``residual=True`` — the network predicts a correction to the input reflectance,
  ``out = act(x[:, 0] + head(h))``, with the head zero-initialised so the untrained model is the
  identity on the reflectance channel. ``act`` is clamp to [0, 1] or none; a sigmoid of
  ``input + correction`` is not the identity at start, so that combination is refused.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from spectra_cv.configs import Config
from spectra_cv.errors import ConfigError
from spectra_cv.model.backends import BACKENDS
from spectra_cv.model.mixer import Mamba

OUT_ACTIVATIONS = ("sigmoid", "clamp", "none")
PRIORS = ("none", "pca", "ridge", "wiener", "ridge_wiener")


@dataclass(frozen=True, kw_only=True)
class ModelConfig(Config):
    """Architecture of a MambaUV model; stored in every checkpoint and rebuilt from it alone.

    Each field maps onto the training flag ``--<field>`` (``cond_dim`` follows the number of
    ``--film_features``).
    """

    LABEL: ClassVar[str] = "model config"

    name: str = field(metadata={"flag": False})
    """Zoo name the config came from (e.g. ``mamba_tiny_uv``); kept for provenance only."""
    sequence_length: int = 601
    """Samples per spectrum L; inputs must be (B, in_channels, L)."""
    in_channels: int = field(default=3, metadata={"flag": False})
    """Input channels: reflectance, normalised λ, cos θ (channel 0 must be reflectance)."""
    d_model: int = 128
    """Width D of the residual stream."""
    n_layers: int = 4
    """Number of [LayerNorm → FiLM → Mamba → residual] blocks."""
    d_state: int = 16
    """SSM state size N per channel."""
    d_conv: int = 4
    """Kernel of the mixer's causal depthwise convolution."""
    expand: int = 2
    """Mixer inner width = expand · d_model."""
    dropout: float = 0.0
    """Dropout on each mixer output before the residual add."""
    film: bool = field(default=False, metadata={"aliases": ("geometry_film",)})
    """Condition each block on ``cond`` through FiLM (γ, β per layer from an MLP)."""
    film_hidden_dim: int = 32
    """Hidden width of the FiLM MLP."""
    cond_dim: int = field(default=1, metadata={"flag": False})
    """Length of the conditioning vector (number of FiLM features)."""
    film_dropout: float = 0.0
    """Dropout inside the FiLM MLP."""
    out_activation: str = field(default="sigmoid", metadata={"choices": OUT_ACTIVATIONS})
    """Output activation: 'sigmoid' (original), 'clamp' to [0, 1], or 'none'."""
    residual: bool = False
    """Predict a correction added to the input reflectance (zero-init head: identity at start)."""
    reflectance_shift: float = 0.0
    """Subtracted from the reflectance channel before the stem (the head's residual uses the raw input)."""
    reflectance_scale: float = 1.0
    """Multiplies the shifted reflectance channel before the stem. Reflectance spans ~0.05–0.9 while
    its noise is ~0.005, and the λ and cos θ channels are O(1): a scale > 1 makes the detail the
    denoiser must see large next to them at initialisation (1.0: the original)."""
    bidirectional: bool = False
    """Add a second mixer per block that scans 600 → 300 nm (``mixer_rev``), so every output
    sees both sides of its wavelength; the original scans 300 → 600 nm only."""
    scan_backend: str = field(default="auto", metadata={"choices": BACKENDS})
    """Selective-scan implementation: 'auto', 'cuda' (mamba_ssm), 'torch' or 'ref'."""
    prior: str = field(default="none", metadata={"choices": PRIORS})
    """Linear prior the residual head corrects: 'none' (the input itself), 'pca' (projection onto
    the train split's top principal directions), 'ridge' (ridge regression noisy → leave-one-out
    mean), 'wiener' (the Wiener filter with a smooth signal prior) or 'ridge_wiener' (the mean of the
    two). Each is the baseline of that name, fitted on the train split before training (``set_prior``),
    stored as buffers in the checkpoint; the stem also sees the input's distance from the prior."""
    prior_rank: int = 0
    """PCA prior rank (0: chosen on held-out samples of the train split, like the PCA baseline)."""
    prior_alpha: float = 0.0
    """Ridge prior α per training spectrum, penalty α·N·I (0: chosen on held-out samples of the train
    split, like the ridge baseline)."""

    def problems(self) -> list[str]:
        out = []
        if not self.name:
            out.append("--model: the model config needs a non-empty name")
        for key in ("sequence_length", "in_channels", "d_model", "n_layers", "d_state", "d_conv",
                    "expand", "film_hidden_dim", "cond_dim"):
            if getattr(self, key) < 1:
                out.append(f"--{key} must be >= 1; got {getattr(self, key)}")
        if not 0 <= self.prior_rank <= self.sequence_length:
            out.append(f"--prior_rank must lie in [0, --sequence_length={self.sequence_length}]; got {self.prior_rank}")
        if self.prior_alpha < 0:
            out.append(f"--prior_alpha must be >= 0 (0: chosen on train); got {self.prior_alpha}")
        if self.prior != "none" and not self.residual:
            out.append("--prior needs --residual: the prior is the base the head corrects")
        for key in ("dropout", "film_dropout"):
            if not 0.0 <= getattr(self, key) < 1.0:
                out.append(f"--{key} must lie in [0, 1); got {getattr(self, key)}")
        if self.residual and self.out_activation == "sigmoid":
            out.append("--out_activation sigmoid cannot be combined with --residual: sigmoid(input + "
                       "correction) is not the identity at start; use --out_activation clamp or none")
        return out


class FiLMHead(nn.Module):
    """cond: (B, cond_dim) → γ, β: (B, n_layers, d_model) each, γ = 1 + slot 0, β = slot 1.

    Linear(cond→hidden), SiLU, Dropout, Linear(hidden→2·n_layers·d_model) zero-initialised,
    so γ = 1, β = 0 (the identity) for any ``cond`` at start.
    """

    def __init__(self, cond_dim: int, hidden: int, n_layers: int, d_model: int,
                 dropout: float) -> None:
        super().__init__()
        self.n_layers, self.d_model = n_layers, d_model
        self.net = nn.Sequential(
            nn.Linear(cond_dim, hidden), nn.SiLU(), nn.Dropout(dropout),
            nn.Linear(hidden, 2 * n_layers * d_model),
        )
        last = self.net[-1]
        assert isinstance(last, nn.Linear)  # nn.Sequential's indexing yields a plain Module
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cond: (B, cond_dim) → (gamma, beta): (B, n_layers, d_model) each."""
        out = self.net(cond).view(cond.shape[0], self.n_layers, 2, self.d_model)  # (B, n, 2, D)
        return 1.0 + out[:, :, 0], out[:, :, 1]


class MambaBlock(nn.Module):
    """h: (B, L, D) → h + Dropout(Mamba(FiLM(LayerNorm(h)))).

    Bidirectional: the mixer term becomes Mamba(u) + flip(Mamba_rev(flip(u))) along L, two
    mamba-ssm-shaped mixers (``mixer``, ``mixer_rev``), so checkpoints still load under either scan.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(cfg.d_model)
        self.mixer = Mamba(cfg.d_model, d_state=cfg.d_state, d_conv=cfg.d_conv,
                           expand=cfg.expand, backend=cfg.scan_backend)
        self.mixer_rev = (
            Mamba(cfg.d_model, d_state=cfg.d_state, d_conv=cfg.d_conv, expand=cfg.expand,
                  backend=cfg.scan_backend)
            if cfg.bidirectional else None
        )
        self.dropout = nn.Dropout(cfg.dropout)
        self.checkpoint_mixers = False
        """Recompute each mixer in the backward (set with the model's ``checkpoint_blocks``)."""

    def forward(self, h: torch.Tensor, gamma: torch.Tensor | None = None,
                beta: torch.Tensor | None = None) -> torch.Tensor:
        """h: (B, L, D); gamma, beta: (B, D) | None → (B, L, D)."""
        u = self.norm(h)
        if gamma is not None and beta is not None:
            u = u * gamma[:, None, :] + beta[:, None, :]
        mix = self._mix
        mixed = mix(self.mixer, u)
        if self.mixer_rev is not None:
            mixed = mixed + mix(self.mixer_rev, u.flip(1)).flip(1)
        return h + self.dropout(mixed)

    def _mix(self, mixer: nn.Module, u: torch.Tensor) -> torch.Tensor:
        if self.checkpoint_mixers and torch.is_grad_enabled():  # keep only u; recompute the mixer's ~18
            return checkpoint(mixer, u, use_reentrant=False)  # (d_inner × L) activations in the backward
        return mixer(u)


class MambaUV(nn.Module):
    """Spectral denoiser. forward(x: (B, C_in, L), cond: (B, cond_dim) | None) → (B, 1, L)."""

    # buffers, registered in __init__ only with a prior (``config.prior != "none"``)
    prior_matrix: torch.Tensor  # (L, L)
    prior_offset: torch.Tensor  # (L,)
    prior_residual_scale: torch.Tensor  # ()
    prior_fitted: torch.Tensor  # () bool

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise ConfigError(f"MambaUV needs a ModelConfig; got {type(config).__name__}")
        self.config = config
        d = config.d_model
        stem_channels = config.in_channels + (1 if config.prior != "none" else 0)
        self.input_proj = nn.Conv1d(stem_channels, d, kernel_size=3, padding=1)
        nn.init.kaiming_normal_(self.input_proj.weight, nonlinearity="relu")
        assert self.input_proj.bias is not None  # Conv1d's bias=True
        nn.init.zeros_(self.input_proj.bias)
        self.film = (
            FiLMHead(config.cond_dim, config.film_hidden_dim, config.n_layers, d,
                     config.film_dropout)
            if config.film else None
        )
        self.blocks = nn.ModuleList(MambaBlock(config) for _ in range(config.n_layers))
        self.final_norm = nn.LayerNorm(d)
        self.output_proj = nn.Conv1d(d, 1, kernel_size=1)
        assert self.output_proj.bias is not None  # Conv1d's bias=True
        nn.init.zeros_(self.output_proj.bias)
        if config.residual:
            nn.init.zeros_(self.output_proj.weight)  # correction = 0: identity at start
        if config.prior != "none":
            length = config.sequence_length
            self.register_buffer("prior_matrix", torch.zeros(length, length))
            self.register_buffer("prior_offset", torch.zeros(length))
            self.register_buffer("prior_residual_scale", torch.ones(()))
            self.register_buffer("prior_fitted", torch.zeros((), dtype=torch.bool))
        self._prior_checked = False
        self._checkpoint_blocks = False

    @property
    def checkpoint_blocks(self) -> bool:
        """Recompute each block, and within it each mixer, in the backward (training's
        ``checkpoint_blocks``; not in the state dict): only block and mixer inputs are kept."""
        return self._checkpoint_blocks

    @checkpoint_blocks.setter
    def checkpoint_blocks(self, on: bool) -> None:
        self._checkpoint_blocks = bool(on)
        for block in self.blocks:
            assert isinstance(block, MambaBlock)  # nn.ModuleList yields plain Modules
            block.checkpoint_mixers = bool(on)

    def compile_blocks(self, backend: str = "inductor") -> None:
        """``torch.compile`` each block in place (norm, FiLM, projections, convolution, gates); the
        scan is excluded (``Mamba.exclude_scan_from_compile``) and runs as it would eagerly.
        ``backend``: a ``torch.compile`` backend (tests use ``aot_eager``, which needs no compiler)."""
        for block in self.blocks:
            assert isinstance(block, MambaBlock)  # nn.ModuleList yields plain Modules
            for mixer in (block.mixer, block.mixer_rev):
                if mixer is not None:
                    mixer.exclude_scan_from_compile()
            block.compile(backend=backend)

    @torch.no_grad()
    def set_prior(self, matrix: torch.Tensor, offset: torch.Tensor, residual_scale: float) -> None:
        """Install the fitted affine prior ``prior(x) = x @ matrix + offset`` (matrix (L, L), offset (L,)).

        ``residual_scale`` (the typical size of ``x − prior(x)`` on train) makes the stem's extra
        channel O(1).
        """
        cfg = self.config
        if cfg.prior == "none":
            raise ConfigError(f"{cfg.name} has no prior (--prior none)")
        length = cfg.sequence_length
        if tuple(matrix.shape) != (length, length) or tuple(offset.shape) != (length,):
            raise ConfigError(f"prior must be ({length}, {length}) and ({length},); got "
                              f"{tuple(matrix.shape)} and {tuple(offset.shape)}")
        if not (torch.isfinite(matrix).all() and torch.isfinite(offset).all()) or not residual_scale > 0:
            raise ConfigError("the fitted prior is not finite (or its residual scale is not > 0)")
        self.prior_matrix.copy_(matrix)
        self.prior_offset.copy_(offset)
        self.prior_residual_scale.fill_(float(residual_scale))
        self.prior_fitted.fill_(True)
        self._prior_checked = True

    def _prior(self, refl: torch.Tensor) -> torch.Tensor:
        """refl: (B, 1, L) → the prior's estimate (B, 1, L)."""
        if not self._prior_checked:
            if not bool(self.prior_fitted):
                raise ConfigError(
                    f"{self.config.name}: its prior (--prior {self.config.prior}) was never fitted; "
                    "fit it on the train split (spectra-cv train does) or load a checkpoint"
                )
            self._prior_checked = True
        return refl @ self.prior_matrix + self.prior_offset

    def set_scan_backend(self, backend: str) -> None:
        """Switch every mixer's scan backend (the weights are the same for all backends)."""
        self.config = dataclasses.replace(self.config, scan_backend=backend)
        for block in self.blocks:
            assert isinstance(block, MambaBlock)  # nn.ModuleList yields plain Modules
            block.mixer.backend = backend
            if block.mixer_rev is not None:
                block.mixer_rev.backend = backend

    def _check_inputs(self, x: torch.Tensor, cond: torch.Tensor | None) -> None:
        cfg = self.config
        want = (cfg.in_channels, cfg.sequence_length)
        if x.dim() != 3 or tuple(x.shape[1:]) != want:
            raise ConfigError(
                f"{cfg.name}: input must be (batch, {want[0]}, {want[1]}) "
                f"(--in_channels, --sequence_length); got {tuple(x.shape)}"
            )
        if cfg.film:
            if cond is None:
                raise ConfigError(
                    f"{cfg.name} was built with FiLM (--film) and needs cond (batch, "
                    f"{cfg.cond_dim}); none was given"
                )
            if tuple(cond.shape) != (x.shape[0], cfg.cond_dim):
                raise ConfigError(
                    f"{cfg.name}: cond must be (batch={x.shape[0]}, cond_dim={cfg.cond_dim}) "
                    f"(one column per --film_features name); got {tuple(cond.shape)}"
                )
        elif cond is not None:
            raise ConfigError(
                f"{cfg.name} was built without FiLM but got cond {tuple(cond.shape)}; "
                "pass --film to condition on it, or do not pass features"
            )

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, C_in, L); cond: (B, cond_dim) | None → (B, 1, L)."""
        self._check_inputs(x, cond)
        cfg = self.config
        stem_in = x
        base = x[:, :1]  # what the residual head corrects: the input, or its prior projection
        if cfg.reflectance_shift != 0.0 or cfg.reflectance_scale != 1.0:
            refl = (x[:, :1] - cfg.reflectance_shift) * cfg.reflectance_scale  # (B, 1, L)
            stem_in = torch.cat([refl, x[:, 1:]], dim=1)
        if cfg.prior != "none":
            base = self._prior(x[:, :1])
            away = (x[:, :1] - base) / self.prior_residual_scale  # (B, 1, L), O(1)
            stem_in = torch.cat([stem_in, away], dim=1)
        h = F.relu(self.input_proj(stem_in)).transpose(1, 2)  # (B, L, D)
        gammas = betas = None
        if self.film is not None:
            gammas, betas = self.film(cond)  # (B, n_layers, D) each
        recompute = self.checkpoint_blocks and torch.is_grad_enabled()
        for i, block in enumerate(self.blocks):
            args = (h,) if gammas is None or betas is None else (h, gammas[:, i], betas[:, i])
            if recompute:  # keep only the block's inputs; its activations are recomputed in the backward
                h = checkpoint(block, *args, use_reentrant=False)
            else:
                h = block(*args)
        h = self.final_norm(h)
        out = self.output_proj(h.transpose(1, 2))  # (B, 1, L)
        if self.config.residual:
            out = base + out
        act = self.config.out_activation
        if act == "sigmoid":
            return torch.sigmoid(out)
        if act == "clamp":
            return out.clamp(0.0, 1.0)
        return out
