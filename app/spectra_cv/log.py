"""The package's one logger. Library code logs; only the CLI configures handlers."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

LOGGER_NAME = "spectra_cv"


def get_logger(name: str | None = None) -> logging.Logger:
    """Child logger of the package logger (``spectra_cv.<name>``)."""
    return logging.getLogger(LOGGER_NAME if not name else f"{LOGGER_NAME}.{name}")


def configure(verbosity: int = 0) -> None:
    """Send package logs to stderr: INFO by default, DEBUG with ``-v``, WARNING with ``-q``."""
    level = logging.INFO if verbosity == 0 else (logging.DEBUG if verbosity > 0 else logging.WARNING)
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(level)
    ours = [h for h in logger.handlers if getattr(h, "_spectra_cv", False)]
    for handler in ours:  # a command run again in-process (the API, a notebook) logs to today's stderr
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(sys.stderr)
    if not ours:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s | %(levelname)s | %(message)s", "%Y-%m-%dT%H:%M:%S"))
        handler._spectra_cv = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.propagate = False


@contextlib.contextmanager
def log_to_file(path: Path) -> Iterator[None]:
    """Copy the package's log records into ``path`` (appended) for the ``with`` block
    (a fold's train.log / inference logs)."""
    from spectra_cv.io import TEXT_ERRORS  # (io logs through this module)

    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="a", encoding="utf-8", errors=TEXT_ERRORS)
    handler.setFormatter(logging.Formatter("%(asctime)s | %(levelname)s | %(message)s", "%Y-%m-%dT%H:%M:%S"))
    logger = logging.getLogger(LOGGER_NAME)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()
