"""Shared by the runbook wrappers in this folder: run one `spectra-cv` subcommand with the
script's own arguments. Uses the installed package, or the checkout's app/ when it is not installed."""

from __future__ import annotations

import sys
from pathlib import Path


def run(subcommand: str, script: str) -> None:
    """``spectra-cv <subcommand> <this script's arguments>``, named after ``script`` in messages."""
    try:
        from spectra_cv.cli import main
    except ModuleNotFoundError as exc:
        if exc.name != "spectra_cv":
            raise
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "app"))
        from spectra_cv.cli import main
    main([subcommand, *sys.argv[1:]], prog_name=Path(script).name)
