"""Shared fixtures: every test runs with paths pointed at its own tmp_path."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from spectra_cv import paths

sys.path.insert(0, str(Path(__file__).parent))  # runs_support, shared by the fold-run tests

E2E_FIXTURES = frozenset({"data", "uninterrupted", "tiny_run", "trained", "built"})
"""Fixtures that make a test end to end: synthetic datasets that folds, training runs or the report
run on. Their tests get the ``e2e`` marker, which ``make test-fast`` leaves out."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that run folds, training or the report (``e2e``): by the fixtures they use, or by hand."""
    for item in items:
        if E2E_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(autouse=True)
def _isolated_paths(tmp_path, monkeypatch):
    """Point every path default at ``tmp_path`` so no test reads or writes the working tree."""
    monkeypatch.setenv(paths.ENV_DATA_ROOT, str(tmp_path / "data" / "spectra_for_fold"))
    monkeypatch.setenv(paths.ENV_METADATA_DIR, str(tmp_path / "data" / "metadata"))
    monkeypatch.setenv(paths.ENV_RUN_ROOT, str(tmp_path))
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def data(tmp_path_factory) -> Path:
    """A tiny synthetic dataset (216 spectra) shared by the fold-run tests (read-only: copy before editing)."""
    from spectra_cv.data import synth

    root = tmp_path_factory.mktemp("data")
    synth.write_synthetic(root / "data", synth.tiny())
    return root / "data"


@pytest.fixture(scope="session")
def uninterrupted(data, tmp_path_factory) -> Path:
    """Fold 1 run once, start to end: the reference the crash tests compare against (copy before rerunning)."""
    from runs_support import fold_args, spectra_cv

    root = tmp_path_factory.mktemp("uninterrupted")
    spectra_cv("fold", "--fold", "1", *fold_args(data, root), cwd=root)
    return root
