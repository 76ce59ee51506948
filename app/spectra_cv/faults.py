"""Fault injection for the crash tests: ``SPECTRA_CV_FAULT=<point>`` SIGKILLs the process there.

The points sit where a real crash hurts most (half the denoised files written, an audit append
under way). Unset — always, outside the test suite — ``point`` is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "SPECTRA_CV_FAULT"


def point(name: str) -> None:
    """Die at once (like ``kill -9``) if ``SPECTRA_CV_FAULT`` names this point."""
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
