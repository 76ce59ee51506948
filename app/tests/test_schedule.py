import math

import torch
from torch import nn

from spectra_cv.train.schedule import Ema, adamw, decays, lr_at


def test_lr_warmup_then_cosine_to_floor():
    kw = dict(total_steps=110, warmup_steps=10, lr=1e-3, lr_min=1e-5)
    assert math.isclose(lr_at(0, **kw), 1e-4)
    assert lr_at(5, **kw) < lr_at(9, **kw) < 1e-3
    assert math.isclose(lr_at(10, **kw), 1e-3)
    assert math.isclose(lr_at(60, **kw), 1e-5 + 0.5 * (1e-3 - 1e-5))
    assert math.isclose(lr_at(110, **kw), 1e-5)
    assert math.isclose(lr_at(500, **kw), 1e-5)


class _Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 4)
        self.norm = nn.LayerNorm(4)
        self.A_log = nn.Parameter(torch.zeros(4, 2))
        self.D = nn.Parameter(torch.ones(4))


def test_adamw_excludes_norms_biases_alog_d():
    model = _Toy()
    names = {n for n, p in model.named_parameters() if decays(n, p)}
    assert names == {"lin.weight"}
    opt = adamw(model, 1e-3, 0.1)
    assert [len(g["params"]) for g in opt.param_groups] == [1, 5]
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]


def test_ema_warmup_and_average():
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = Ema(model, decay=0.99)
    assert math.isclose(ema.current_decay(), 0.1)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)  # d = 0.1 → 0.9
    assert math.isclose(ema.module.weight.item(), 0.9, rel_tol=1e-6)
    restored = Ema(model, decay=0.5)
    restored.load_state_dict(ema.state_dict())
    assert restored.updates == 1 and restored.decay == 0.99
    assert math.isclose(restored.module.weight.item(), 0.9, rel_tol=1e-6)
