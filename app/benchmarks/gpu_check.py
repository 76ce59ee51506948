"""GPU check (issue 3): scan parity on CUDA, recipe training throughput, peak memory. JSON out.

Usage:  python app/benchmarks/gpu_check.py --out DIR [--train-seconds 150] [--max-steps 300]

Needs only PyTorch with CUDA, numpy, pandas and click (nothing is downloaded). Steps:
1. environment (torch, CUDA, GPU, mamba_ssm present or not);
2. the project's PyTorch scan against the sequential reference on CUDA, fp32 and bf16 inputs,
   outputs and every gradient (B=4, L=601, d_inner=256, d_state=16);
3. if mamba_ssm imports: the fused kernel against the reference as well;
4. the ``recipe`` model (D384×8, FiLM 8→64) trained on synthetic data of the real size with the
   recipe objective, batch 600, bf16 autocast, EMA, for up to --max-steps optimiser steps or
   --train-seconds: spectra/s (after warm-up) and peak GPU memory; same for denoising.
Takes about 4–6 minutes on one H100/H200.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import click
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scan import NAMES, mamba_like_inputs  # noqa: E402
from bench_train import train_throughput  # noqa: E402

from spectra_cv.io import atomic_write_json  # noqa: E402
from spectra_cv.model import backends  # noqa: E402
from spectra_cv.model.scan import selective_scan  # noqa: E402
from spectra_cv.model.scan_ref import selective_scan_ref  # noqa: E402
from spectra_cv.train.presets import recipe  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().float() - b.detach().float()).abs().max())


def scan_parity(fn, dtype: torch.dtype, device: torch.device) -> dict:
    """Max abs differences of ``fn`` vs the fp64 reference (outputs and gradients)."""
    base = mamba_like_inputs(4, 256, 16, 601, seed=1)
    results = {}
    ref_in = {k: v.double().to(device).requires_grad_(True) for k, v in base.items()}
    ref_out = selective_scan_ref(**ref_in, delta_softplus=True)
    cot = torch.randn_like(ref_out)
    ref_grads = torch.autograd.grad(ref_out, [ref_in[k] for k in NAMES], cot)
    x = {k: v.to(device=device, dtype=dtype if k in ("u", "delta", "B", "C", "z") else torch.float32)
         .requires_grad_(True) for k, v in base.items()}
    _sync(device)
    t0 = time.perf_counter()
    out = fn(**x, delta_softplus=True)
    grads = torch.autograd.grad(out, [x[k] for k in NAMES], cot.to(out.dtype))
    _sync(device)
    results["seconds_fwd_bwd"] = round(time.perf_counter() - t0, 4)
    scale = float(ref_out.detach().abs().max())
    results["out_max_abs"] = _max_abs(out, ref_out)
    results["out_max_rel_to_peak"] = results["out_max_abs"] / scale
    results["grad_max_abs"] = {k: _max_abs(g, r) for k, g, r in zip(NAMES, grads, ref_grads)}
    results["grad_max_rel_to_peak"] = {
        k: _max_abs(g, r) / max(float(r.abs().max()), 1e-30) for k, g, r in zip(NAMES, grads, ref_grads)
    }
    return results


@click.command()
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--train-seconds", type=float, default=150.0, show_default=True)
@click.option("--max-steps", type=int, default=300, show_default=True)
@click.option("--batch-size", type=int, default=600, show_default=True, help="Spectra per step (the recipe's 600).")
@click.option("--smoke-on-cpu", is_flag=True, help="Dry run of this script on a CPU (tiny step counts).")
def main(out_dir: Path, train_seconds: float, max_steps: int, batch_size: int, smoke_on_cpu: bool) -> None:
    if smoke_on_cpu:
        device = torch.device("cpu")
        batch_size = min(batch_size, 4)  # the recipe at 600 spectra a step needs ~20 GB of RAM on a CPU
        max_steps, train_seconds = min(max_steps, 3), min(train_seconds, 60.0)
    elif not torch.cuda.is_available():
        raise click.ClickException("no CUDA device: this check runs on a GPU machine")
    else:
        device = torch.device("cuda")
    report: dict = {
        "python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (smoke run)",
        "mamba_ssm": backends.mamba_ssm_available(),
    }
    eval_n = 1500 if device.type == "cuda" else 8
    t0 = time.perf_counter()
    report["scan_parity"] = {
        "torch_fp32": scan_parity(selective_scan, torch.float32, device),
        "torch_bf16": scan_parity(selective_scan, torch.bfloat16, device),
    }
    if report["mamba_ssm"]:
        fused = backends.mamba_scan_fn()
        report["scan_parity"]["mamba_ssm_fp32"] = scan_parity(fused, torch.float32, device)
    click.echo(json.dumps(report["scan_parity"], indent=1), err=True)
    report["train"] = {"torch": train_throughput(recipe(), device, train_seconds, max_steps, "torch", batch_size, eval_n)}
    if report["mamba_ssm"]:
        report["train"]["cuda"] = train_throughput(recipe(), device, train_seconds / 2, max_steps, "cuda", batch_size, eval_n)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    atomic_write_json(out_dir / "gpu_check.json", report)
    click.echo(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
