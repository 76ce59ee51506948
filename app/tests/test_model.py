"""MambaUV and the zoo: config checks, shapes, init contracts (FiLM, residual), parameter counts."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import spectra_cv
from spectra_cv.errors import ConfigError
from spectra_cv.model.mamba_uv import MambaUV, ModelConfig
from spectra_cv.model.zoo import (
    CV_RECIPE_OVERRIDES, MODEL_ZOO, build_model, count_parameters, cv_recipe_config, model_config,
)

L = 64
TINY = dict(d_model=16, n_layers=2, d_state=4, sequence_length=L, scan_backend="ref")


def _inputs(batch: int = 3, cond_dim: int | None = None, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    refl = torch.rand(batch, 1, L, generator=g) * 0.9
    lam = torch.linspace(-1, 1, L).expand(batch, 1, L)
    cos = torch.tensor([-1.0, 1.0, -1.0][:batch]).view(batch, 1, 1).expand(batch, 1, L)
    x = torch.cat([refl, lam, cos], dim=1)  # (B, 3, L)
    cond = None if cond_dim is None else torch.randn(batch, cond_dim, generator=g)
    return x, cond


def expected_parameter_count(d: int, n: int, n_state: int, d_conv: int = 4, expand: int = 2,
                             in_ch: int = 3, film: bool = False, cond: int = 0, hidden: int = 0) -> int:
    """Closed form from the mamba_ssm v1 parameterisation (see the mixer's docstring)."""
    e, r = expand * d, math.ceil(d / 16)
    mixer = d * 2 * e + e * d_conv + e + e * (r + 2 * n_state) + r * e + e + e * n_state + e + e * d
    blocks = n * (mixer + 2 * d)  # + LayerNorm
    stem_head = in_ch * d * 3 + d + 2 * d + d + 1  # input conv, final LayerNorm, output conv
    film_p = (cond * hidden + hidden + hidden * 2 * n * d + 2 * n * d) if film else 0
    return blocks + stem_head + film_p


@pytest.mark.parametrize(
    ("cfg", "closed", "notes"),
    [
        (MODEL_ZOO["mamba_tiny_uv"], expected_parameter_count(128, 4, 16), 0.47e6),
        (MODEL_ZOO["mamba_small_uv"], expected_parameter_count(192, 6, 32), 1.63e6),
        (cv_recipe_config(), expected_parameter_count(384, 8, 16, film=True, cond=8, hidden=64),
         8.12e6),
    ],
    ids=["tiny", "small", "recipe"],
)
def test_zoo_parameter_counts(cfg, closed, notes):
    n = count_parameters(MambaUV(cfg))
    assert n == closed
    assert abs(n - notes) / notes < 0.005  # the notes' rounded figures


def test_zoo_and_recipe_configs():
    tiny = MODEL_ZOO["mamba_tiny_uv"]
    assert (tiny.d_model, tiny.n_layers, tiny.d_state, tiny.d_conv, tiny.expand) == (128, 4, 16, 4, 2)
    small = MODEL_ZOO["mamba_small_uv"]
    assert (small.d_model, small.n_layers, small.d_state) == (192, 6, 32)
    rec = cv_recipe_config()
    assert rec.name == "mamba_tiny_uv"
    assert {k: getattr(rec, k) for k in CV_RECIPE_OVERRIDES} == dict(CV_RECIPE_OVERRIDES)
    assert not tiny.residual and tiny.out_activation == "sigmoid" and not tiny.film


def test_build_model_rejects_unknown_names_and_fields():
    with pytest.raises(ConfigError, match="--model 'mamba_huge_uv'"):
        build_model("mamba_huge_uv")
    with pytest.raises(ConfigError, match="d_modle"):
        model_config("mamba_tiny_uv", d_modle=32)


@pytest.mark.parametrize(
    ("override", "flag"),
    [
        ({"d_model": 0}, "--d_model"),
        ({"n_layers": -1}, "--n_layers"),
        ({"d_model": "16"}, "--d_model"),
        ({"film": 1}, "--film"),
        ({"dropout": 1.0}, "--dropout"),
        ({"out_activation": "relu"}, "--out_activation"),
        ({"residual": True, "out_activation": "sigmoid"}, "--residual"),
        ({"scan_backend": "triton"}, "--scan_backend"),
    ],
)
def test_config_checks_name_the_flag(override, flag):
    with pytest.raises(ConfigError, match=flag):
        ModelConfig(name="t", **{**TINY, **override})


def test_config_is_frozen_and_roundtrips_through_a_dict():
    cfg = ModelConfig(name="t", **TINY)
    with pytest.raises(AttributeError):
        cfg.d_model = 32  # type: ignore[misc]
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown model config keys"):
        ModelConfig.from_dict({**cfg.to_dict(), "bidirektional": True})


@pytest.mark.parametrize("film", [False, True])
def test_forward_shapes_and_sigmoid_range(film):
    model = build_model("mamba_tiny_uv", **TINY, film=film, cond_dim=5, film_hidden_dim=8)
    x, cond = _inputs(cond_dim=5 if film else None)
    y = model(x, cond)
    assert y.shape == (3, 1, L)
    assert torch.all((y > 0) & (y < 1))


def test_input_validation_errors():
    model = build_model("mamba_tiny_uv", **TINY)
    x, _ = _inputs()
    with pytest.raises(ConfigError, match="--sequence_length"):
        model(x[..., :-1])
    with pytest.raises(ConfigError, match="--in_channels"):
        model(x[:, :2])
    with pytest.raises(ConfigError, match="without FiLM"):
        model(x, torch.zeros(3, 1))
    film = build_model("mamba_tiny_uv", **TINY, film=True, cond_dim=4)
    with pytest.raises(ConfigError, match="needs cond"):
        film(x)
    with pytest.raises(ConfigError, match="cond_dim=4"):
        film(x, torch.zeros(3, 3))


def test_init_contracts_of_stem_and_head():
    torch.manual_seed(0)
    model = build_model("mamba_tiny_uv", scan_backend="ref")  # D128: 1152 stem weights
    w = model.input_proj.weight
    assert abs(w.std().item() / math.sqrt(2.0 / 9.0) - 1.0) < 0.1  # Kaiming normal, ReLU gain
    assert torch.all(model.input_proj.bias == 0) and torch.all(model.output_proj.bias == 0)
    assert model.output_proj.weight.abs().sum() > 0  # original head: default init, not zero


def test_film_is_identity_at_init_and_conditions_after_perturbation():
    torch.manual_seed(0)
    model = build_model("mamba_tiny_uv", **TINY, film=True, cond_dim=4, film_hidden_dim=8).eval()
    x, cond = _inputs(cond_dim=4)
    with torch.no_grad():
        y1 = model(x, cond)
        y2 = model(x, cond * -3.0 + 1.0)
        plain = build_model("mamba_tiny_uv", **TINY)
        plain.load_state_dict({k: v for k, v in model.state_dict().items()
                               if not k.startswith("film.")})
        y0 = plain.eval()(x)
        assert torch.equal(y1, y2)
        assert torch.allclose(y1, y0, atol=1e-6)  # γ = 1, β = 0: same as no FiLM
        model.film.net[-1].weight.normal_(0.0, 0.5)
        y3, y4 = model(x, cond), model(x, cond * -3.0 + 1.0)
    assert (y3 - y4).abs().max() > 1e-4


def test_film_head_slots_are_gamma_then_beta_per_layer():
    model = build_model("mamba_tiny_uv", **TINY, film=True, cond_dim=2)
    bias = torch.randn(2 * 2 * 16)
    with torch.no_grad():
        model.film.net[-1].bias.copy_(bias)
    gamma, beta = model.film(torch.randn(5, 2))
    slots = bias.view(2, 2, 16)  # (n_layers, {γ, β}, D)
    torch.testing.assert_close(gamma, (1 + slots[:, 0]).expand(5, 2, 16))
    torch.testing.assert_close(beta, slots[:, 1].expand(5, 2, 16))


@pytest.mark.parametrize("act", ["none", "clamp"])
def test_residual_model_starts_as_identity_and_can_learn(act):
    torch.manual_seed(0)
    model = build_model("mamba_tiny_uv", **TINY, residual=True, out_activation=act)
    x, _ = _inputs()
    y = model(x)
    assert torch.equal(y, x[:, :1])
    ((y - 0.5) ** 2).mean().backward()
    assert model.output_proj.weight.grad.abs().sum() > 0


def test_scan_backend_can_be_switched_without_changing_outputs():
    torch.manual_seed(0)
    model = build_model("mamba_tiny_uv", **TINY).eval()
    x, _ = _inputs()
    with torch.no_grad():
        y_ref = model(x)
        model.set_scan_backend("torch")
        y_torch = model(x)
    assert model.config.scan_backend == "torch"
    assert all(b.mixer.backend == "torch" for b in model.blocks)
    torch.testing.assert_close(y_torch, y_ref, rtol=1e-5, atol=1e-6)


def test_importing_and_running_the_model_never_imports_mamba_ssm_or_triton():
    code = textwrap.dedent("""
        import sys, torch
        triton_before = "triton" in sys.modules
        from spectra_cv.model import mamba_uv, zoo, checkpoint, backends, mixer
        m = zoo.build_model("mamba_tiny_uv", d_model=16, n_layers=1, d_state=4, sequence_length=8)
        m(torch.rand(1, 3, 8))
        assert "mamba_ssm" not in sys.modules, "mamba_ssm was imported"
        assert triton_before or "triton" not in sys.modules, "triton was imported"
        print("ok")
    """)
    package_parent = str(Path(spectra_cv.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (package_parent, os.environ.get("PYTHONPATH", "")) if p)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_bidirectional_block_sees_both_sides_and_keeps_mamba_names():
    import torch

    from spectra_cv.model.zoo import build_model

    torch.manual_seed(0)
    causal = build_model("mamba_tiny_uv", d_model=16, n_layers=1, d_state=4, sequence_length=64,
                         residual=True, out_activation="none")
    bidir = build_model("mamba_tiny_uv", d_model=16, n_layers=1, d_state=4, sequence_length=64,
                        residual=True, out_activation="none", bidirectional=True)
    for model in (causal, bidir):
        torch.nn.init.normal_(model.output_proj.weight)  # leave the identity start
    names = set(bidir.state_dict())
    assert {k.replace("mixer_rev.", "mixer.") for k in names} == set(causal.state_dict())
    x = torch.rand(1, 3, 64)
    x2 = x.clone()
    x2[0, 0, 50] += 0.5  # change one wavelength late in the scan
    with torch.no_grad():
        d_causal = (causal(x2) - causal(x)).abs()[0, 0]
        d_bidir = (bidir(x2) - bidir(x)).abs()[0, 0]
    # the input conv (k=3) lets position 49 see 50; nothing earlier may change in the causal model
    assert float(d_causal[:49].max()) == 0.0
    assert float(d_bidir[:49].max()) > 0.0


def test_reflectance_shift_and_scale_feed_the_stem_and_keep_the_identity_start():
    import dataclasses

    import torch

    from spectra_cv.model.mamba_uv import MambaUV
    from spectra_cv.model.zoo import model_config

    base = model_config("mamba_tiny_uv", d_model=16, n_layers=1, d_state=4, sequence_length=64,
                        residual=True, out_activation="none")
    model = MambaUV(dataclasses.replace(base, reflectance_shift=0.3, reflectance_scale=40.0))
    seen = []
    model.input_proj.register_forward_hook(lambda mod, args, out: seen.append(args[0].detach().clone()))
    x = torch.rand(2, 3, 64)
    with torch.no_grad():
        out = model(x)
    torch.testing.assert_close(seen[0][:, 0], (x[:, 0] - 0.3) * 40.0)
    torch.testing.assert_close(seen[0][:, 1:], x[:, 1:])
    torch.testing.assert_close(out[:, 0], x[:, 0])  # the residual adds to the raw reflectance



def _prior_model():
    return build_model("mamba_tiny_uv", d_model=16, n_layers=1, d_state=4, sequence_length=L,
                       residual=True, out_activation="none", prior="pca", scan_backend="ref")


def _groups(n: int) -> list[str]:
    """treatment/sample/angle ids: 2 treatments × 4 samples, so parameters can be chosen on held-out samples."""
    return [f"treatment_{i % 2}/sample_{(i // 2) % 4}/6Oclock" for i in range(n)]


def _low_rank_spectra(n: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n spectra = mean + two smooth components; returns (spectra (n, L), the two components (2, L))."""
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, L, dtype=torch.float64)
    comps = torch.stack([torch.sin(3 * t), torch.cos(5 * t)])  # (2, L)
    coef = torch.randn(n, 2, generator=g, dtype=torch.float64)
    return 0.4 + 0.05 * coef @ comps, comps


def test_prior_model_starts_as_the_fitted_prior_and_the_stem_sees_the_distance():
    from spectra_cv.train.prior import install_prior

    torch.manual_seed(0)
    model = _prior_model()
    clean, _ = _low_rank_spectra()
    g = torch.Generator().manual_seed(1)
    noisy = (clean + 0.01 * torch.randn(clean.shape, generator=g, dtype=torch.float64)).float()
    prior = install_prior(model, noisy, clean.float(), _groups(len(noisy)))
    assert prior.kind == "pca" and prior.params["rank"] <= 3  # two components + noise: a small rank wins
    x, _ = _inputs(batch=3)
    x[:, 0] = noisy[:3]
    seen = []
    model.input_proj.register_forward_hook(lambda mod, args, out: seen.append(args[0].detach().clone()))
    with torch.no_grad():
        out = model(x)[:, 0]
    expected = noisy[:3] @ model.prior_matrix + model.prior_offset
    torch.testing.assert_close(out, expected)  # zero-initialised head: the model is its prior
    assert (out.double() - clean[:3]).norm() < 0.5 * (noisy[:3].double() - clean[:3]).norm()
    assert seen[0].shape[1] == 4  # reflectance, λ, cos θ, and the distance from the prior
    torch.testing.assert_close(seen[0][:, 3], (x[:, 0] - expected) / model.prior_residual_scale,
                               atol=1e-3, rtol=1e-3)  # float32 differences of ~0.4-sized values, / 0.01


@pytest.mark.parametrize("kind", ["ridge", "wiener", "ridge_wiener"])
def test_linear_priors_equal_their_baselines(kind):
    import numpy as np

    from spectra_cv.metrics import baselines
    from spectra_cv.train.prior import fit_prior

    clean, _ = _low_rank_spectra(n=60)
    rng = np.random.default_rng(0)
    noisy = clean.numpy() + 0.01 * rng.standard_normal(clean.shape)
    prior = fit_prior(kind, noisy, clean.numpy(), _groups(len(noisy)))
    baseline = getattr(baselines, f"fit_{kind}")(noisy, clean.numpy(), _groups(len(noisy)))
    assert prior.kind == kind and prior.params == baseline.params
    np.testing.assert_allclose(noisy @ prior.matrix + prior.offset, baseline.apply(noisy), atol=1e-10)


def test_prior_is_a_checkpointed_buffer_and_must_be_fitted(tmp_path):
    from spectra_cv.model.checkpoint import load_model, model_state_for_save, save_checkpoint
    from spectra_cv.train.prior import install_prior

    torch.manual_seed(0)
    model = _prior_model()
    x, _ = _inputs()
    with pytest.raises(ConfigError, match="never fitted"):
        model(x)
    with pytest.raises(ConfigError, match="--prior none"):
        build_model("mamba_tiny_uv", **TINY).set_prior(torch.eye(L), torch.zeros(L), 1.0)
    with pytest.raises(ConfigError, match="--prior needs --residual"):
        model_config("mamba_tiny_uv", prior="ridge")
    with pytest.raises(ConfigError, match="--prior must be one of"):
        model_config("mamba_tiny_uv", residual=True, out_activation="none", prior="kalman")
    with pytest.raises(ConfigError, match="not finite"):
        model.set_prior(torch.full((L, L), float("nan")), torch.zeros(L), 1.0)
    clean, _ = _low_rank_spectra()
    install_prior(model, clean.float(), clean.float(), _groups(len(clean)))
    assert {"prior_matrix", "prior_offset", "prior_residual_scale", "prior_fitted"} <= set(model.state_dict())
    path = tmp_path / "m.pt"
    save_checkpoint(path, model_state_for_save(model))
    loaded, _ = load_model(path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_checkpointed_blocks_give_the_same_outputs_and_gradients():
    """--checkpoint_blocks recomputes each block in the backward (dropout's RNG replayed): same loss,
    same gradients; without grad (denoising, the EMA copy) nothing is recomputed."""
    cfg = ModelConfig(name="t", **{**TINY, "scan_backend": "torch", "dropout": 0.2}, film=True, cond_dim=2,
                      bidirectional=True, residual=True, out_activation="none")
    x, cond = _inputs(cond_dim=2)
    runs = []
    for recompute in (False, True):
        torch.manual_seed(0)
        model = MambaUV(cfg).train()
        model.checkpoint_blocks = recompute
        assert [b.checkpoint_mixers for b in model.blocks] == [recompute] * cfg.n_layers  # nested: mixers too
        torch.manual_seed(1)  # the same dropout masks in both runs
        out = model(x, cond)
        (out.square().mean() + out.mean()).backward()
        runs.append((out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (out_a, grads_a), (out_b, grads_b) = runs
    assert torch.equal(out_a, out_b)
    assert grads_a.keys() == grads_b.keys() and len(grads_a) > 10
    for name, grad in grads_a.items():
        torch.testing.assert_close(grads_b[name], grad, rtol=1e-6, atol=1e-8, msg=name)
    with torch.no_grad():
        assert torch.equal(model.eval()(x, cond), model(x, cond))


@pytest.mark.parametrize("switch", ["checkpoint_blocks", "deterministic", "compile"])
def test_how_switches_are_train_switches_outside_the_config_hash(switch):
    from spectra_cv.train.flags import build_run_config

    plain = build_run_config("cpu_quick")
    on = build_run_config("cpu_quick", {switch: True})
    assert getattr(on.train, switch) and not getattr(plain.train, switch)
    assert on.hash() == plain.hash()  # how, not what: a run may toggle it and still resume or skip


def test_the_recipe_checkpoints_blocks():
    from spectra_cv.train.flags import build_run_config

    assert build_run_config("recipe").train.checkpoint_blocks  # batch 600 must fit


def test_compiled_blocks_give_the_same_outputs_and_gradients():
    """--compile traces each block around the scan (which stays eager: compiler-disabled). The
    ``aot_eager`` backend runs the traced graphs without generating code, so this needs no compiler."""
    cfg = ModelConfig(name="t", **{**TINY, "scan_backend": "torch"}, film=True, cond_dim=2,
                      bidirectional=True, residual=True, out_activation="none")
    x, cond = _inputs(cond_dim=2)
    torch.manual_seed(0)
    eager = MambaUV(cfg)
    compiled = MambaUV(cfg)
    compiled.load_state_dict(eager.state_dict())
    compiled.checkpoint_blocks = True  # the recipe's combination
    compiled.compile_blocks(backend="aot_eager")
    runs = []
    for model in (eager, compiled):
        out = model(x, cond)
        (out.square().mean() + out.mean()).backward()
        runs.append((out.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}))
    (out_a, grads_a), (out_b, grads_b) = runs
    torch.testing.assert_close(out_b, out_a, rtol=1e-6, atol=1e-7)
    assert grads_a.keys() == grads_b.keys()
    for name, grad in grads_a.items():
        torch.testing.assert_close(grads_b[name], grad, rtol=1e-5, atol=1e-7, msg=name)
