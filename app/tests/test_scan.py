"""The fast selective scan against the sequential reference: outputs, every gradient, edge cases."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys

import pytest
import torch

from spectra_cv.errors import ConfigError
from spectra_cv.model import scan_cpu
from spectra_cv.model.scan import selective_scan
from spectra_cv.model.scan_ref import selective_scan_ref

NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


@pytest.fixture(autouse=True, params=["fused", "eager"])
def cpu_core(request, monkeypatch):
    """Every CPU test runs on both cores: the fused kernel (scan_cpu) and the eager one."""
    if request.param == "eager":
        monkeypatch.setenv(scan_cpu.ENV_SWITCH, "0")
    else:
        monkeypatch.delenv(scan_cpu.ENV_SWITCH, raising=False)
        if shutil.which(os.environ.get("CXX", "c++")) is None:
            pytest.skip("no C++ compiler: the fused CPU kernel cannot be built here")
    scan_cpu.reset()
    if request.param == "fused":
        assert scan_cpu.load() is not None, "a compiler is here, so the fused kernel must build"
    yield request.param
    scan_cpu.reset()


def make_inputs(bt: int, dm: int, n: int, length: int, dtype: torch.dtype = torch.float64,
                seed: int = 0, dt_scale: float = 0.5, a_scale: float = 1.0) -> dict:
    """Random scan inputs: u, delta, z: (bt, dm, L); A: (dm, n) < 0; B, C: (bt, n, L); D, bias: (dm,)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    x = {
        "u": r(bt, dm, length),
        "delta": r(bt, dm, length) * dt_scale,
        "A": -torch.exp(r(dm, n)) * a_scale,
        "B": r(bt, n, length),
        "C": r(bt, n, length),
        "D": r(dm),
        "z": r(bt, dm, length),
        "delta_bias": r(dm) * 0.5,
    }
    return {k: v.to(dtype) for k, v in x.items()}


def run_both(inputs: dict, grad_names: tuple[str, ...], softplus: bool = True,
             block_len: int | None = None):
    """Forward + backward of both scans on the same inputs and the same output cotangent."""
    results = []
    for fn, kw in ((selective_scan_ref, {}), (selective_scan, {"block_len": block_len})):
        x = {k: (v.detach().clone().requires_grad_(k in grad_names) if v is not None else None)
             for k, v in inputs.items()}
        out = fn(**x, delta_softplus=softplus, **kw)
        cot = torch.randn(out.shape, generator=torch.Generator().manual_seed(1),
                          dtype=torch.float64).to(out.dtype)
        grads = torch.autograd.grad(out, [x[k] for k in grad_names], cot) if grad_names else ()
        results.append((out, dict(zip(grad_names, grads))))
    return results


def assert_close(got: torch.Tensor, want: torch.Tensor, tol: float, what: str) -> None:
    """Max abs difference within tol * max(1, max |want|)."""
    assert got.shape == want.shape and got.dtype == want.dtype, what
    assert torch.isfinite(got).all(), f"{what}: non-finite values"
    scale = max(1.0, want.abs().max().item())
    err = (got - want).abs().max().item()
    assert err <= tol * scale, f"{what}: max abs diff {err:.3e} > {tol:.1e} * {scale:.3g}"


def check_parity(inputs: dict, tol: float, grad_names: tuple[str, ...] = NAMES,
                 softplus: bool = True, block_len: int | None = None) -> None:
    (o_ref, g_ref), (o_fast, g_fast) = run_both(inputs, grad_names, softplus, block_len)
    assert_close(o_fast, o_ref, tol, "out")
    for k in grad_names:
        assert_close(g_fast[k], g_ref[k], tol, f"grad {k}")


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-11), (torch.float32, 1e-5)])
@pytest.mark.parametrize("length, block_len", [(37, None), (37, 5), (37, 1), (601, 64)])
def test_parity_all_inputs(dtype, tol, length, block_len):
    check_parity(make_inputs(2, 6, 3, length, dtype), tol, block_len=block_len)


@pytest.mark.parametrize("bt, n", [(1, 1), (1, 4), (3, 1)])
def test_parity_batch_one_and_state_one(bt, n):
    check_parity(make_inputs(bt, 5, n, 23), 1e-11, block_len=4)


