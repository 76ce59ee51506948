"""The benchmark scripts run (a couple of steps, CPU): `make bench` and the GPU check must not rot."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_train import train_throughput  # noqa: E402

from spectra_cv.train.presets import cpu_quick, recipe  # noqa: E402


def test_train_throughput_runs_the_presets_with_their_prior():
    tiny_recipe = recipe()
    tiny_recipe = dataclasses.replace(tiny_recipe, model=dataclasses.replace(tiny_recipe.model, d_model=16, n_layers=1))
    for cfg in (cpu_quick(), tiny_recipe):
        assert cfg.model.prior == "ridge"
        out = train_throughput(cfg, torch.device("cpu"), seconds=30.0, max_steps=2, backend="torch",
                               batch_size=8, eval_spectra=16)
        assert out["steps"] == 2 and out["train_spectra_per_s"] > 0, out
