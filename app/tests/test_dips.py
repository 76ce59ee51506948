"""Dip detection and the dip-aware term: closed forms and a slow per-spectrum loop reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spectra_cv.errors import ConfigError
from spectra_cv.objective import dips
from spectra_cv.objective.dips import DipTerm

GRID = np.arange(601) * 0.5 + 300.0
STEP = 0.5


def _term(**overrides) -> DipTerm:
    kwargs = dict(roi=(320.0, 500.0), m=6, window_half_nm=7.0, core_half_nm=3.0, guard_nm=10.0,
                  detect_sigma_nm=1.0, min_area=5e-4, underfill=2.0, w_area=2.5, w_equivalent_width=1.5,
                  w_centroid=2.0, w_depth=0.3)
    kwargs.update(overrides)
    return DipTerm(torch.tensor(GRID), **kwargs)


def _gauss(centre: float, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * ((GRID - centre) / sigma) ** 2)


def test_geometry_guard_excludes_core():
    term = _term()
    assert (term.half, term.core, term.guard) == (14, 6, 8)  # bands at ±[3, 7] nm, not ±[0, 7]
    with pytest.raises(ConfigError, match="--dip_window_half_nm"):
        _term(window_half_nm=3.0, core_half_nm=3.0)


def test_detects_dip_minimum_and_ignores_bump():
    """The original's detector found 394.5 and 405.5 (dip shoulders) and 450 (the bump)."""
    target = 0.4 - 0.03 * _gauss(400.0, 1.5) + 0.03 * _gauss(450.0, 1.5)
    centres, valid = _term().detect(torch.tensor(target, dtype=torch.float32).unsqueeze(0))
    assert GRID[centres[valid].numpy()].tolist() == [400.0]


def test_bump_on_sloped_continuum_is_not_a_dip():
    """On a rising continuum the bump's right foot is a genuine (shallow) minimum; the bump is not."""
    target = 0.4 + 0.0004 * (GRID - 300) - 0.03 * _gauss(400.0, 1.5) + 0.03 * _gauss(450.0, 1.5)
    centres, valid = _term().detect(torch.tensor(target, dtype=torch.float32).unsqueeze(0))
    found = GRID[centres[valid].numpy()]
    assert found[0] == 400.0  # most prominent first
    assert not np.any(np.abs(found - 450.0) <= 3.0)
    assert np.sum(np.abs(found - 400.0) <= 7.0) == 1  # no shoulders


def test_noisy_dip_is_the_top_detection():
    rng = np.random.default_rng(0)
    clean = 0.4 + 0.0004 * (GRID - 300) - 0.03 * _gauss(400.0, 1.5) + 0.03 * _gauss(450.0, 1.5)
    target = torch.tensor(clean + 0.002 * rng.normal(size=(8, 601)), dtype=torch.float32)
    centres, valid = _term().detect(target)
    assert valid[:, 0].all()
    assert np.all(np.abs(GRID[centres[:, 0].numpy()] - 400.0) <= 0.5)


def test_window_prominence_hand_values():
    seg = torch.tensor([[3.0, 1.0, 2.0, 0.0, 5.0, 0.5, 4.0],   # nothing below 0: refs 3 and 5
                        [0.5, 2.0, 1.0, 1.0, 1.5, -1.0, 9.0]])  # walks stop at 0.5 and -1: refs 2, 1.5
    np.testing.assert_allclose(dips.window_prominence(seg).numpy(), [3.0, 0.5])


def test_smooth_matches_numpy_and_preserves_constants():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 40))
    kernel = dips.gaussian_kernel(2.0, torch.float64)
    got = dips.smooth(torch.tensor(x), kernel).numpy()
    r = (kernel.shape[0] - 1) // 2
    ref = np.stack([np.convolve(np.pad(row, r, mode="reflect"), kernel.numpy(), mode="valid") for row in x])
    np.testing.assert_allclose(got, ref, rtol=1e-10)
    np.testing.assert_allclose(dips.smooth(torch.full((1, 40), 0.7, dtype=torch.float64), kernel).numpy(), 0.7)


def test_features_closed_form_on_linear_continuum():
    term = _term()
    offsets = np.arange(-14, 15)
    lam = 400.0 + STEP * offsets
    depth_true = np.where(np.abs(offsets) <= 2, 0.01 * (3 - np.abs(offsets)), 0.0)  # triangle, core only
    seg = 0.5 + 0.002 * offsets - depth_true
    depth, area, centroid = dips.window_features(
        torch.tensor(seg), torch.tensor(lam), term.ramp.double(), term.guard, STEP)
    np.testing.assert_allclose(depth.numpy(), depth_true, atol=1e-8)
    assert area.item() == pytest.approx(STEP * 0.01 * 9, rel=1e-6)  # trapz of the triangle
    assert centroid.item() == pytest.approx(400.0, abs=1e-6)


@pytest.mark.parametrize("scale, area_err", [(0.5, 1.0), (1.5, 0.5), (1.0, 0.0)])
def test_area_underfill_and_depth_closed_forms(scale, area_err):
    continuum = 0.4 + 0.0004 * (GRID - 300)
    profile = 0.03 * _gauss(400.0, 1.0)
    target = torch.tensor(continuum - profile, dtype=torch.float64).unsqueeze(0)
    pred = torch.tensor(continuum - scale * profile, dtype=torch.float64).unsqueeze(0)
    term = _term(w_area=1.0, w_equivalent_width=0.0, w_centroid=0.0, w_depth=0.0).double()
    out = term(pred, target)
    assert out["dip_count"].item() == 1.0
    assert out["dip_area"].item() == pytest.approx(area_err, rel=2e-3, abs=1e-6)
    assert out["dip_centroid"].item() == pytest.approx(0.0, abs=1e-6)
    idx = np.arange(200 - 14, 200 + 15)  # depth term: |1 − s| · mean target depth in the window
    assert out["dip_depth"].item() == pytest.approx(abs(1 - scale) * profile[idx].mean(), rel=1e-2, abs=1e-9)
    assert out["dip"].item() == pytest.approx(out["dip_area"].item())


