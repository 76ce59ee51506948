"""Benchmark: activation memory one more spectrum costs in a forward+backward of the recipe preset.

Usage:  python app/benchmarks/bench_memory.py [--out bench/memory.json] [--small 2] [--large 6]

Each measurement is a fresh process (peak RSS is a high-water mark): the recipe's model and
objective as shipped, one optimiser step's forward and backward at batch ``small`` and at batch
``large``, on the CPU with the PyTorch scan; the difference of the two peaks over ``large - small``
is the memory per spectrum. Measured with ``checkpoint_blocks`` off and on (the recipe ships it on),
each under glibc's default allocator settings and with its mmap threshold pinned at 128 KiB
(``MALLOC_MMAP_THRESHOLD_``): by default glibc raises that threshold after freeing a large block, so
later tensors come from a heap it does not hand back and peak RSS counts memory no tensor holds any
more; pinned, every tensor above 128 KiB is mapped and unmapped, and peak RSS follows the tensors.
On a GPU the same probe reads ``torch.cuda.max_memory_allocated``. JSON to stdout and atomically to --out.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import torch

from spectra_cv.io import atomic_write_json


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB → MiB


def probe(batch: int, checkpoint_blocks: bool, device: torch.device) -> dict:
    """One forward+backward of the recipe at ``batch``: peak memory before and after (MiB)."""
    from spectra_cv.objective import Objective
    from spectra_cv.train.loop import autocast
    from spectra_cv.train.presets import recipe

    torch.manual_seed(0)
    cfg = recipe()
    from spectra_cv.model.mamba_uv import MambaUV

    model = MambaUV(cfg.model).to(device).train()
    model.checkpoint_blocks = checkpoint_blocks
    model.set_scan_backend("torch")
    length = cfg.model.sequence_length
    if cfg.model.prior != "none":  # an identity prior: the same buffers and ops as a fitted one
        model.set_prior(torch.eye(length, device=device), torch.zeros(length, device=device), 0.01)
    grid = np.linspace(300.0, 600.0, length)
    objective = Objective(cfg.objective, grid, None).to(device)
    lam = torch.linspace(-1, 1, length, device=device)
    phase = torch.rand(batch, 1, device=device) * 6.0
    refl = 0.45 + 0.3 * torch.sin(3.0 * lam[None] + phase)  # smooth spectra in [0.15, 0.75]
    noisy = refl + 0.005 * torch.randn_like(refl)
    x = torch.stack([noisy, lam.expand_as(noisy), torch.ones_like(noisy)], dim=1)
    cond = torch.randn(batch, cfg.model.cond_dim, device=device) if cfg.model.film else None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    before = _peak_mb(device)
    with autocast(device, cfg.train):
        pred = model(x, cond)[:, 0].float()
    loss, _ = objective(pred, refl, epoch=cfg.objective.dip_warmup_epochs + 1, dip_target=refl)
    loss.backward()
    return {"batch": batch, "checkpoint_blocks": checkpoint_blocks, "peak_before_mb": round(before, 1),
            "peak_mb": round(_peak_mb(device), 1), "loss": float(loss.detach())}


PINNED = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}


def _measure(batch: int, checkpoint_blocks: bool, threads: int, pinned: bool) -> dict:
    args = [sys.executable, __file__, "--probe", str(batch), "--threads", str(threads)]
    if checkpoint_blocks:
        args.append("--checkpoint-blocks")
    env = {k: v for k, v in os.environ.items() if k not in PINNED}
    out = subprocess.run(args, capture_output=True, text=True, check=True, env={**env, **(PINNED if pinned else {})})
    return json.loads(out.stdout.strip().splitlines()[-1])


@click.command()
@click.option("--out", "out_path", type=click.Path(path_type=Path, dir_okay=False), default=Path("bench/memory.json"),
              show_default=True)
@click.option("--small", type=int, default=2, show_default=True)
@click.option("--large", type=int, default=6, show_default=True)
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--probe", "probe_batch", type=int, default=None, hidden=True)
@click.option("--checkpoint-blocks", is_flag=True, hidden=True)
def main(out_path: Path, small: int, large: int, threads: int, probe_batch: int | None, checkpoint_blocks: bool) -> None:
    torch.set_num_threads(threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if probe_batch is not None:
        click.echo(json.dumps(probe(probe_batch, checkpoint_blocks, device)))
        return
    report: dict = {"device": str(device), "threads": threads, "torch": torch.__version__, "preset": "recipe",
                    "scan_backend": "torch", "batches": [small, large],
                    "peak_kind": "cuda max_memory_allocated" if device.type == "cuda" else "process peak RSS"}
    for pinned in (True, False):
        allocator = "malloc_mmap_threshold_128k" if pinned else "malloc_default"
        report[allocator] = {}
        for recompute in (False, True):
            runs = [_measure(b, recompute, threads, pinned) for b in (small, large)]
            per = (runs[1]["peak_mb"] - runs[0]["peak_mb"]) / (large - small)
            report[allocator]["checkpoint_blocks_on" if recompute else "checkpoint_blocks_off"] = {
                "runs": runs, "mb_per_spectrum": round(per, 1)}
    atomic_write_json(out_path, report)
    click.echo(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
