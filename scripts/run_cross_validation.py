#!/usr/bin/env python3
"""Runbook §4: `python3 scripts/run_cross_validation.py [--folds 3 4 5] [--skip-existing] …`.

Thin wrapper over `spectra-cv cv` (same options; also --parallel/--gpus). Run it from the run
root: manifests/, logs/, checkpoints/, denoised/ and artifacts/ are written beside data/.
"""

from _runbook_cli import run

if __name__ == "__main__":
    run("cv", __file__)
