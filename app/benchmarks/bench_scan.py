"""Benchmark: fast PyTorch selective scan vs the sequential reference, forward + backward.

Usage:  python app/benchmarks/bench_scan.py [--out bench/scan.json] [--ref-repeats 5]

Mamba-like fp32 inputs at B=8, L=601, d_inner=256, d_state=16 (A = -exp(A_log) with S4D-real
A_log, dt = softplus(delta + dt_bias) with dt in [1e-3, 1e-1], D and z given), CPU,
torch.set_num_threads(2). Reports the median fwd+bwd time of each scan, their ratio (bar: >= 100x),
max abs differences of the output and of every gradient (bar: <= 1e-5, also given relative to
the largest reference value, and both fp32 scans' errors against float64), the fast scan's
median at B=32 on each CPU core (the fused kernel of ``scan_cpu`` where it builds, and the eager
one, interleaved; the project's bar: 150 spectra/s), and peak RSS (after the fast runs, and overall: the reference's autograd graph
dominates the latter). JSON goes to stdout and atomically to --out.

OMP_WAIT_POLICY defaults to PASSIVE (see below), and the 1-minute load average is recorded:
other processes on the same cores inflate both timings. Takes 3-10 minutes on 2 cores with the
default 5 reference runs.
"""

from __future__ import annotations

import os

# Set before torch starts OpenMP: with the default (active) policy, when other processes share the
# cores, every multi-threaded op waits a scheduler timeslice for a spinning peer (measured here:
# B=32 fast scan 29 s instead of 0.3 s). Override by exporting OMP_WAIT_POLICY yourself.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import contextlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import click  # noqa: E402
import torch  # noqa: E402

from spectra_cv.io import atomic_write_json  # noqa: E402
from spectra_cv.model import scan_cpu  # noqa: E402
from spectra_cv.model.scan import default_block_len, selective_scan  # noqa: E402
from spectra_cv.model.scan_ref import selective_scan_ref  # noqa: E402

NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def mamba_like_inputs(bt: int, dm: int, n: int, length: int, seed: int = 0) -> dict:
    """fp32 inputs shaped and scaled as mamba_ssm's Mamba feeds its scan.

    u, delta, z: (bt, dm, L); A: (dm, n); B, C: (bt, n, L); D, delta_bias: (dm,).
    """
    g = torch.Generator().manual_seed(seed)
    dt0 = torch.exp(torch.rand(dm, generator=g) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
    return {
        "u": torch.randn(bt, dm, length, generator=g),
        "delta": 0.5 * torch.randn(bt, dm, length, generator=g),
        "A": -torch.arange(1, n + 1, dtype=torch.float32).repeat(dm, 1),  # -exp(S4D-real A_log)
        "B": torch.randn(bt, n, length, generator=g),
        "C": torch.randn(bt, n, length, generator=g),
        "D": torch.ones(dm),
        "z": torch.randn(bt, dm, length, generator=g),
        "delta_bias": dt0 + torch.log(-torch.expm1(-dt0)),  # inverse softplus of dt0
    }


def fwd_bwd(fn, inputs: dict, cot: torch.Tensor) -> tuple[float, torch.Tensor, list[torch.Tensor]]:
    """One timed forward + backward; returns (seconds, out, grads in NAMES order)."""
    x = {k: v.detach().clone().requires_grad_(True) for k, v in inputs.items()}
    t0 = time.perf_counter()
    out = fn(**x, delta_softplus=True)
    grads = torch.autograd.grad(out, [x[k] for k in NAMES], cot)
    return time.perf_counter() - t0, out.detach(), [g.detach() for g in grads]


def median_time(fn, inputs: dict, cot: torch.Tensor, repeats: int, warmup: int) -> tuple[float, list[float]]:
    for _ in range(warmup):
        fwd_bwd(fn, inputs, cot)
    times = [fwd_bwd(fn, inputs, cot)[0] for _ in range(repeats)]
    return statistics.median(times), times


@contextlib.contextmanager
def eager_scan(on: bool):
    """Run the CPU scan on the eager core (``SPECTRA_CV_CPU_KERNEL=0``) inside the block."""
    before = os.environ.get(scan_cpu.ENV_SWITCH)
    if on:
        os.environ[scan_cpu.ENV_SWITCH] = "0"
    scan_cpu.reset()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(scan_cpu.ENV_SWITCH, None)
        else:
            os.environ[scan_cpu.ENV_SWITCH] = before
        scan_cpu.reset()


def diff(got: torch.Tensor, want: torch.Tensor) -> dict:
    err = (got - want).abs().max().item()
    scale = want.abs().max().item()
    return {"max_abs": err, "max_rel_to_max": err / scale if scale > 0 else err}


@click.command()
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("bench/scan.json"), show_default=True, help="JSON result file.")
@click.option("--ref-repeats", type=click.IntRange(1), default=5, show_default=True,
              help="Timed runs of the slow reference (each ~10-30 s).")
