"""How a run computes on its device: determinism, cuDNN autotuning, the optimiser's kernel, RNG state.

Called once at the start of a run, before anything touches CUDA (cuBLAS reads its workspace
setting when its first handle is created).
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import torch

from spectra_cv.errors import ConfigError
from spectra_cv.log import get_logger
from spectra_cv.train.config import TrainConfig

log = get_logger("train")

CUBLAS_WORKSPACE = ":4096:8"
"""cuBLAS workspace setting that makes its GEMMs deterministic (CUDA ≥ 10.2; NVIDIA's docs)."""


def configure(cfg: TrainConfig, device: torch.device) -> None:
    """Apply ``--deterministic`` and ``--cudnn_benchmark`` to this process.

    Deterministic mode warns (instead of failing mid-run) on an op PyTorch has no deterministic
    kernel for, so a long run is never lost to it; the warning names the op.
    """
    if cfg.deterministic:
        set_by_user = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
        if set_by_user not in (None, ":4096:8", ":16:8"):
            log.warning("--deterministic: CUBLAS_WORKSPACE_CONFIG=%s is not one of :4096:8 / :16:8; "
                        "cuBLAS may not be deterministic", set_by_user)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
        torch.use_deterministic_algorithms(True, warn_only=True)
        log.info("deterministic algorithms on (CUBLAS_WORKSPACE_CONFIG=%s)", os.environ["CUBLAS_WORKSPACE_CONFIG"])
    elif torch.are_deterministic_algorithms_enabled():  # setting it imports torch._inductor (~1 s): only if on
        torch.use_deterministic_algorithms(False)
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = cfg.deterministic
        torch.backends.cudnn.benchmark = cfg.cudnn_benchmark and not cfg.deterministic
        if cfg.cudnn_benchmark and cfg.deterministic:
            log.warning("--cudnn_benchmark ignored under --deterministic (autotuning picks kernels by timing)")


def warn_nondeterministic_backend(cfg: TrainConfig, backend: str) -> bool:
    """Under ``--deterministic``, say when the scan's kernel cannot be; returns whether it warned."""
    if cfg.deterministic and backend == "cuda":
        log.warning("--deterministic with mamba-ssm's scan: its backward accumulates gradients with atomic adds, "
                    "so weights differ in the last bits between runs; --scan_backend torch is bit-reproducible")
        return True
    return False


def fused_optimizer(device: torch.device) -> bool:
    """Whether AdamW runs as one fused kernel: on CUDA (one launch per step instead of one per tensor);
    on the CPU the default (for-each) implementation is kept, so CPU results stay as they were."""
    return device.type == "cuda"


def rng_state(device: torch.device) -> dict[str, Any]:
    """The global RNG states a resumed run must restore: the CPU one, and the device's on CUDA."""
    state: dict[str, Any] = {"torch_rng": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(saved: dict[str, Any], device: torch.device) -> None:
    """Restore what ``rng_state`` saved (a state without ``cuda_rng``, from a CPU run, leaves CUDA's alone)."""
    torch.set_rng_state(saved["torch_rng"].cpu())
    if device.type == "cuda" and saved.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(saved["cuda_rng"].cpu(), device)


COMPILERS = {"cuda": ("cc", "gcc", "clang"), "cpu": ("c++", "g++", "clang++")}
"""What ``torch.compile`` needs on each device: Triton builds its CUDA launcher with a C compiler;
Inductor's CPU code is C++."""


def check_compile(cfg: TrainConfig, device: torch.device) -> None:
    """Refuse ``--compile`` up front where it would fail at the first step: no compiler on PATH."""
    if not cfg.compile:
        return
    wanted = COMPILERS["cuda" if device.type == "cuda" else "cpu"]
    named = os.environ.get("CC" if device.type == "cuda" else "CXX")
    if named and shutil.which(named):
        return
    if not any(shutil.which(name) for name in wanted):
        raise ConfigError(
            f"--compile on {device.type} needs a compiler ({' or '.join(wanted)}) on PATH, and none is there "
            "(the runtime image ships none); drop --compile, or run where one is installed"
        )
