"""Which device a run uses, and the autocast it runs under: one place for training and denoising."""

from __future__ import annotations

import torch

from spectra_cv.errors import ConfigError
from spectra_cv.train.config import device_name_problem

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str) -> torch.device:
    """``auto`` → cuda when available, else cpu; otherwise the named device, checked: its form, that
    CUDA is there and that the index names a visible GPU (``ConfigError`` naming the fix)."""
    problem = device_name_problem(name)
    if problem is not None:
        raise ConfigError(problem)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: CUDA is not available here; use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {name}: this host sees {torch.cuda.device_count()} GPU(s) (cuda:0…"
                              f"cuda:{torch.cuda.device_count() - 1}); pick one of them")
    return device


def autocast(device: torch.device, amp: bool, dtype: str = "bf16") -> torch.autocast:
    """bf16/fp16 autocast on CUDA when ``amp`` is on; a disabled (no-op) context elsewhere."""
    return torch.autocast(device_type=device.type, dtype=AMP_DTYPES[dtype], enabled=amp and device.type == "cuda")
