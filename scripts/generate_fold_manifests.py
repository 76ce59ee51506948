#!/usr/bin/env python3
"""Runbook §3: `python3 scripts/generate_fold_manifests.py --fold N` writes manifests/fold_0N/.

Thin wrapper over `spectra-cv manifests` (same flags: --fold, --config, --input-manifest,
--output-root, --check-files/--no-check-files). Run it from the run root; it takes about a second.
Uses the installed package, or the checkout's app/ when the package is not installed.
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
    main(["manifests", *sys.argv[1:]], prog_name=Path(__file__).name)
