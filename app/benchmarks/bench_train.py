"""Benchmark: training and denoising throughput of the presets on synthetic data of the real size.

Usage:  python app/benchmarks/bench_train.py [--out bench/train.json] [--seconds 60]

For ``cpu_quick`` (its own batch) and ``recipe`` (a reduced batch on CPU: a step of 600 spectra
of the 8 M-parameter model takes minutes there), it times optimiser steps with the full
objective (after warm-up) and a denoising pass, and reports spectra/s, peak memory (GPU, or the
process's peak RSS on CPU) and the parameter count. JSON to stdout and atomically to --out.
"""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path

import click
import numpy as np
import torch

from spectra_cv.data import synth
from spectra_cv.data.conditioning import compute_dose_stats, conditioning_matrix, no_conditioning
from spectra_cv.io import atomic_write_json
from spectra_cv.model.mamba_uv import MambaUV
from spectra_cv.model.zoo import count_parameters
from spectra_cv.objective import Objective
from spectra_cv.train import numerics
from spectra_cv.train.loop import autocast, lr_at, train_step
from spectra_cv.train.presets import RunConfig, cpu_quick, recipe
from spectra_cv.train.prior import install_prior
from spectra_cv.train.schedule import Ema, adamw
from spectra_cv.train.tensors import DeviceSplit, SplitArrays


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 1e9, 3)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 3)  # kB → GB (process peak RSS)


def synthetic_split(device: torch.device, cfg: RunConfig, spectra: int = 4500) -> tuple[DeviceSplit, np.ndarray]:
    """``spectra`` (≤ 4,500) synthetic spectra of the real size (treatments 1–5), conditioned as ``cfg`` asks."""
    data = synth.generate(synth.full(seed=0))
    frame = data.manifest
    train_mask = frame["treatment"].isin([f"treatment_{k}" for k in range(1, 6)]).to_numpy()
    # replicate r of every group before replicate r + 1 of any: a few spectra still span every group,
    # as a train split does (the Wiener prior needs several groups, the held-out choice several samples)
    rank = frame[train_mask].groupby("group_id").cumcount().to_numpy()
    idx = np.flatnonzero(train_mask)[np.argsort(rank, kind="stable")][:spectra]
    rows = frame.iloc[idx].reset_index(drop=True)
    if cfg.film_features:
        stats = compute_dose_stats(rows, data.dose_features, cfg.film_features)
        cond = conditioning_matrix(rows, data.dose_features, cfg.film_features, stats)
    else:  # an unconditioned model (cpu_quick): no dose columns, as `spectra-cv train` builds it
        cond = no_conditioning(len(rows))
    arrays = SplitArrays(
        relative_paths=tuple(rows["relative_path"]), noisy=np.clip(data.spectra[idx], 0, 1).astype(np.float32),
        groups=tuple(rows["group_id"]),
        cos_theta=np.where(rows["angle"].str.startswith("12"), 1.0, -1.0).astype(np.float32),
        cond=cond, fingerprint="synthetic-full-seed0",
    )
    return DeviceSplit(arrays, data.wavelength, device), data.wavelength


def prepare(cfg: RunConfig, device: torch.device, backend: str, spectra: int = 4500,
            compile_backend: str = "inductor"):
    """What ``spectra-cv train`` builds for ``cfg`` (numerics, model with its prior, checkpointing,
    compile (with ``compile_backend``), objective, optimiser, EMA), on ``spectra`` synthetic spectra.
    Returns (model, ema, optimiser, split, objective)."""
    numerics.configure(cfg.train, device)
    torch.manual_seed(cfg.train.seed)
    split, grid = synthetic_split(device, cfg, spectra)
    model = MambaUV(cfg.model).to(device)
    if cfg.model.prior != "none":
        install_prior(model, split.noisy, split.loo, split.arrays.groups)  # as spectra-cv train does, on the (synthetic) train data
    model.set_scan_backend(backend)
    model.checkpoint_blocks = cfg.train.checkpoint_blocks
    if cfg.train.compile:
        model.compile_blocks(compile_backend)
    objective = Objective(cfg.objective, grid, None).to(device)
    opt = adamw(model, cfg.train.lr, cfg.train.weight_decay, fused=numerics.fused_optimizer(device))
    ema = Ema(model, cfg.train.ema_decay) if cfg.train.ema else None
    return model, ema, opt, split, objective


