"""A fold's baselines: fitted once, recorded, rebuilt from the record by a resumed or rescored fold."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from spectra_cv.data.splits import Split
from spectra_cv.metrics import baselines as bl
from spectra_cv.metrics import loo_means
from spectra_cv.runs import fold_baselines as fb


def _split(seed: int = 0) -> Split:
    rng = np.random.default_rng(seed)
    groups = tuple(f"treatment_{t}/sample_{s}/{a}" for t in (1, 2) for s in "ABC" for a in ("6Oclock", "12Oclock")
                   for _ in range(4))
    length = 48
    x = np.linspace(0, 1, length)
    clean = {g: 0.4 + 0.1 * np.sin(3 * x + hash(g) % 7) for g in set(groups)}
    noisy = np.stack([clean[g] + 0.01 * rng.normal(size=length) for g in groups]).astype(np.float32)
    return Split(relative_paths=tuple(f"{g}/rep_{i:03d}.npy" for i, g in enumerate(groups)), noisy=noisy,
                 groups=groups, cos_theta=np.ones(len(groups), dtype=np.float32))


def test_fitted_once_then_rebuilt_from_the_record_without_a_search(tmp_path, monkeypatch):
    record = tmp_path / "fold_01_baselines.json"
    train = _split()
    first = fb.fold_baselines(train, record)
    saved = json.loads(record.read_text())
    assert saved["train_fingerprint"] and set(saved["baselines"]) == set(bl.BASELINE_NAMES)
    assert saved["baselines"]["ridge"]["params"] == first["ridge"].params
    assert len(saved["baselines"]["wiener"]["held_out_psnr"]) == len(first["wiener"].train_scores)

    monkeypatch.setattr(bl, "_held_out_scores", lambda *a, **k: pytest.fail("the grid was searched again"))
    again = fb.fold_baselines(train, record)
    for name in bl.BASELINE_NAMES:
        assert again[name].params == first[name].params
        np.testing.assert_array_equal(again[name].apply(train.noisy), first[name].apply(train.noisy), err_msg=name)
    assert again["wiener"].train_scores == pytest.approx(first["wiener"].train_scores)


@pytest.mark.parametrize("damage", ["other spectra", "torn", "missing baseline"])
def test_a_record_of_other_spectra_or_damaged_is_fitted_anew(tmp_path, damage, caplog):
    record = tmp_path / "fold_01_baselines.json"
    fb.fold_baselines(_split(), record)
    train = _split()
    if damage == "other spectra":
        train = _split(seed=1)
    elif damage == "torn":
        record.write_text(record.read_text()[:100])
    else:
        saved = json.loads(record.read_text())
        del saved["baselines"]["pca"]
        record.write_text(json.dumps(saved))
    with caplog.at_level(logging.INFO, logger="spectra_cv"):
        fitted = fb.fold_baselines(train, record)
    assert "fitting anew" in caplog.text
    expected = bl.fit_baselines(train.noisy, loo_means(train.noisy, train.groups), train.groups)
    for name in bl.BASELINE_NAMES:
        np.testing.assert_array_equal(fitted[name].apply(train.noisy), expected[name].apply(train.noisy))
    saved = json.loads(record.read_text())  # written anew, whole
    assert set(saved["baselines"]) == set(bl.BASELINE_NAMES)


@pytest.mark.parametrize("change", ["another grid", "garbled scores"])
def test_a_record_of_another_selection_rule_or_garbled_is_fitted_anew(tmp_path, change, monkeypatch, caplog):
    record = tmp_path / "fold_01_baselines.json"
    train = _split()
    fb.fold_baselines(train, record)
    if change == "another grid":  # parameters chosen on another grid are not this rule's choice
        monkeypatch.setattr(bl, "RIDGE_ALPHAS", bl.RIDGE_ALPHAS[::2])
    else:
        saved = json.loads(record.read_text())
        saved["baselines"]["wiener"]["held_out_psnr"] = "garbled"
        record.write_text(json.dumps(saved))
    searched = []
    real = bl._held_out_scores
    monkeypatch.setattr(bl, "_held_out_scores", lambda *a, **k: searched.append(1) or real(*a, **k))
    with caplog.at_level(logging.INFO, logger="spectra_cv"):
        fb.fold_baselines(train, record)
    assert searched and "fitting anew" in caplog.text
    assert json.loads(record.read_text())["rule_sha256"] == fb.rule_digest()