@click.option("--fast-repeats", type=click.IntRange(5), default=11, show_default=True)
@click.option("--threads", type=click.IntRange(1), default=2, show_default=True)
def main(out_path: Path, ref_repeats: int, fast_repeats: int, threads: int) -> None:
    """Time fwd+bwd of the fast scan and the reference; check they agree."""
    torch.set_num_threads(threads)
    load_start = os.getloadavg()[0]
    bt, dm, n, length = 8, 256, 16, 601
    inputs = mamba_like_inputs(bt, dm, n, length)
    cot = torch.randn(bt, dm, length, generator=torch.Generator().manual_seed(1))

    fused = scan_cpu.load() is not None  # the default CPU core when it builds (a C++ compiler is here)
    fast_med, fast_times = median_time(selective_scan, inputs, cot, fast_repeats, warmup=2)
    inputs32 = mamba_like_inputs(32, dm, n, length, seed=2)
    cot32 = torch.randn(32, dm, length, generator=torch.Generator().manual_seed(3))
    # B=32 on both CPU cores, interleaved run by run so that other load hits both alike
    cores = {"fused": [], "eager": []} if fused else {"eager": []}
    for core in cores:
        with eager_scan(core == "eager"):
            median_time(selective_scan, inputs32, cot32, 1, warmup=1)
    for _ in range(fast_repeats):
        for core, runs in cores.items():
            with eager_scan(core == "eager"):
                runs.append(fwd_bwd(selective_scan, inputs32, cot32)[0])
    b32 = {core: {"median_s": statistics.median(runs), "runs": runs,
                  "spectra_per_s": 32 / statistics.median(runs)} for core, runs in cores.items()}
    fast32_med, fast32_times = b32["fused" if fused else "eager"]["median_s"], b32["fused" if fused else "eager"]["runs"]
    rss_fast = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    del inputs32, cot32

    _, out_ref, g_ref = fwd_bwd(selective_scan_ref, inputs, cot)
    _, out_fast, g_fast = fwd_bwd(selective_scan, inputs, cot)
    diffs = {"out": diff(out_fast, out_ref)}
    diffs.update({f"grad_{k}": diff(a, b) for k, a, b in zip(NAMES, g_fast, g_ref)})
    max_abs = max(d["max_abs"] for d in diffs.values())
    max_rel = max(d["max_rel_to_max"] for d in diffs.values())
    # fp32 round-off floor: both fp32 scans against float64 truth (the fast scan in float64,
    # which tests/test_scan.py pins to the float64 reference at 1e-11).
    _, out64, g64 = fwd_bwd(selective_scan, {k: v.double() for k, v in inputs.items()},
                            cot.double())
    vs64 = {}
    for name, out32, g32 in (("fast_fp32", out_fast, g_fast), ("ref_fp32", out_ref, g_ref)):
        errs = [(out32.double() - out64).abs().max().item()]
        errs += [(a.double() - b).abs().max().item() for a, b in zip(g32, g64)]
        vs64[name] = dict(zip(("out",) + tuple(f"grad_{k}" for k in NAMES), errs))

    ref_med, ref_times = median_time(selective_scan_ref, inputs, cot, ref_repeats, warmup=0)

    ratio = ref_med / fast_med
    result = {
        "config": {"batch": bt, "d_inner": dm, "d_state": n, "L": length, "dtype": "float32",
                   "threads": torch.get_num_threads(),
                   "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                   "load_avg_1m_at_start": load_start, "delta_softplus": True,
                   "with_D_z_delta_bias": True,
                   "block_len_b8": default_block_len(bt, n, dm, 4, torch.device("cpu")),
                   "block_len_b32": default_block_len(32, n, dm, 4, torch.device("cpu"))},
        "fast_fwd_bwd_s": {"median": fast_med, "runs": fast_times},
        "ref_fwd_bwd_s": {"median": ref_med, "runs": ref_times},
        "speedup": ratio,
        "speedup_bar": 100.0,
        "speedup_ok": ratio >= 100.0,
        "max_abs_diff": max_abs,
        "max_rel_diff": max_rel,
        "diff_bar": 1e-5,
        "diff_ok": max_abs <= 1e-5 or max_rel <= 1e-5,
        "diffs": diffs,
        "max_abs_err_vs_float64": vs64,
        "fast_fwd_bwd_s_b32": {"median": fast32_med, "runs": fast32_times},
        "cpu_core": "fused" if fused else "eager",
        "b32_by_core": b32,
        "b32_spectra_per_s": 32 / fast32_med,
        "b32_bar_spectra_per_s": 150.0,
        "b32_fused_over_eager": (b32["eager"]["median_s"] / b32["fused"]["median_s"]) if fused else None,
        "peak_rss_mb_after_fast_runs": rss_fast,
        "load_avg_1m_at_end": os.getloadavg()[0],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
    }
    click.echo(json.dumps(result, indent=2))
    atomic_write_json(out_path, result)


if __name__ == "__main__":
    main()
