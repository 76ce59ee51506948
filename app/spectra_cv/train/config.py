"""The trainer's configuration: one frozen dataclass, each field a training flag (``train.flags``).

Model and objective settings live in their own configs (``spectra_cv.model.mamba_uv.ModelConfig``,
``spectra_cv.objective.ObjectiveConfig``); all three derive from ``spectra_cv.configs.Config``
(one ``from_dict``, one validator). ``RunConfig`` bundles them and is what a checkpoint stores and
what the config hash covers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from spectra_cv.configs import Config

DEVICE_NAME = re.compile(r"auto|cpu|cuda(:[0-9]+)?")
"""The device names a run takes: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""


def device_name_problem(name: str) -> str | None:
    """Why ``name`` is not a device a run can use (None when its form is fine)."""
    if DEVICE_NAME.fullmatch(name):
        return None
    return f"--device {name!r} is not a device; use auto, cpu, cuda or cuda:N (a GPU index)"


@dataclass(frozen=True, kw_only=True)
class TrainConfig(Config):
    """Optimisation, Noise2Noise, evaluation and numerics (the original trainer's flags in brackets)."""

    LABEL: ClassVar[str] = "train config"

    seed: int = 0
    """Seed of every random stream: init, epoch permutations, N2N partners [--seed]."""
    epochs: int = 200
    """Maximum number of epochs [--epochs]."""
    batch_size: int = field(default=600, metadata={"aliases": ("bs",)})
    """Spectra per optimiser step [--bs/--batch_size]."""
    lr: float = 3e-4
    """Peak learning rate after warm-up [--lr]."""
    lr_min: float = 3e-5
    """Floor of the cosine decay [--lr_min]."""
    warmup_epochs: float = 5.0
    """Linear warm-up length in epochs, from lr/10 (not 1e-6·lr: epoch 1 is not wasted) [--warmup_epochs]."""
    weight_decay: float = 1e-4
    """AdamW decay on weight matrices only (never norms, biases, A_log, D) [--weight_decay]."""
    grad_clip: float = 1.0
    """Global gradient-norm clip; 0 disables [--grad_clip]."""
    noise2noise: bool = True
    """Train on replicate targets instead of the input itself [--noise2noise]."""
    noise2noise_pairwise: bool = True
    """Target = another replicate of the group drawn per epoch; else its leave-one-out mean [--noise2noise_pairwise]."""
    signal_jitter: float = 0.0
    """Variance (reflectance²) of a smooth random deviation added to every training input *and*
    its target, drawn afresh each epoch from exp(−(i − j)²/2ℓ²) (the Wiener prior's smooth term):
    the network meets signals it has not memorised (a fold trains on only ~30 group means), the
    noise stays the real one. 0 disables [--signal_jitter]."""
    signal_jitter_length: float = 80.0
    """ℓ of that deviation, in grid samples [--signal_jitter_length]."""
    signal_jitter_relative: bool = False
    """The deviation is relative (multiplied by each spectrum's LOO mean, so dark spectra move less):
    ``signal_jitter`` is then a relative variance [--signal_jitter_relative]."""
    residual_transplant: float = 0.0
    """Share of the spectra of every batch replaced by a made pair: the input is the spectrum's group
    leave-one-out mean (plus the smooth deviation) plus the residual (spectrum − its LOO mean) of
    another spectrum of the split drawn at random, scaled by the ratio of the two LOO means; the
    target is that mean (plus deviation) exactly. The real noise meets signals it never came with,
    and the target carries no noise of its own. 0 disables [--residual_transplant]."""
    signal_mix: float = 0.0
    """With ``residual_transplant``: a made pair's signal mixes the group's LOO mean with that of a
    spectrum of the same treatment and angle (another sample, mostly), its weight uniform in
    [0, signal_mix]: signals between the samples seen. 0 disables [--signal_mix]."""
    select_sam_tie: float = 0.0
    """Validation SAM (degrees) within this of the lowest seen counts as a tie when choosing the
    checkpoint kept, broken by validation PSNR (a checkpoint kept so also resets the early-stopping
    patience); 0: the lowest SAM alone [--select_sam_tie]."""
    early_stop_patience: int = 21
    """Validations without an improvement larger than sam_tolerance before stopping [--early_stop_patience]."""
    sam_tolerance: float = 0.0
    """Improvement of validation SAM (degrees) that resets patience; the best is saved on any improvement."""
    val_every: int = 1
    """Validate every this many epochs [--val_every]."""
    ema: bool = True
    """Keep an exponential moving average of the weights and validate/deploy it [--ema]."""
    ema_decay: float = 0.999
    """EMA decay; warmed up as min(decay, (1+t)/(10+t)) so early epochs are not dominated by init [--ema_decay]."""
    amp: bool = False
    """Autocast on CUDA (no effect on CPU) [--amp]."""
    amp_dtype: str = field(default="bf16", metadata={"choices": ("bf16", "fp16")})
    """Autocast dtype: bf16 (no loss scaling needed) or fp16 [--amp_dtype]."""
    cudnn_benchmark: bool = False
    """torch.backends.cudnn.benchmark [--cudnn_benchmark]."""
    tta_reverse: bool = False
    """Accepted for runbook compatibility; not applied: the scan is causal and never saw reversed
    input [--tta_reverse]."""
    checkpoint_blocks: bool = False
    """Recompute each block's activations in the backward instead of keeping them (activation memory
    per spectrum of the recipe: see ``make bench``); the same results, so not part of the config hash
    [--checkpoint_blocks]."""
    deterministic: bool = False
    """Deterministic kernels (``torch.use_deterministic_algorithms``, cuDNN deterministic, cuBLAS
    workspace ``:4096:8``): two runs of the same config on the same machine give the same weights,
    except through kernels outside PyTorch's control (mamba-ssm's backward accumulates with
    atomics). Slower on a GPU; not part of the config hash [--deterministic]."""
    compile: bool = False
    """``torch.compile`` each block around the scan (the scan itself stays eager: its loops would
    unroll); opt-in until the GPU check shows where it wins. Same results within float tolerance;
    not part of the config hash [--compile]."""
    time_budget_s: float = 0.0
    """Stop after the epoch that crosses this wall-clock budget (0 = none); the best checkpoint
    stands [--time_budget_s]."""
    device: str = "auto"
    """auto (cuda if available), cpu, cuda or cuda:N [--device]."""

    def problems(self) -> list[str]:
        checks = [
            (self.epochs >= 1, "--epochs must be ≥ 1"),
            (self.batch_size >= 1, "--bs must be ≥ 1"),
            (self.lr > 0 and self.lr_min >= 0 and self.lr_min <= self.lr, "--lr must be > 0 and --lr_min in [0, lr]"),
            (self.warmup_epochs >= 0, "--warmup_epochs must be ≥ 0"),
            (self.weight_decay >= 0, "--weight_decay must be ≥ 0"),
            (self.grad_clip >= 0, "--grad_clip must be ≥ 0 (0 disables)"),
            (self.early_stop_patience >= 1, "--early_stop_patience must be ≥ 1"),
            (self.val_every >= 1, "--val_every must be ≥ 1"),
            (0.0 <= self.ema_decay < 1.0, "--ema_decay must be in [0, 1)"),
            (self.time_budget_s >= 0, "--time_budget_s must be ≥ 0"),
            (self.signal_jitter >= 0, "--signal_jitter must be ≥ 0 (0 disables)"),
            (self.signal_jitter_length > 0, "--signal_jitter_length must be > 0 (grid samples)"),
            (0.0 <= self.residual_transplant <= 1.0, "--residual_transplant must be in [0, 1] (0 disables)"),
            (0.0 <= self.signal_mix <= 1.0, "--signal_mix must be in [0, 1] (0 disables)"),
            (self.signal_mix == 0 or self.residual_transplant > 0, "--signal_mix needs --residual_transplant > 0"),
            (self.select_sam_tie >= 0, "--select_sam_tie must be ≥ 0 degrees (0: lowest SAM alone)"),
            (not self.noise2noise_pairwise or self.noise2noise, "--noise2noise_pairwise needs --noise2noise"),
            (0 <= self.seed < 2**63, "--seed must be an integer in [0, 2**63)"),
        ]
        problems = [message for ok, message in checks if not ok]
        device = device_name_problem(self.device)
        return problems + ([device] if device is not None else [])


def config_to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass config (nested allowed) as plain JSON-able dict."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: config_to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [config_to_dict(v) for v in obj]  # type: ignore[return-value]
    if isinstance(obj, dict):
        return {k: config_to_dict(v) for k, v in obj.items()}
    return obj


def config_hash(obj: Any, exclude: tuple[str, ...] = ()) -> str:
    """sha256 of the canonical JSON of a config (sorted keys), with top-level ``exclude`` keys dropped."""
    data = config_to_dict(obj)
    for key in exclude:
        data.pop(key, None)
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()



__all__ = ["TrainConfig", "config_to_dict", "config_hash"]
