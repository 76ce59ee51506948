"""Pure schedule and optimiser helpers: learning rate per step, AdamW groups, EMA."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

NO_DECAY_SUFFIXES = ("bias", "A_log", ".D")


def lr_at(step: int, *, total_steps: int, warmup_steps: int, lr: float, lr_min: float) -> float:
    """Learning rate of optimiser step ``step`` (0-based): linear warm-up from lr/10, then cosine to lr_min."""
    if warmup_steps > 0 and step < warmup_steps:
        return lr * (0.1 + 0.9 * step / warmup_steps)
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return lr_min + 0.5 * (lr - lr_min) * (1.0 + math.cos(math.pi * progress))


def decays(name: str, param: nn.Parameter) -> bool:
    """Whether AdamW decays this parameter: weight matrices/kernels only (not norms, biases, A_log, D)."""
    if param.ndim < 2:
        return False
    return not (name.endswith(NO_DECAY_SUFFIXES) or name == "D" or name.endswith("A_log"))


def adamw(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with two groups: decayed weight matrices, undecayed norms/biases/A_log/D."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (decay if decays(name, param) else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8)


class Ema:
    """Exponential moving average of a model's parameters and buffers, with warm-up.

    The decay at update t is min(decay, (1 + t) / (10 + t)): early averages follow the weights
    closely instead of being pinned to the initialisation for ~1/(1−decay) steps.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    def current_decay(self) -> float:
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        ema_state = self.module.state_dict()
        for key, value in model.state_dict().items():
            target = ema_state[key]
            if target.dtype.is_floating_point:
                target.mul_(d).add_(value.detach(), alpha=1.0 - d)
            else:
                target.copy_(value)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "module": self.module.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.decay = float(state["decay"])
        self.updates = int(state["updates"])
        self.module.load_state_dict(state["module"], strict=True)
