"""Model zoo: named MambaUV configs, the CV recipe's overrides, ``build_model`` and a parameter count.

Parameter counts (mamba_ssm v1 parameterisation, counted by ``count_parameters``):

* ``mamba_tiny_uv``  D128×4, d_state 16, no FiLM               468,609  (~0.47 M)
* ``mamba_small_uv`` D192×6, d_state 32, no FiLM             1,624,513  (~1.62 M)
* CV recipe: tiny with D384×8, d_state 16, FiLM 8→64       8,121,793  (~8.12 M)

The recipe keeps the name ``mamba_tiny_uv`` (the runbook's checkpoint is
``mamba_tiny_uv_best.pt``); the real architecture is in every checkpoint's config.
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Any

import torch.nn as nn

from spectra_cv.errors import ConfigError
from spectra_cv.model.mamba_uv import MambaUV, ModelConfig

MODEL_ZOO: MappingProxyType[str, ModelConfig] = MappingProxyType({
    "mamba_tiny_uv": ModelConfig(name="mamba_tiny_uv", d_model=128, n_layers=4, d_state=16,
                                 d_conv=4, expand=2),
    "mamba_small_uv": ModelConfig(name="mamba_small_uv", d_model=192, n_layers=6, d_state=32,
                                  d_conv=4, expand=2),
})
"""Zoo name → base config (the original's defaults: no FiLM, sigmoid output, no skip)."""

CV_RECIPE_OVERRIDES: MappingProxyType[str, Any] = MappingProxyType({
    "d_model": 384, "n_layers": 8, "d_state": 16, "d_conv": 4, "expand": 2, "dropout": 0.0,
    "film": True, "film_hidden_dim": 64, "cond_dim": 8, "out_activation": "sigmoid",
})
"""What the Track H CV orchestrator passes on top of ``mamba_tiny_uv`` (8 FiLM features)."""


def model_config(name: str, **overrides: Any) -> ModelConfig:
    """The zoo config ``name`` with ``overrides`` applied; unknown names or fields raise ConfigError."""
    if name not in MODEL_ZOO:
        raise ConfigError(f"--model {name!r} is not in the zoo; choose one of {sorted(MODEL_ZOO)}")
    known = {f.name for f in dataclasses.fields(ModelConfig)} - {"name"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"unknown model settings {unknown} for --model {name}; known: {sorted(known)}")
    return dataclasses.replace(MODEL_ZOO[name], **overrides)


def cv_recipe_config(**overrides: Any) -> ModelConfig:
    """The CV recipe's model (``mamba_tiny_uv`` + ``CV_RECIPE_OVERRIDES``), then ``overrides``."""
    return model_config("mamba_tiny_uv", **{**CV_RECIPE_OVERRIDES, **overrides})


def build_model(name: str, **overrides: Any) -> MambaUV:
    """A freshly initialised MambaUV from the zoo config ``name`` with ``overrides``."""
    return MambaUV(model_config(name, **overrides))


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters (each shared tensor counted once)."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        total += p.numel()
    return total