def test_equivalent_width_weight_adds_to_area_weight():
    continuum = 0.4 + 0.0004 * (GRID - 300)
    target = torch.tensor(continuum - 0.03 * _gauss(400.0, 1.0), dtype=torch.float32).unsqueeze(0)
    pred = torch.tensor(continuum - 0.01 * _gauss(401.0, 1.0), dtype=torch.float32).unsqueeze(0)
    out = _term()(pred, target)
    expected = 4.0 * out["dip_area"] + 2.0 * out["dip_centroid"] + 0.3 * out["dip_depth"]
    assert out["dip"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert out["dip_centroid"].item() > 0.1


def test_no_valid_dip_gives_zero_without_nan():
    flat = torch.full((3, 601), 0.3, requires_grad=True)
    out = _term()(flat, flat.detach().clone())
    assert all(torch.isfinite(v) for v in out.values())
    assert out["dip"].item() == 0.0 and out["dip_count"].item() == 0.0
    out["dip"].backward()
    assert torch.isfinite(flat.grad).all()


def test_gradient_is_local_to_dip_windows():
    continuum = 0.4 + 0.0004 * (GRID - 300)
    target = torch.tensor(continuum - 0.03 * _gauss(400.0, 1.0), dtype=torch.float32).unsqueeze(0)
    pred = torch.tensor(continuum - 0.01 * _gauss(400.0, 1.0), dtype=torch.float32).unsqueeze(0)
    pred.requires_grad_()
    _term()(pred, target)["dip"].backward()
    grad = pred.grad[0].numpy()
    inside = np.abs(GRID - 400.0) <= 7.0
    assert np.abs(grad[inside]).sum() > 0 and np.all(np.isfinite(grad))
    assert np.all(grad[~inside] == 0)


# --- slow reference: explicit loops over spectra, positions and dips ----------------------------

def _reference(pred: np.ndarray, target: np.ndarray, smoothed: np.ndarray, term: DipTerm) -> dict:
    half, core, guard, step = term.half, term.core, term.guard, term.step
    n = len(GRID)
    anchor = half - (guard - 1) / 2.0
    area_l, cent_l, depth_l = [], [], []
    for b in range(pred.shape[0]):
        s = smoothed[b]
        cands = []
        for i in range(half, n - half):
            if not (320.0 <= GRID[i] <= 500.0):
                continue
            if not (all(s[i] < s[j] for j in range(max(0, i - core), i))
                    and all(s[i] <= s[j] for j in range(i + 1, min(n, i + core + 1)))):
                continue
            refs = []
            for direction in (-1, 1):
                level = s[i]
                for k in range(1, half + 1):
                    if s[i + direction * k] < s[i]:
                        break
                    level = max(level, s[i + direction * k])
                refs.append(level)
            if min(refs) - s[i] > 0:
                cands.append((min(refs) - s[i], i))
        for _, i in sorted(cands, reverse=True)[: term.m]:
            feats = []
            for x in (target[b], pred[b]):
                seg = x[i - half : i + half + 1].astype(np.float64)
                lam = GRID[i - half : i + half + 1]
                left, right = seg[:guard].mean(), seg[-guard:].mean()
                base = left + (right - left) * (np.arange(-half, half + 1) + anchor) / (2 * anchor)
                depth = np.maximum(base - seg, 0.0)
                area = step * (depth.sum() - 0.5 * (depth[0] + depth[-1]))
                cent = np.sum((depth + 1e-7) * lam) / np.sum(depth + 1e-7)
                feats.append((depth, area, cent))
            (d_t, a_t, c_t), (d_p, a_p, c_p) = feats
            if a_t < term.min_area:
                continue
            area_l.append(abs(a_p - a_t) / (a_t + 1e-7) + (term.underfill - 1) * max(a_t - a_p, 0) / (a_t + 1e-7))
            cent_l.append(abs(c_p - c_t))
            depth_l.append(np.mean(np.abs(d_p - d_t)))
    return {"dip_area": np.mean(area_l), "dip_centroid": np.mean(cent_l), "dip_depth": np.mean(depth_l),
            "dip_count": len(area_l)}


def test_vectorised_matches_loop_reference_b64_l601():
    rng = np.random.default_rng(7)
    b = 64
    continuum = 0.3 + 0.1 * np.sin((GRID[None] - 300) / rng.uniform(40, 90, size=(b, 1)))
    lines = np.zeros((b, 601))
    for centre in (335.5, 340.0, 360.0, 376.5, 404.5, 435.0, 478.5):
        depth = rng.uniform(0.0, 0.02, size=(b, 1))
        lines += depth * _gauss(centre, 1.2)[None]
    clean = continuum - lines
    target = (clean + 0.004 * rng.normal(size=(b, 601))).astype(np.float32)
    pred = (clean + 0.001 * rng.normal(size=(b, 601))).astype(np.float32)
    term = _term()
    out = term(torch.tensor(pred), torch.tensor(target))
    smoothed = dips.smooth(torch.tensor(target), term.kernel).numpy()
    ref = _reference(pred, target, smoothed, term)
    assert out["dip_count"].item() == ref["dip_count"] > b  # several dips per spectrum
    for name in ("dip_area", "dip_centroid", "dip_depth"):
        assert out[name].item() == pytest.approx(ref[name], rel=1e-4), name
