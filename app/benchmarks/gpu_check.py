"""The GPU check (issue 11): one call on one H100/H200, one JSON (``gpu_check.json`` in --out).

Usage:  python app/benchmarks/gpu_check.py --out DIR [--real-data DIR] [--budget-s 450]

Needs PyTorch with CUDA, numpy, pandas and click (nothing is downloaded). Sections of the JSON:

* ``environment``: torch, CUDA, GPU, driver, mamba-ssm / causal-conv1d versions where they import;
* ``scan_parity``: the project's PyTorch scan, and mamba-ssm's kernel where it imports, against the
  float64 reference on CUDA with fp32 and bf16 inputs (B=4, L=601, d_inner=256, d_state=16):
  outputs and every gradient, absolute and relative to the reference's peak;
* ``train``: the ``recipe`` preset as shipped (D384×8, FiLM, bf16 autocast, EMA, checkpoint_blocks)
  at batch 600 on synthetic data of the real size, for each backend available (PyTorch scan;
  mamba-ssm), and the PyTorch scan without block checkpointing and with ``--compile``: spectra/s
  after warm-up, peak GPU memory (``max_memory_allocated``), denoising spectra/s; a run that runs
  out of memory is reported as such, not as a crash;
* ``determinism``: two identical short runs of the recipe with ``--deterministic`` per backend:
  whether the weights are bit-identical, else the largest weight and validation-metric differences;
* ``real_fold``: with --real-data (a folder holding ``spectra_for_fold/`` and ``metadata/``), fold 1
  of the recipe through ``spectra-cv fold`` under a time budget, its test-split PSNR/SAM beside the
  ridge baseline's (tuned on the fold's validation split, as every baseline is).

Each section gets a share of --budget-s (the whole check stays within about 8 minutes on an
H200); what ran out of time says so. ``--smoke-on-cpu`` runs every section tiny on a CPU (tests).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scan import NAMES, mamba_like_inputs  # noqa: E402
from bench_train import _sync, prepare, train_throughput  # noqa: E402

from spectra_cv import provenance  # noqa: E402
from spectra_cv.io import atomic_write_json  # noqa: E402
from spectra_cv.model import backends  # noqa: E402
from spectra_cv.model.scan import selective_scan  # noqa: E402
from spectra_cv.model.scan_ref import selective_scan_ref  # noqa: E402
from spectra_cv.train.loop import lr_at, train_step, validate  # noqa: E402
from spectra_cv.train.presets import RunConfig, recipe  # noqa: E402


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().double() - b.detach().double()).abs().max())


def scan_parity(fn, dtype: torch.dtype, device: torch.device, batch: int = 4, d_inner: int = 256) -> dict:
    """Max differences of ``fn`` against the float64 reference, outputs and gradients."""
    base = mamba_like_inputs(batch, d_inner, 16, 601, seed=1)
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
    scale = float(ref_out.detach().abs().max())
    result: dict[str, Any] = {"seconds_fwd_bwd": round(time.perf_counter() - t0, 4),
                              "out_max_abs": _max_abs(out, ref_out)}
    result["out_max_rel_to_peak"] = result["out_max_abs"] / scale
    result["grad_max_abs"] = {k: _max_abs(g, r) for k, g, r in zip(NAMES, grads, ref_grads)}
    result["grad_max_rel_to_peak"] = {
        k: _max_abs(g, r) / max(float(r.abs().max()), 1e-30) for k, g, r in zip(NAMES, grads, ref_grads)
    }
    return result


def _with(cfg: RunConfig, **train: Any) -> RunConfig:
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **train))


def _guarded(fn, *args: Any, **kwargs: Any) -> dict:
    """``fn``'s result, or what stopped it (out of memory, any other error) as a dict; frees the cache."""
    try:
        return fn(*args, **kwargs)
    except torch.OutOfMemoryError as exc:
        return {"error": "out of memory", "detail": str(exc).splitlines()[0]}
    except Exception as exc:  # noqa: BLE001 - the check reports every section, whatever one of them does
        return {"error": type(exc).__name__, "detail": str(exc).splitlines()[0] if str(exc) else ""}
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def short_run(cfg: RunConfig, device: torch.device, backend: str, steps: int, batch: int, spectra: int) -> dict:
    """``steps`` optimiser steps from the seed; returns the EMA weights and validation scores."""
    model, ema, opt, split, objective = prepare(cfg, device, backend, spectra=spectra)
    gen = torch.Generator().manual_seed(cfg.train.seed)
    model.train()
    for step in range(steps):
        idx = torch.randperm(len(split), generator=gen)[:batch].to(device)
        lr = lr_at(step, total_steps=steps, warmup_steps=1, lr=cfg.train.lr, lr_min=cfg.train.lr_min)
        train_step(model, ema, opt, split, objective, idx, cfg.train, device, epoch=1, lr=lr,
                   draws=split.partner_draws(batch, gen))
    final = ema.module if ema is not None else model
    scores = validate(final, split, objective, device, cfg.train)
    return {"weights": {k: v.detach().clone() for k, v in final.state_dict().items()}, "scores": scores}


