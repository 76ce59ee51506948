#!/usr/bin/env python3
"""Runbook §3: `python3 scripts/generate_fold_manifests.py --fold N` writes manifests/fold_0N/.

Thin wrapper over `spectra-cv manifests` (same flags: --fold, --config, --input-manifest,
--output-root, --check-files/--no-check-files). Run it from the run root; it takes about a second.
"""

from _runbook_cli import run

if __name__ == "__main__":
    run("manifests", __file__)
