"""Project exceptions. The CLI edge turns every ``SpectraCVError`` into a click error (exit 1)."""

from __future__ import annotations


class SpectraCVError(Exception):
    """Base class of every error the project raises on purpose."""


class DataContractError(SpectraCVError):
    """Input data break the data contract; the message names the file or row and the fix.

    ``problems`` holds every problem found (a check reports them all, capped), so a caller
    can show the whole list rather than the first failure.
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems: list[str] = list(problems) if problems else [message]


class FoldError(SpectraCVError):
    """A fold definition is invalid or a split leaks (a sample in two roles)."""


class Refused(SpectraCVError):
    """Doing as asked would overwrite or mix results, so nothing was done; names what differs and the
    way forward. The CLI exits with ``EXIT_REFUSED`` so a runner (``cv``, ``make cv``) can tell it from
    a failure."""


class FoldRefused(Refused):
    """Running a fold as asked would overwrite or mix results (a changed config or data, a finished fold)."""


class RunRootBusy(Refused):
    """Another cross-validation run holds the run root."""


class ResumeRefused(Refused):
    """A resumable training state belongs to another run: other settings or other inputs."""


EXIT_REFUSED = 3


class ConfigError(SpectraCVError):
    """A configuration value or combination of flags is invalid; names the flag to change."""


class ModelOutputError(SpectraCVError):
    """A model produced unusable output (NaN/inf); names the row and the checkpoint."""


class StorageError(SpectraCVError):
    """A file could not be written or read for a reason of the file system (full, read-only, no
    permission); names the file and the fix. ``errno`` is the operating system's code."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno
