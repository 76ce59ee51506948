"""Provenance of a run: code version, library versions, host — plain values for records.

Nothing here imports torch or mamba_ssm: versions are read from installed package metadata.
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from spectra_cv import __version__

ENV_CODE_VERSION = "SPECTRA_CV_CODE_VERSION"
"""Set by the image build (the git commit it was built from); a checkout asks git instead."""
ENV_IMAGE = "SPECTRA_CV_IMAGE"
"""Image reference passed in by make/compose (a container cannot see its own digest)."""

LIBRARIES = ("torch", "numpy", "pandas", "click", "mamba-ssm", "causal-conv1d", "triton")


def library_versions() -> dict[str, str | None]:
    """Installed version of each library that shapes results (None when absent)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    import torch  # noqa: PLC0415 - already imported by whoever trains; kept out of this module's import

    out["torch_cuda"] = torch.version.cuda
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    out["cudnn"] = str(cudnn) if cudnn is not None else None
    return out


def code_version() -> str:
    """``<package version>+g<commit>[.dirty]`` from git when run from a checkout, else the env/package."""
    env = os.environ.get(ENV_CODE_VERSION)
    if env:
        return env
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{commit}{'.dirty' if dirty else ''}"


def image() -> str | None:
    """The container image reference, when the runner passed one in."""
    return os.environ.get(ENV_IMAGE) or None


def host() -> dict[str, str]:
    return {"hostname": platform.node(), "platform": platform.platform()}


def _cpu_name() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what the platform module says."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(device: str) -> dict[str, str | int | None]:
    """What a run computed on: the torch device (``cpu``, ``cuda:0``), its name (the GPU's, or the
    CPU model), the host's CPU count and torch's thread count (imports torch: call it from training)."""
    import torch  # noqa: PLC0415 - imported by the caller already

    name = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else _cpu_name()
    return {"device": device, "name": name, "cpus": os.cpu_count(), "threads": torch.get_num_threads()}