def test_parity_without_optional_inputs_or_softplus():
    x = make_inputs(2, 4, 3, 19)
    x.update(D=None, z=None, delta_bias=None)
    x["delta"] = x["delta"].abs()
    check_parity(x, 1e-11, grad_names=("u", "delta", "A", "B", "C"), softplus=False, block_len=6)


@pytest.mark.parametrize("grad_names", [("u",), ("delta",), ("A",), ("B", "C"), ("C",),
                                        ("z",), ("D", "delta_bias"), ()])
def test_parity_for_any_subset_requiring_grad(grad_names):
    check_parity(make_inputs(2, 4, 3, 13), 1e-11, grad_names=grad_names, block_len=4)


def test_block_length_does_not_change_the_result():
    x = make_inputs(2, 4, 3, 29)
    outs = [selective_scan(**x, delta_softplus=True, block_len=b) for b in (1, 3, 7, 29, 100)]
    for o in outs[1:]:
        assert torch.allclose(o, outs[0], rtol=0, atol=1e-13)


def test_large_delta_times_a_stays_finite_and_matches():
    """dt*|A| summing far past 80 within a block (and exp(dt*A) underflowing to 0) is fine."""
    x = make_inputs(2, 4, 3, 41, torch.float32, dt_scale=3.0, a_scale=30.0)
    x["delta_bias"] = x["delta_bias"].abs() + 2.0  # softplus(dt) ~ 2..10 per step
    (o_ref, g_ref), (o_fast, g_fast) = run_both(x, NAMES, True, 8)
    dt = torch.nn.functional.softplus(x["delta"] + x["delta_bias"][:, None])  # (2, 4, L)
    first_block = torch.einsum("bdl,dn->bdn", dt[..., :8], -x["A"])  # sum of dt|A| in block 0
    assert (first_block > 80).float().mean() > 0.8  # a log-space cumsum would overflow here
    assert_close(o_fast, o_ref, 1e-5, "out")
    for k in NAMES:
        assert_close(g_fast[k], g_ref[k], 1e-5, f"grad {k}")


def test_gradcheck_tiny_float64():
    x = make_inputs(2, 3, 2, 7)
    args = tuple(v.requires_grad_(True) for v in x.values())

    def fn(u, delta, A, B, C, D, z, delta_bias):
        return selective_scan(u, delta, A, B, C, D, z, delta_bias, True, block_len=3)

    assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-8)


def test_zero_sequence_state_matches_closed_form():
    """With A = 0 the state is a running sum: y_t = sum_{s<=t} <C_t, B_s> dt_s u_s."""
    x = make_inputs(1, 2, 3, 9)
    x["A"] = torch.zeros(2, 3, dtype=torch.float64)
    out = selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], block_len=4)
    dtu = x["delta"] * x["u"]  # (1, 2, L)
    gram = torch.einsum("bnt,bns->bts", x["C"], x["B"]).tril()  # (1, L, L): <C_t, B_s>, s <= t
    want = torch.einsum("bts,bds->bdt", gram, dtu)
    assert torch.allclose(out, want, atol=1e-12)


def test_bfloat16_inputs_return_bfloat16_and_track_float32():
    x32 = make_inputs(2, 4, 3, 17, torch.float32)
    xb = {k: v.to(torch.bfloat16).requires_grad_(True) for k, v in x32.items()}
    out = selective_scan(**xb, delta_softplus=True, block_len=5)
    assert out.dtype == torch.bfloat16
    want = selective_scan_ref(**{k: v.detach().float() for k, v in xb.items()},
                              delta_softplus=True)
    assert torch.allclose(out.float(), want, rtol=1e-2, atol=1e-2 * want.abs().max().item())
    out.float().sum().backward()
    assert all(v.grad is not None and v.grad.dtype == torch.bfloat16 for v in xb.values())


@pytest.mark.parametrize("bad, match", [
    ({"A": torch.zeros(4, 3, dtype=torch.complex64)}, "real"),
    ({"B": torch.zeros(4, 3)}, "input-dependent"),
    ({"C": torch.zeros(2, 1, 3, 11)}, "input-dependent"),
    ({"D": torch.zeros(5)}, "D must have shape"),
    ({"z": torch.zeros(2, 4, 10)}, "z must match"),
])
def test_unsupported_shapes_raise_config_error(bad, match):
    x = make_inputs(2, 4, 3, 11, torch.float32)
    x.update(bad)
    for fn in (selective_scan, selective_scan_ref):
        with pytest.raises(ConfigError, match=match):
            fn(**x)


