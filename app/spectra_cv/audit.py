"""Audit lines in the runbook's format: ``<ISO-8601 time> | <message>``.

``AuditLog`` is a single-writer appender: each line is written with one ``write`` call on a
file opened in append mode, then flushed and fsync'd, so a crash leaves whole lines only.
Whoever owns an audit file (the standalone trainer, or the coordinator during a CV run) is its
only writer.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

from spectra_cv.io import append_durably, encode_text
from spectra_cv.log import get_logger

log = get_logger("audit")


def flatten(message: str) -> str:
    """A message on one line (an audit line never spans two)."""
    return " ".join(str(message).splitlines())


def format_line(stamp: str, message: str) -> str:
    """``<stamp> | <message>`` with its newline: the runbook's audit line."""
    return f"{stamp} | {flatten(message)}\n"


def audit_line(message: str, when: datetime | None = None) -> str:
    """One audit line (with trailing newline); the time is UTC to the second, ISO-8601."""
    stamp = (when or datetime.now(timezone.utc)).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return format_line(stamp, message)


class AuditLog:
    """Append-only, fsync'd writer of one audit file; also echoes ``[audit] message`` to the log."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, message: str) -> None:
        self.write(message)

    def write(self, message: str, when: datetime | None = None) -> None:
        append_durably(self.path, encode_text(audit_line(message, when)))
        log.info("[audit] %s", message)
