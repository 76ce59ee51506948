"""Selective-scan backends: mamba_ssm's fused CUDA kernel, the project's PyTorch scan, the reference.

This is the ONLY module of the package that may import ``mamba_ssm``, and it does so lazily,
inside a function, the first time a CUDA scan is asked for. Importing this module (or anything
that imports it) never imports ``mamba_ssm`` or ``triton``; on a CPU-only host nothing ever does.

Backends (``--scan_backend``):

* ``"cuda"``  — ``mamba_ssm.ops.selective_scan_interface.selective_scan_fn`` (fused kernel);
  needs mamba_ssm installed and the tensors on a CUDA device, else ``ConfigError``.
* ``"torch"`` — ``spectra_cv.model.scan.selective_scan`` (pure PyTorch, hand-written backward;
  CPU and CUDA).
* ``"ref"``   — ``spectra_cv.model.scan_ref.selective_scan_ref`` (sequential loop; tests only).
* ``"auto"``  — ``"cuda"`` when the tensors are on CUDA and mamba_ssm imports, else ``"torch"``.

All four take the same arguments with the same meaning (mamba_ssm's ``selective_scan_fn``).
"""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Callable

import torch

from spectra_cv.errors import ConfigError
from spectra_cv.log import get_logger


def _pinned(package: str) -> str:
    """The version ``cuda_kernels.txt`` (the CUDA image's pins, beside this module) gives ``package``."""
    text = (importlib.resources.files("spectra_cv.model") / "cuda_kernels.txt").read_text()
    for line in text.splitlines():
        name, sep, version = line.strip().partition("==")
        if sep and name == package:
            return version
    raise RuntimeError(f"cuda_kernels.txt pins no {package}")  # pragma: no cover - a packaging error


MAMBA_SSM_VERSION = _pinned("mamba-ssm")
"""The mamba-ssm release the CUDA image pins (its release wheels cover torch 2.6–2.10)."""

INSTALL_HINT = (
    f"install it with `pip install mamba-ssm=={MAMBA_SSM_VERSION} --no-build-isolation` "
    "(CUDA hosts only), or use --scan_backend torch"
)

BACKENDS = ("auto", "cuda", "torch", "ref")
"""Accepted values of ``--scan_backend``."""

_log = get_logger("model.backends")
_UNSET = object()
_mamba_scan: object = _UNSET  # cached: the mamba_ssm function, or None when it failed to import
_mamba_import_error: str = ""
_auto_logged: set[str] = set()


def _import_mamba_scan() -> Callable[..., torch.Tensor]:
    """Import and return mamba_ssm's ``selective_scan_fn`` (raises ImportError/OSError)."""
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn  # noqa: PLC0415

    return selective_scan_fn


def mamba_scan_fn() -> Callable[..., torch.Tensor] | None:
    """mamba_ssm's fused ``selective_scan_fn``, or None when mamba_ssm cannot be imported.

    The import is tried once per process and its outcome cached.
    """
    global _mamba_scan, _mamba_import_error
    if _mamba_scan is _UNSET:
        try:
            _mamba_scan = _import_mamba_scan()
        except (ImportError, OSError) as exc:  # a missing package or a broken compiled extension
            _mamba_scan = None
            _mamba_import_error = f"{type(exc).__name__}: {exc}"
    return _mamba_scan  # type: ignore[return-value]


def mamba_ssm_available() -> bool:
    """True when mamba_ssm's fused scan imports in this process (imports it on first call)."""
    return mamba_scan_fn() is not None


def mamba_ssm_mixer_class() -> type[torch.nn.Module]:
    """``mamba_ssm.modules.mamba_simple.Mamba`` itself, for compatibility checks on CUDA hosts.

    Raises ``ConfigError`` with the install hint when mamba_ssm does not import.
    """
    try:
        from mamba_ssm.modules.mamba_simple import Mamba  # noqa: PLC0415
    except (ImportError, OSError) as exc:
        raise ConfigError(f"mamba_ssm does not import here ({exc}); {INSTALL_HINT}") from exc
    return Mamba


def check_backend_name(backend: str, flag: str = "--scan_backend") -> str:
    """Return ``backend`` if it is one of ``BACKENDS``, else raise ``ConfigError`` naming ``flag``."""
    if backend not in BACKENDS:
        raise ConfigError(f"{flag} must be one of {', '.join(BACKENDS)}; got {backend!r}")
    return backend


def resolve_backend(backend: str, device: torch.device) -> str:
    """The concrete backend (``"cuda"``, ``"torch"`` or ``"ref"``) for tensors on ``device``.

    Raises ``ConfigError`` when ``"cuda"`` is asked for but mamba_ssm is missing or the device
    is not CUDA. ``"auto"`` never raises: it picks ``"cuda"`` only where that would work.
    """
    check_backend_name(backend)
    if backend == "auto":
        chosen = "cuda" if device.type == "cuda" and mamba_ssm_available() else "torch"
        key = f"{device.type}:{chosen}"
        if key not in _auto_logged:
            _auto_logged.add(key)
            why = "" if chosen == "cuda" or device.type != "cuda" else f" ({_mamba_import_error})"
            _log.info("scan backend auto -> %s on %s%s", chosen, device.type, why)
        return chosen
    if backend == "cuda":
        if not mamba_ssm_available():
            raise ConfigError(
                f"scan backend 'cuda' needs mamba_ssm, which does not import here "
                f"({_mamba_import_error}); {INSTALL_HINT}"
            )
        if device.type != "cuda":
            raise ConfigError(
                f"scan backend 'cuda' needs tensors on a CUDA device, got {device.type}; "
                "use --scan_backend torch (or auto) on CPU"
            )
    return backend


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    backend: str = "auto",
) -> torch.Tensor:
    """Selective scan on the chosen backend (mamba_ssm ``selective_scan_fn`` semantics).

    u, delta: (Bt, Dm, L); A: (Dm, N) real; B, C: (Bt, N, L); D, delta_bias: (Dm,) | None;
    z: (Bt, Dm, L) | None. Returns out: (Bt, Dm, L) in u's dtype, where per (b, d)
    ``x_t = exp(dt_t A) x_{t-1} + dt_t B_t u_t``, ``y_t = <C_t, x_t> + D u_t``,
    ``out_t = y_t * silu(z_t)``, ``dt = softplus(delta + delta_bias)`` if ``delta_softplus``.
    """
    chosen = resolve_backend(backend, u.device)
    fn: Callable[..., torch.Tensor] | None
    if chosen == "cuda":
        fn = mamba_scan_fn()
    elif chosen == "torch":
        from spectra_cv.model.scan import selective_scan as fn  # noqa: PLC0415
    else:
        from spectra_cv.model.scan_ref import selective_scan_ref as fn  # noqa: PLC0415
    assert fn is not None  # resolve_backend checked that mamba_ssm's kernel imports
    return fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus)


@functools.cache
def eager_selective_scan() -> Callable[..., torch.Tensor]:
    """``selective_scan`` marked for ``torch.compile`` to leave alone (run eagerly, a graph break):
    traced, its per-step loops would unroll into thousands of graph nodes. Built on first use, since
    ``torch.compiler.disable`` imports the compiler stack (seconds) and eager runs never need it."""
    return torch.compiler.disable(selective_scan)
