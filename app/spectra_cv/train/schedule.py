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


def adamw(model: nn.Module, lr: float, weight_decay: float, fused: bool = False) -> torch.optim.AdamW:
    """AdamW with two groups: decayed weight matrices, undecayed norms/biases/A_log/D.

    ``fused``: one kernel for the whole update (CUDA); otherwise PyTorch's default implementation.
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (decay if decays(name, param) else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8, **({"fused": True} if fused else {}))


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
        self._pairs: tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]] | None = None
        self._source: int | None = None

    def _tensors(self, model: nn.Module) -> tuple[list[torch.Tensor], ...]:
        """(averaged floats, model floats, other targets, other sources), built once per model."""
        if self._pairs is None or self._source != id(model):
            ema_state = self.module.state_dict(keep_vars=True)
            floats_t, floats_s, other_t, other_s = [], [], [], []
            for key, value in model.state_dict(keep_vars=True).items():
                target = ema_state[key].data
                if target.dtype.is_floating_point:
                    floats_t.append(target)
                    floats_s.append(value.data)
                else:
                    other_t.append(target)
                    other_s.append(value.data)
            self._pairs, self._source = (floats_t, floats_s, other_t, other_s), id(model)
        return self._pairs

    def current_decay(self) -> float:
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """avg ← d·avg + (1 − d)·weights for every float tensor (a few for-each kernels, not one per
        tensor); integer and bool buffers are copied."""
        d = self.current_decay()
        floats_t, floats_s, other_t, other_s = self._tensors(model)
        if floats_t:
            torch._foreach_mul_(floats_t, d)
            torch._foreach_add_(floats_t, floats_s, alpha=1.0 - d)
        for target, value in zip(other_t, other_s, strict=True):
            target.copy_(value)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "module": self.module.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.decay = float(state["decay"])
        self.updates = int(state["updates"])
        self.module.load_state_dict(state["module"], strict=True)
        self._pairs = None