def determinism(cfg: RunConfig, device: torch.device, backend: str, steps: int, batch: int, spectra: int) -> dict:
    """Two identical ``--deterministic`` runs compared weight by weight and on validation scores."""
    cfg = _with(cfg, deterministic=True)
    t0 = time.perf_counter()
    a = short_run(cfg, device, backend, steps, batch, spectra)
    b = short_run(cfg, device, backend, steps, batch, spectra)
    diffs = {k: _max_abs(a["weights"][k], b["weights"][k]) for k in a["weights"]
             if a["weights"][k].dtype.is_floating_point}
    worst = max(diffs, key=diffs.get)
    identical = all(torch.equal(a["weights"][k], b["weights"][k]) for k in a["weights"])
    result = {
        "backend": backend, "steps": steps, "batch_size": batch, "bit_identical": identical,
        "max_weight_abs_diff": diffs[worst], "worst_tensor": worst,
        "val_psnr_abs_diff": abs(a["scores"]["psnr"] - b["scores"]["psnr"]),
        "val_sam_abs_diff": abs(a["scores"]["sam"] - b["scores"]["sam"]),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if not identical and backend == "cuda":
        result["reason"] = "mamba-ssm's backward accumulates gradients with atomic adds (order varies run to run)"
    torch.use_deterministic_algorithms(False)
    return result


def real_fold(data: Path, work: Path, out_dir: Path, budget_s: float, device: str, smoke: bool) -> dict:
    """Fold 1 of the recipe on the real data through ``spectra-cv fold``; test split beside ridge."""
    run_root = work / "real_run"
    cmd = [sys.executable, "-m", "spectra_cv", "fold", "--fold", "1", "--preset", "recipe",
           "--run-root", str(run_root), "--data-root", str(data / "spectra_for_fold"),
           "--metadata-dir", str(data / "metadata"), "--time-budget-s", f"{budget_s:.0f}", "--device", device]
    if smoke:  # a CPU cannot train the recipe: the same pipeline with a model it can
        cmd += ["--epochs", "1", "--batch-size", "64"]
        cmd += [arg for flag in ("d_model=8", "n_layers=1", "d_state=4", "film_hidden_dim=8") for arg in ("--set", flag)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    seconds = round(time.perf_counter() - t0, 1)
    (out_dir / "real_fold.log").write_text(proc.stdout[-200_000:] + proc.stderr[-200_000:])
    metrics_path = run_root / "artifacts" / "cross_validation" / "fold_01_metrics.json"
    if proc.returncode != 0 or not metrics_path.is_file():
        return {"error": f"spectra-cv fold exited {proc.returncode}", "seconds": seconds,
                "tail": (proc.stderr or proc.stdout)[-2000:]}
    metrics = json.loads(metrics_path.read_text())
    speed_path = run_root / "artifacts" / "cross_validation" / "fold_01_speed.json"
    speed = json.loads(speed_path.read_text()) if speed_path.is_file() else {}
    test = metrics["splits"]["test"]

    def pick(name: str) -> dict:
        scores = test[name]["loo"]
        return {"psnr_db": scores["psnr_mean"], "sam_deg": scores["sam_deg_mean"], "params": test[name]["params"]}

    result = {"seconds": seconds, "time_budget_s": budget_s, "model": pick("model"), "ridge": pick("ridge")}
    result["model_minus_ridge_psnr_db"] = result["model"]["psnr_db"] - result["ridge"]["psnr_db"]
    result["speed_summary"] = speed.get("summary")
    history = run_root / "logs" / "Track_H_fold_01" / "metrics.csv"
    if history.is_file():
        result["history_csv"] = history.read_text()
    return result


def _environment(device: torch.device) -> dict:
    env = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (smoke run)",
           "mamba_ssm": backends.mamba_ssm_available()}
    env["library_versions"] = provenance.library_versions()
    return env


@click.command()
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option("--budget-s", type=float, default=420.0, show_default=True,
              help="Seconds for the whole check (sections get shares of it).")
@click.option("--real-data", type=click.Path(path_type=Path, file_okay=False, exists=True), default=None,
              help="A folder with spectra_for_fold/ and metadata/: adds the real-data fold.")
@click.option("--batch-size", type=int, default=600, show_default=True, help="Spectra per step (the recipe's 600).")
@click.option("--smoke-on-cpu", is_flag=True, help="Every section, tiny, on the CPU (a dry run of this script).")
def main(out_dir: Path, budget_s: float, real_data: Path | None, batch_size: int, smoke_on_cpu: bool) -> None:
    """Run every section and write gpu_check.json."""
    if smoke_on_cpu:
        device = torch.device("cpu")
        batch_size = min(batch_size, 4)  # the recipe at 600 spectra a step needs ~20 GB of RAM on a CPU
    elif not torch.cuda.is_available():
        raise click.ClickException("no CUDA device: this check runs on a GPU machine (or pass --smoke-on-cpu)")
    else:
        device = torch.device("cuda")
    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    report: dict[str, Any] = {"environment": _environment(device), "budget_s": budget_s}

    def save() -> None:
        report["seconds"] = round(time.perf_counter() - t_start, 1)
        atomic_write_json(out_dir / "gpu_check.json", report)

    scan_backends = ["torch"] + (["cuda"] if report["environment"]["mamba_ssm"] else [])
    parity: dict[str, Any] = {}
    for backend in scan_backends:
        fn = selective_scan if backend == "torch" else backends.mamba_scan_fn()
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            parity[f"{backend}_{name}"] = _guarded(scan_parity, fn, dtype, device, *((1, 16) if smoke_on_cpu else ()))
    report["scan_parity"] = parity
    click.echo(json.dumps(parity, indent=1), err=True)
    save()

    shipped = recipe()
    if smoke_on_cpu:  # the recipe's pipeline with a model a CPU steps through in seconds
        shipped = dataclasses.replace(shipped, model=dataclasses.replace(shipped.model, d_model=16, n_layers=1))
    steps = 3 if smoke_on_cpu else 400
    eval_n = 8 if smoke_on_cpu else 1500
    spectra = 450 if smoke_on_cpu else 4500  # synthetic train spectra (4,500: a fold's train split)
    share = 10.0 if smoke_on_cpu else budget_s * 0.08  # ~35 s each of five runs (at least 7 steps each)
    variants = [(f"{b}", shipped, b) for b in scan_backends]
    variants += [("torch_no_checkpoint_blocks", _with(shipped, checkpoint_blocks=False), "torch"),
                 ("torch_compile", _with(shipped, compile=True), "torch")]
    if "cuda" in scan_backends:
        variants.append(("cuda_no_checkpoint_blocks", _with(shipped, checkpoint_blocks=False), "cuda"))
    report["train"] = {}
    for name, cfg, backend in variants:
        report["train"][name] = _guarded(train_throughput, cfg, device, share, steps, backend, batch_size, eval_n,
                                         spectra=spectra, min_steps=8,  # the median leaves the first 3 out
                                         compile_backend="aot_eager" if smoke_on_cpu else "inductor")
        click.echo(f"train {name}: {json.dumps(report['train'][name])}", err=True)
        save()

    det_steps = 2 if smoke_on_cpu else 6
    report["determinism"] = {b: _guarded(determinism, shipped, device, b, det_steps, batch_size, spectra)
                             for b in scan_backends}
    click.echo(f"determinism: {json.dumps(report['determinism'])}", err=True)
    save()

    if real_data is not None:
        left = budget_s - (time.perf_counter() - t_start)
        fold_budget = 20.0 if smoke_on_cpu else max(60.0, left - 90.0)  # data, prior, inference, baselines: ~90 s
        work = Path(tempfile.mkdtemp(prefix="gpu_check_fold_"))  # a fresh run root: never a rerun's skip
        report["real_fold"] = real_fold(real_data, work, out_dir, fold_budget, device.type, smoke_on_cpu)
    else:
        report["real_fold"] = {"skipped": "no --real-data given"}
    save()
    click.echo(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
