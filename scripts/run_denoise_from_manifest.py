#!/usr/bin/env python3
"""Runbook §9: `python3 scripts/run_denoise_from_manifest.py --manifest … --checkpoint … --output-root …`.

Thin wrapper over `spectra-cv denoise` (same flags, dashed or underscored). Seconds per
thousand spectra on a GPU, about a minute on a CPU. Uses the installed package, or the
checkout's app/ when the package is not installed.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    from spectra_cv.cli import main
except ModuleNotFoundError as exc:
    if exc.name != "spectra_cv":
        raise
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "app"))
    from spectra_cv.cli import main

if __name__ == "__main__":
    main(["denoise", *sys.argv[1:]], prog_name=Path(__file__).name)
