"""The Mamba mixer: mamba_ssm v1 parameter names/shapes/init, causality, a closed form, backends."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from spectra_cv.errors import ConfigError
from spectra_cv.model import backends
from spectra_cv.model.mixer import Mamba

# mamba_ssm.modules.mamba_simple.Mamba(d_model=16, d_state=4, d_conv=4, expand=2).state_dict():
# d_inner = 32, dt_rank = ceil(16 / 16) = 1; own parameters first, then submodules in order.
MAMBA_SSM_V1_KEYS = [
    ("A_log", (32, 4)),
    ("D", (32,)),
    ("in_proj.weight", (64, 16)),
    ("conv1d.weight", (32, 1, 4)),
    ("conv1d.bias", (32,)),
    ("x_proj.weight", (9, 32)),
    ("dt_proj.weight", (32, 1)),
    ("dt_proj.bias", (32,)),
    ("out_proj.weight", (16, 32)),
]


def _mixer(backend: str = "ref", d_model: int = 16, seed: int = 0) -> Mamba:
    torch.manual_seed(seed)
    return Mamba(d_model, d_state=4, d_conv=4, expand=2, backend=backend)


def test_state_dict_matches_mamba_ssm_v1_names_and_shapes():
    got = [(k, tuple(v.shape)) for k, v in _mixer().state_dict().items()]
    assert got == MAMBA_SSM_V1_KEYS


def test_dt_rank_is_ceil_d_model_over_16():
    m = Mamba(17, d_state=4)
    assert m.dt_rank == 2 == math.ceil(17 / 16)
    assert m.x_proj.weight.shape == (2 + 8, 34) and m.dt_proj.weight.shape == (34, 2)


def test_init_follows_mamba_ssm():
    torch.manual_seed(1)
    m = Mamba(64, d_state=8, expand=2)  # d_inner 128, dt_rank 4
    assert torch.equal(m.A_log, torch.log(torch.arange(1.0, 9.0)).expand(128, 8))
    assert torch.equal(m.D, torch.ones(128))
    bound = 4**-0.5
    assert m.dt_proj.weight.abs().max() <= bound
    assert m.dt_proj.weight.abs().max() > 0.8 * bound  # uniform over the whole range
    dt = F.softplus(m.dt_proj.bias)
    assert dt.min() >= 1e-3 * (1 - 1e-4) and dt.max() <= 0.1 * (1 + 1e-4)
    # log-uniform: about half of the samples below the geometric mean sqrt(1e-3 * 0.1) = 0.01
    assert 0.3 < (dt < 0.01).float().mean() < 0.7
    assert m.in_proj.bias is None and m.out_proj.bias is None and m.x_proj.bias is None
    assert m.A_log._no_weight_decay and m.D._no_weight_decay


def test_mixer_is_causal_along_l():
    m = _mixer("ref").eval()
    torch.manual_seed(2)
    x = torch.randn(2, 64, 16)
    t0 = 40
    x2 = x.clone()
    x2[:, t0] += torch.randn(2, 16)
    with torch.no_grad():
        y, y2 = m(x), m(x2)
    assert torch.equal(y[:, :t0], y2[:, :t0])
    assert (y[:, t0] - y2[:, t0]).abs().max() > 1e-4


def test_single_step_matches_closed_form():
    """L = 1: conv sees only its last tap; x_1 = dt·B·u, y = C·x_1 + D·u, out = y·silu(z)."""
    m = _mixer("ref").double()
    with torch.no_grad():
        m.D.uniform_(0.5, 1.5)
    torch.manual_seed(3)
    h = torch.randn(3, 1, 16, dtype=torch.float64)
    xz = h[:, 0] @ m.in_proj.weight.t()  # (B, 2E)
    x, z = xz.chunk(2, dim=-1)
    x = F.silu(x * m.conv1d.weight[:, 0, -1] + m.conv1d.bias)  # (B, E)
    dt_low, b_in, c_in = torch.split(x @ m.x_proj.weight.t(), [1, 4, 4], dim=-1)
    dt = F.softplus(dt_low @ m.dt_proj.weight.t() + m.dt_proj.bias)  # (B, E)
    y = dt * x * (b_in * c_in).sum(-1, keepdim=True) + m.D * x
    expected = (y * F.silu(z)) @ m.out_proj.weight.t()
    with torch.no_grad():
        got = m(h)[:, 0]
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_torch_backend_matches_reference_outputs_and_grads():
    torch.manual_seed(4)
    x = torch.randn(2, 64, 16)
    results = {}
    for backend in ("ref", "torch"):
        m = _mixer(backend, seed=5)
        xi = x.clone().requires_grad_(True)
        y = m(xi)
        (y * torch.linspace(-1, 1, 16)).sum().backward()
        results[backend] = (y.detach(), xi.grad, {n: p.grad for n, p in m.named_parameters()})
    (y_r, gx_r, gp_r), (y_t, gx_t, gp_t) = results["ref"], results["torch"]
    torch.testing.assert_close(y_t, y_r, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gx_t, gx_r, rtol=1e-5, atol=1e-5)
    for name in gp_r:
        torch.testing.assert_close(gp_t[name], gp_r[name], rtol=1e-4, atol=1e-5, msg=name)


def test_unknown_backend_is_rejected_naming_the_flag():
    with pytest.raises(ConfigError, match="--scan_backend"):
        Mamba(16, backend="triton")
    with pytest.raises(ConfigError, match="--scan_backend"):
        backends.resolve_backend("fast", torch.device("cpu"))


def test_cuda_backend_without_mamba_ssm_says_how_to_install(monkeypatch):
    def missing():
        raise ImportError("No module named 'mamba_ssm'")

    monkeypatch.setattr(backends, "_import_mamba_scan", missing)
    monkeypatch.setattr(backends, "_mamba_scan", backends._UNSET)
    with pytest.raises(ConfigError, match=r"pip install mamba-ssm==\d+\.\d+\.\d+ --no-build-isolation"):
        backends.resolve_backend("cuda", torch.device("cpu"))
    # auto on a CUDA device without mamba_ssm falls back to the PyTorch scan (never raises)
    assert backends.resolve_backend("auto", torch.device("cuda")) == "torch"


def test_cuda_backend_refuses_cpu_tensors(monkeypatch):
    monkeypatch.setattr(backends, "_mamba_scan", lambda *a: None)  # pretend mamba_ssm imports
    with pytest.raises(ConfigError, match="CUDA device"):
        backends.resolve_backend("cuda", torch.device("cpu"))


def test_auto_on_cpu_uses_the_torch_scan_and_never_imports_mamba_ssm(monkeypatch):
    from spectra_cv.model import scan

    def forbidden():
        raise AssertionError("auto on CPU must not try to import mamba_ssm")

    calls = []
    real = scan.selective_scan
    monkeypatch.setattr(backends, "_import_mamba_scan", forbidden)
    monkeypatch.setattr(backends, "_mamba_scan", backends._UNSET)
    monkeypatch.setattr(scan, "selective_scan", lambda *a, **k: calls.append(1) or real(*a, **k))
    m = _mixer("auto")
    m(torch.randn(1, 8, 16))
    assert len(calls) == 1  # one mixer, one scan call


@pytest.mark.gpu
@pytest.mark.skipif(
    not (torch.cuda.is_available() and backends.mamba_ssm_available()),
    reason="needs CUDA and mamba_ssm",
)
def test_cuda_backend_matches_torch_backend_on_gpu():
    """mamba_ssm's fused scan and the project's PyTorch scan: same outputs and gradients (fp32)."""
    torch.manual_seed(6)
    x = torch.randn(4, 128, 32, device="cuda")
    results = {}
    for backend in ("torch", "cuda"):
        torch.manual_seed(7)
        m = Mamba(32, d_state=8, backend=backend).cuda()
        xi = x.clone().requires_grad_(True)
        y = m(xi)
        (y * torch.linspace(-1, 1, 32, device="cuda")).sum().backward()
        results[backend] = (y.detach(), xi.grad, {n: p.grad for n, p in m.named_parameters()})
    (y_t, gx_t, gp_t), (y_c, gx_c, gp_c) = results["torch"], results["cuda"]
    torch.testing.assert_close(y_c, y_t, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gx_c, gx_t, rtol=1e-4, atol=1e-4)
    for name in gp_t:
        torch.testing.assert_close(gp_c[name], gp_t[name], rtol=1e-3, atol=1e-4, msg=name)


def test_causal_depthwise_conv_equals_conv1d_and_its_gradients():
    import torch
    import torch.nn as nn

    from spectra_cv.model.mixer import causal_depthwise_conv

    torch.manual_seed(0)
    conv = nn.Conv1d(6, 6, 4, groups=6, padding=3).double()
    x = torch.randn(2, 6, 19, dtype=torch.float64, requires_grad=True)
    ref = conv(x)[..., :19]
    got = causal_depthwise_conv(x, conv.weight, conv.bias)
    torch.testing.assert_close(got, ref)
    g = torch.randn_like(ref)
    ref_grads = torch.autograd.grad(ref, (x, conv.weight, conv.bias), g)
    got_grads = torch.autograd.grad(causal_depthwise_conv(x, conv.weight, conv.bias), (x, conv.weight, conv.bias), g)
    for a, b in zip(got_grads, ref_grads):
        torch.testing.assert_close(a, b)
