"""Shared fixtures: every test runs with paths pointed at its own tmp_path."""

from __future__ import annotations

import pytest

from spectra_cv import paths


@pytest.fixture(autouse=True)
def _isolated_paths(tmp_path, monkeypatch):
    """Point every path default at ``tmp_path`` so no test reads or writes the working tree."""
    monkeypatch.setenv(paths.ENV_DATA_ROOT, str(tmp_path / "data" / "spectra_for_fold"))
    monkeypatch.setenv(paths.ENV_METADATA_DIR, str(tmp_path / "data" / "metadata"))
    monkeypatch.setenv(paths.ENV_RUN_ROOT, str(tmp_path))
    monkeypatch.chdir(tmp_path)
