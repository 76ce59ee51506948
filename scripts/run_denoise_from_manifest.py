#!/usr/bin/env python3
"""Runbook §9: `python3 scripts/run_denoise_from_manifest.py --manifest … --checkpoint … --output-root …`.

Thin wrapper over `spectra-cv denoise` (same flags, dashed or underscored). Seconds per
thousand spectra on a GPU, a few seconds per thousand for the small CPU model.
"""

from _runbook_cli import run

if __name__ == "__main__":
    run("denoise", __file__)
