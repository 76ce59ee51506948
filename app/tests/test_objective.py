"""Objective terms against closed forms / direct NumPy, composition, config and autocast."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from spectra_cv.errors import ConfigError
from spectra_cv.objective import Objective, ObjectiveConfig, original_config
from spectra_cv.objective import terms

GRID = np.arange(601) * 0.5 + 300.0


def _t(x) -> torch.Tensor:
    return torch.tensor(np.asarray(x), dtype=torch.float32)


def test_charbonnier_matches_numpy():
    rng = np.random.default_rng(0)
    p, t = rng.normal(size=(2, 5)), rng.normal(size=(2, 5))
    w = rng.uniform(0.5, 2.0, size=5)
    expected = np.mean(np.sqrt((p - t) ** 2 + 1e-6) * w)
    got = terms.charbonnier(_t(p), _t(t), _t(w), 1e-3)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    assert terms.charbonnier(_t(p), _t(p), _t(np.ones(5))).item() == pytest.approx(1e-3, rel=1e-5)


def test_first_derivative_is_divided_by_step_and_uses_midpoint_weights():
    grid = _t([0.0, 0.5, 1.0, 2.0])  # non-uniform last step
    p = _t([[0.0, 1.0, 1.5, 3.5]])
    w = _t([1.0, 3.0, 1.0, 2.0])
    spacings = terms.difference_spacings(grid, 1)
    d = terms.derivative(p, spacings)
    np.testing.assert_allclose(d.numpy(), [[2.0, 1.0, 2.0]])
    w_mid = terms.support_weights(w, 1)
    np.testing.assert_allclose(w_mid.numpy(), [2.0, 2.0, 1.5])
    got = terms.derivative_l1(p, torch.zeros_like(p), spacings, w_mid)
    assert got.item() == pytest.approx(np.mean([4.0, 2.0, 3.0]))


def test_second_derivative_of_quadratic_is_exact_on_nonuniform_grid():
    grid = _t([0.0, 0.5, 1.5, 2.0, 3.5])
    x = 0.7 * grid**2 - grid + 2.0
    d2 = terms.derivative(x.unsqueeze(0), terms.difference_spacings(grid, 2))
    np.testing.assert_allclose(d2.numpy(), np.full((1, 3), 1.4), rtol=1e-5)


def test_roi_derivative_averages_over_roi_elements_only():
    grid = torch.arange(11, dtype=torch.float32)
    mask = terms.roi_difference_mask(grid, 2.0, 6.0, 1)
    np.testing.assert_array_equal(mask.numpy(), [0, 0, 1, 1, 1, 1, 0, 0, 0, 0])
    slope_inside = torch.where((grid >= 2) & (grid <= 6), 3.0 * grid, 0.0).unsqueeze(0).repeat(2, 1)
    got = terms.roi_derivative_l1(slope_inside, torch.zeros_like(slope_inside), terms.difference_spacings(grid, 1), mask)
    assert got.item() == pytest.approx(3.0)  # the original's all-positions mean would give 3·4/10


def test_curvature_modes_closed_forms():
    grid = torch.arange(9, dtype=torch.float32) * 0.5
    spacings = terms.difference_spacings(grid, 2)
    mask = terms.roi_difference_mask(grid, 0.0, 4.0, 2)
    target = (0.5 * grid**2).unsqueeze(0)  # D² = 1 everywhere
    zero = torch.zeros_like(target)
    for mode in ("symmetric", "underfill"):
        assert terms.roi_curvature(zero, target, spacings, mask, mode).item() == pytest.approx(1.0, rel=1e-5)
    rough = 3.0 * target  # rougher than the target: the hinge does not see it
    assert terms.roi_curvature(rough, target, spacings, mask, "symmetric").item() == pytest.approx(2.0, rel=1e-5)
    assert terms.roi_curvature(rough, target, spacings, mask, "underfill").item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError):
        terms.roi_curvature(rough, target, spacings, mask, "both")


def test_underfill_hinge_prefers_noise_symmetric_prefers_clean():
    """The reason for the default: with a noisy N2N target the hinge ranks a noisy output first."""
    grid = torch.tensor(GRID, dtype=torch.float32)
    spacings = terms.difference_spacings(grid, 2)
    mask = terms.roi_difference_mask(grid, 320.0, 500.0, 2)
    gen = torch.Generator().manual_seed(0)
    clean = (0.3 + 0.1 * torch.sin(grid / 30.0)).expand(32, -1)
    target = clean + 0.005 * torch.randn(clean.shape, generator=gen)
    noisy_pred = clean + 0.005 * torch.randn(clean.shape, generator=gen)
    loss = {m: [terms.roi_curvature(p, target, spacings, mask, m).item() for p in (clean, noisy_pred)]
            for m in ("symmetric", "underfill")}
    assert loss["underfill"][1] < loss["underfill"][0]
    assert loss["symmetric"][0] < loss["symmetric"][1]


def test_objective_total_is_weighted_sum_and_weights_are_normalised():
    rng = np.random.default_rng(1)
    base = 0.3 + 0.05 * np.sin(GRID / 20.0)
    target = _t(base + 0.004 * rng.normal(size=(4, 601)))
    pred = _t(base + 0.004 * rng.normal(size=(4, 601)))
    w = rng.uniform(1.0, 3.0, size=601)
    cfg = ObjectiveConfig()
    total, out = Objective(cfg, GRID, w)(pred, target)
    expected = (out["charbonnier"] + 0.3 * out["derivative"] + 0.6 * out["roi_derivative"]
                + 0.3 * out["roi_curvature"] + 1.0 * out["dip"])
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert out["dip_count"].item() > 0
    # normalised: scaling the weights changes nothing; the original scale multiplies the term
    _, out_scaled = Objective(cfg, GRID, 488.0 * w)(pred, target)
    assert out_scaled["charbonnier"].item() == pytest.approx(out["charbonnier"].item(), rel=1e-5)
    raw = dataclasses.replace(cfg, normalise_lambda_weights=False)
    _, out_raw = Objective(raw, GRID, w)(pred, target)
    assert out_raw["charbonnier"].item() == pytest.approx(out["charbonnier"].item() * w.mean(), rel=1e-5)
    charb_np = np.mean(np.sqrt((pred.numpy() - target.numpy()).astype(np.float64) ** 2 + 1e-6) * w)
    assert out_raw["charbonnier"].item() == pytest.approx(charb_np, rel=1e-5)


def test_gradients_flow_and_are_finite():
    rng = np.random.default_rng(2)
    base = 0.3 + 0.05 * np.sin(GRID / 20.0)
    dip = 0.02 * np.exp(-0.5 * ((GRID - 400.0) / 1.5) ** 2)
    target = _t(base - dip + 0.002 * rng.normal(size=(3, 601)))
    pred = _t(base + 0.002 * rng.normal(size=(3, 601))).requires_grad_()
    total, out = Objective(ObjectiveConfig(), GRID)(pred, target)
    total.backward()
    assert torch.isfinite(pred.grad).all()
    assert pred.grad.abs().sum() > 0
    for name in ("charbonnier", "derivative", "roi_derivative", "roi_curvature", "dip"):
        pred.grad = None
        out_again = Objective(ObjectiveConfig(), GRID)(pred, target)[1]
        out_again[name].backward()
        assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0, name


def test_derivative_order_two_with_weights_works():
    cfg = ObjectiveConfig(derivative_order=2, dip_loss=False)
    obj = Objective(cfg, GRID, np.linspace(1, 2, 601))
    x = torch.zeros(2, 601)
    total, out = obj(x, x + _t(0.5 * ((GRID - 300) / 10.0) ** 2))  # D² of target = 0.01
    assert "dip" not in out
    w_support = np.convolve(np.linspace(1, 2, 601), np.ones(3) / 3, mode="valid")
    assert out["derivative"].item() == pytest.approx(0.01 * np.mean(w_support / np.linspace(1, 2, 601).mean()), rel=1e-3)


def test_dip_warmup_and_switch():
    obj = Objective(ObjectiveConfig(dip_warmup_epochs=2), GRID)
    x = torch.full((2, 601), 0.3)
    assert "dip" not in obj(x, x, epoch=2)[1]
    out = obj(x, x, epoch=3)[1]
    assert out["dip"].item() == 0.0 and out["dip_count"].item() == 0.0
    assert "dip" in obj(x, x)[1]


def test_config_validation_and_unknown_keys():
    with pytest.raises(ConfigError, match="dip_wieght"):
        ObjectiveConfig.from_dict({"dip_wieght": 1.0})
    assert ObjectiveConfig.from_dict({"dip_m": 3}).dip_m == 3
    with pytest.raises(ConfigError, match="--baseline"):
        ObjectiveConfig(baseline="continuum")
    with pytest.raises(ConfigError, match="--dip_underfill_factor"):
        ObjectiveConfig(dip_underfill_factor=0.5)
    with pytest.raises(ConfigError, match="λ-weights"):
        Objective(ObjectiveConfig(), GRID, np.zeros(601))
    with pytest.raises(TypeError):
        ObjectiveConfig(1.0)  # keyword-only
    orig = original_config()
    assert not orig.normalise_lambda_weights and orig.curvature_mode == "underfill"


def test_bf16_autocast_cpu_returns_float32_like_fp32():
    rng = np.random.default_rng(3)
    base = 0.3 + 0.05 * np.sin(GRID / 20.0)
    pred = _t(base + 0.003 * rng.normal(size=(4, 601))).to(torch.bfloat16)
    target = _t(base + 0.003 * rng.normal(size=(4, 601))).to(torch.bfloat16)
    obj = Objective(ObjectiveConfig(), GRID)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        total, out = obj(pred, target)
    ref_total, _ = obj(pred.float(), target.float())
    assert total.dtype == torch.float32 and all(v.dtype == torch.float32 for v in out.values())
    assert total.item() == pytest.approx(ref_total.item(), rel=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bf16_autocast_cuda_matches_cpu():
    rng = np.random.default_rng(4)
    base = 0.3 + 0.05 * np.sin(GRID / 20.0)
    dip = 0.02 * np.exp(-0.5 * ((GRID - 400.0) / 1.5) ** 2)
    pred = _t(base + 0.003 * rng.normal(size=(8, 601)))
    target = _t(base - dip + 0.003 * rng.normal(size=(8, 601)))
    obj = Objective(ObjectiveConfig(), GRID)
    ref_total, ref = obj(pred, target)
    obj_cuda = obj.to("cuda")
    p = pred.cuda().requires_grad_()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        total, out = obj_cuda(p, target.cuda())
    total.backward()
    assert total.dtype == torch.float32 and torch.isfinite(p.grad).all()
    assert total.item() == pytest.approx(ref_total.item(), rel=1e-4)
    assert out["dip_count"].item() == ref["dip_count"].item()


def test_dip_target_overrides_the_dip_reference_only():
    rng = np.random.default_rng(5)
    base = 0.3 + 0.05 * np.sin(GRID / 20.0)
    clean = _t(np.repeat((base - 0.02 * np.exp(-0.5 * ((GRID - 400.0) / 1.5) ** 2))[None], 4, axis=0))
    target = clean + _t(0.004 * rng.normal(size=(4, 601)))
    obj = Objective(ObjectiveConfig(), GRID)
    _, plain = obj(clean, target)
    _, with_ref = obj(clean, target, dip_target=clean)
    assert with_ref["charbonnier"].item() == plain["charbonnier"].item()
    assert with_ref["dip_count"].item() >= 4 and with_ref["dip"].item() == 0.0  # pred equals the dip reference
    assert plain["dip"].item() > 0.0


def test_spectral_angle_term_is_the_sam_metric_in_radians_and_blind_to_scale():
    from spectra_cv.metrics import sam_deg
    from spectra_cv.objective import terms

    rng = np.random.default_rng(4)
    target = 0.1 + rng.random((6, 50))
    pred = target + 0.004 * rng.normal(size=(6, 50))
    got = float(terms.spectral_angle(torch.tensor(pred), torch.tensor(target)))
    assert got == pytest.approx(np.deg2rad(np.mean(sam_deg(pred, target))), rel=1e-4)
    assert float(terms.spectral_angle(torch.tensor(3.0 * target), torch.tensor(target))) < 1e-6
    grid = np.linspace(300, 600, 50)
    plain = Objective(ObjectiveConfig(dip_loss=False), grid)
    with_sam = Objective(ObjectiveConfig(dip_loss=False, sam_weight=2.0), grid)
    p, t = torch.tensor(pred, dtype=torch.float32), torch.tensor(target, dtype=torch.float32)
    total, parts = with_sam(p, t)
    assert "sam" not in plain(p, t)[1]
    assert float(total) == pytest.approx(float(plain(p, t)[0]) + 2.0 * float(parts["sam"]), rel=1e-6)