def train_throughput(cfg: RunConfig, device: torch.device, seconds: float, max_steps: int, backend: str,
                     batch_size: int, eval_spectra: int = 1500, spectra: int = 4500, min_steps: int = 3,
                     compile_backend: str = "inductor") -> dict:
    """Optimiser steps of ``cfg`` (model, objective, numerics, checkpointing, compile) on synthetic data,
    through the trainer's own ``train_step``: spectra/s and peak memory. At least ``min_steps`` run
    whatever the time (the first ones carry warm-up and compile time and are left out of the median)."""
    model, ema, opt, split, objective = prepare(cfg, device, backend, spectra, compile_backend)
    gen = torch.Generator().manual_seed(0)
    bs = batch_size
    params = [p for p in model.parameters() if p.requires_grad]
    _reset_peak(device)
    times, losses = [], []
    start = time.perf_counter()
    step = 0
    model.train()
    while step < max_steps and (step < min(min_steps, max_steps) or time.perf_counter() - start < seconds):
        idx = torch.randperm(len(split), generator=gen)[:bs].to(device)
        draws = split.partner_draws(bs, gen)
        _sync(device)
        t0 = time.perf_counter()
        lr = lr_at(step, total_steps=max_steps, warmup_steps=10, lr=cfg.train.lr, lr_min=cfg.train.lr_min)
        loss = train_step(model, ema, opt, split, objective, idx, cfg.train, device, epoch=1, lr=lr, draws=draws,
                          params=params)
        _sync(device)
        times.append(time.perf_counter() - t0)
        losses.append(float(loss))
        step += 1
    steady = times[3:] if len(times) > 6 else times
    median = float(np.median(steady))
    model.eval()
    with torch.no_grad(), autocast(device, cfg.train):
        n_eval = eval_spectra
        idx = torch.arange(0, n_eval, device=device)
        _sync(device)
        t0 = time.perf_counter()
        for s in range(0, n_eval, 500):
            model(split.inputs(idx[s:s + 500]), split.cond_of(idx[s:s + 500]))
        _sync(device)
        denoise_s = time.perf_counter() - t0
    return {
        "backend": backend,
        "checkpoint_blocks": cfg.train.checkpoint_blocks,
        "compile": cfg.train.compile,
        "deterministic": cfg.train.deterministic,
        "n_parameters": count_parameters(model),
        "batch_size": bs,
        "steps": step,
        "median_step_s": round(median, 4),
        "train_spectra_per_s": round(bs / median, 1),
        "first_step_s": round(times[0], 3),
        "loss_first_last": [losses[0], losses[-1]],
        "denoise_spectra_per_s": round(n_eval / denoise_s, 1),
        "peak_mem_GB": _peak_gb(device),
        "peak_mem_kind": "cuda max_memory_allocated" if device.type == "cuda" else "process peak RSS",
        "epoch_estimate_s_4500": round(median * (4500 / bs), 2),
    }


@click.command()
@click.option("--out", "out_path", type=click.Path(path_type=Path, dir_okay=False), default=Path("bench/train.json"),
              show_default=True)
@click.option("--seconds", type=float, default=60.0, show_default=True, help="Time cap per preset.")
@click.option("--threads", type=int, default=2, show_default=True)
def main(out_path: Path, seconds: float, threads: int) -> None:
    torch.set_num_threads(threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    report = {"device": str(device), "threads": threads, "torch": torch.__version__}
    quick = cpu_quick()
    on_gpu = device.type == "cuda"
    report["cpu_quick"] = train_throughput(quick, device, seconds, 200, "auto", quick.train.batch_size,
                                           1500 if on_gpu else 512)
    big = recipe()
    report["recipe"] = train_throughput(big, device, seconds, 200, "auto", big.train.batch_size if on_gpu else 16,
                                        1500 if on_gpu else 32)
    atomic_write_json(out_path, report)
    click.echo(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