def test_import_does_not_pull_in_mamba_ssm_or_triton():
    code = ("import sys, spectra_cv.model.scan; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('mamba_ssm', 'triton')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)])
def test_cuda_matches_cpu_reference(dtype, tol):
    x = make_inputs(2, 8, 4, 65, torch.float32)
    cpu = selective_scan_ref(**x, delta_softplus=True)
    xc = {k: v.cuda().to(dtype).requires_grad_(True) for k, v in x.items()}
    out = selective_scan(**xc, delta_softplus=True, block_len=16)
    assert out.device.type == "cuda" and out.dtype == dtype
    assert_close(out.float().cpu(), cpu, tol, "cuda out")
    out.float().sum().backward()
    assert all(torch.isfinite(v.grad).all() for v in xc.values())


def test_saved_block_states_do_not_grow_with_the_batch_on_cuda():
    """The forward keeps one state per block: on CUDA, blocks of at least √L steps keep that ≤ √L
    states per sequence at any batch (at Bt = 600 the byte-sized blocks were 2 steps: half of every
    state kept). The CPU keeps cache-sized blocks (speed), as before."""
    from spectra_cv.model.scan import BLOCK_BYTES_CPU, default_block_len

    for bt in (1, 8, 64, 600, 4096):
        lb = default_block_len(bt, 16, 768, 4, torch.device("cuda"), 601)
        assert lb >= 25 and math.ceil(601 / lb) <= 25, (bt, lb)
    assert default_block_len(32, 16, 256, 4, torch.device("cpu"), 601) == BLOCK_BYTES_CPU // (32 * 16 * 256 * 4)


def test_the_cpu_scan_runs_on_the_core_the_switch_names(cpu_core, monkeypatch):
    calls = []
    real = scan_cpu.FusedCpuCore.apply
    monkeypatch.setattr(scan_cpu.FusedCpuCore, "apply", lambda *a: calls.append(1) or real(*a))
    x = make_inputs(2, 9, 3, 31, torch.float32)  # 9 channels: one full group of 8 lanes and one partial
    selective_scan(**x, delta_softplus=True)
    assert len(calls) == (1 if cpu_core == "fused" else 0)


def test_fused_kernel_parity_on_odd_shapes(cpu_core):
    if cpu_core != "fused":
        pytest.skip("the fused kernel's own shapes")
    for bt, dm, n, length, lb in ((1, 1, 1, 1, None), (3, 17, 5, 50, 7), (2, 8, 16, 601, None), (4, 23, 2, 9, 20)):
        check_parity(make_inputs(bt, dm, n, length), 1e-11, block_len=lb)


def test_without_a_compiler_the_eager_scan_runs(tmp_path, monkeypatch):
    monkeypatch.delenv(scan_cpu.ENV_SWITCH, raising=False)
    monkeypatch.setenv(scan_cpu.ENV_CACHE, str(tmp_path / "cache"))  # nothing built there
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    scan_cpu.reset()
    assert scan_cpu.load() is None
    x = make_inputs(2, 4, 3, 13)
    check_parity(x, 1e-11)  # and the scan still works, eagerly
    scan_cpu.reset()


def test_a_build_killed_earlier_does_not_block_the_next(tmp_path, monkeypatch):
    """torch's builder leaves its lock file when killed; under our flock no build is live, so it goes."""
    import torch.utils.cpp_extension as ext

    monkeypatch.delenv(scan_cpu.ENV_SWITCH, raising=False)
    monkeypatch.setenv(scan_cpu.ENV_CACHE, str(tmp_path / "cache"))
    name = scan_cpu.kernel_name()
    directory = tmp_path / "cache" / name
    directory.mkdir(parents=True)
    (directory / "lock").write_text("")  # left by a build killed mid-way
    seen = {}

    def fake_load_inline(**kwargs):
        seen["lock_left"] = (directory / "lock").exists()
        seen["build_directory"] = kwargs["build_directory"]
        return object()

    monkeypatch.setattr(ext, "load_inline", fake_load_inline)
    monkeypatch.setenv("CXX", sys.executable)  # any program on PATH passes the compiler check
    scan_cpu.reset()
    assert scan_cpu.load() is not None
    assert seen == {"lock_left": False, "build_directory": str(directory)}
    assert (directory / scan_cpu.BUILT_MARKER).read_text().strip() == name
    scan_cpu.reset()
    scan_cpu._imported.pop(name, None)
