"""Checkpoints: rebuilt from the file alone, strict loads, EMA preference, prefixes, mamba_ssm parity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.optim.swa_utils import AveragedModel

from spectra_cv.errors import ConfigError
from spectra_cv.model import backends
from spectra_cv.model.checkpoint import (
    load_model, model_state_for_save, read_checkpoint, save_checkpoint,
)
from spectra_cv.model.mamba_uv import MambaUV
from spectra_cv.model.zoo import build_model, count_parameters

L = 64
TINY = dict(d_model=16, n_layers=2, d_state=4, sequence_length=L, scan_backend="torch",
            film=True, cond_dim=3, film_hidden_dim=8, residual=True, out_activation="clamp")


def _trained_like(seed: int = 0, **overrides) -> MambaUV:
    """A tiny model whose every weight is perturbed (so nothing equals its init)."""
    torch.manual_seed(seed)
    model = build_model("mamba_tiny_uv", **{**TINY, **overrides})
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def _inputs(batch: int = 2, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 3, L, generator=g)
    return x, torch.randn(batch, 3, generator=g)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_roundtrip_rebuilds_an_identical_model_from_the_file_alone(tmp_path):
    model = _trained_like()
    extra = {"epoch": 7, "sam_deg": 0.41, "config": {"lr": 3e-4, "folds": [1, 2]},
             "provenance": {"torch": torch.__version__, "seed": 0, "data_fingerprint": "ab12"}}
    path = save_checkpoint(tmp_path / "ckpt" / "mamba_tiny_uv_best.pt",
                           model_state_for_save(model, extra=extra))
    assert path.is_file() and not list(path.parent.glob(".*.tmp"))
    loaded, ckpt = load_model(path)
    assert loaded.config == model.config and not loaded.training
    assert _same_weights(loaded, model)
    x, cond = _inputs()
    with torch.no_grad():
        assert torch.equal(loaded(x, cond), model(x, cond))
    assert ckpt["n_parameters"] == count_parameters(model)
    assert ckpt["arch"].startswith("MambaUV D16x2 d_state4")
    assert ckpt["epoch"] == 7 and ckpt["provenance"]["data_fingerprint"] == "ab12"
    assert ckpt["ema_state"] is None
    # plain torch.load with weights_only=True reads it too (no pickled classes inside)
    assert set(torch.load(path, weights_only=True)["model_state"]) == set(model.state_dict())


def test_ema_weights_are_preferred_and_wrapper_prefixes_are_stripped():
    model = _trained_like(seed=0)
    ema = AveragedModel(model)  # state keys "module.*" plus "n_averaged"
    with torch.no_grad():
        for p in ema.module.parameters():
            p.mul_(0.5)
    ckpt = model_state_for_save(model, ema_model=ema)
    assert "n_averaged" not in ckpt["ema_state"]
    assert set(ckpt["ema_state"]) == set(ckpt["model_state"])
    loaded, _ = load_model(ckpt)
    assert _same_weights(loaded, ema.module)
    raw, _ = load_model(ckpt, prefer_ema=False)
    assert _same_weights(raw, model)


def test_compiled_or_ddp_prefixes_in_a_stored_state_are_accepted():
    model = _trained_like()
    ckpt = model_state_for_save(model)
    ckpt["model_state"] = {f"module._orig_mod.{k}": v for k, v in ckpt["model_state"].items()}
    loaded, _ = load_model(ckpt)
    assert _same_weights(loaded, model)


def test_strict_load_names_missing_unexpected_and_misshaped_keys():
    ckpt = model_state_for_save(_trained_like())
    state = ckpt["model_state"]
    missing = dict(ckpt, model_state={k: v for k, v in state.items() if k != "blocks.1.mixer.D"})
    with pytest.raises(ConfigError, match=r"missing: blocks\.1\.mixer\.D"):
        load_model(missing)
    extra = dict(ckpt, model_state={**state, "blocks.2.norm.weight": torch.ones(16)})
    with pytest.raises(ConfigError, match=r"unexpected: blocks\.2\.norm\.weight"):
        load_model(extra)
    config = dict(ckpt["model_config"], d_state=8)  # weights no longer fit the config
    with pytest.raises(ConfigError, match=r"shape: blocks\.0\.mixer\.A_log"):
        load_model(dict(ckpt, model_config=config))


def test_foreign_or_broken_checkpoints_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_model(tmp_path / "nope.pt")
    original = {"model_state": {}, "ema_state": None, "epoch": 3, "config": {"d_model": 384}}
    with pytest.raises(ConfigError, match="not written by spectra-cv"):
        load_model(original)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="cannot be read"):
        read_checkpoint(garbage)
    ckpt = model_state_for_save(_trained_like())
    changed = tmp_path / "changed.pt"  # bytes changed inside a tensor: torch.load would read other weights
    save_checkpoint(changed, ckpt)
    blob = bytearray(changed.read_bytes())
    at = blob.index(b"archive/data/0") + 200
    blob[at:at + 8] = bytes(8)
    changed.write_bytes(bytes(blob))
    with pytest.raises(ConfigError, match=r"changed.pt is damaged \(member .* fails its CRC-32 check\)"):
        read_checkpoint(changed)
    with pytest.raises(ConfigError, match="unknown model config keys"):
        load_model(dict(ckpt, model_config={**ckpt["model_config"], "heads": 4}))


def test_extra_must_be_plain_and_must_not_shadow_reserved_keys():
    model = _trained_like()
    with pytest.raises(ConfigError, match="PosixPath|WindowsPath"):
        model_state_for_save(model, extra={"provenance": {"data_root": Path("/data")}})
    with pytest.raises(ConfigError, match="int64"):
        model_state_for_save(model, extra={"seed": np.int64(3)})
    with pytest.raises(ConfigError, match="reserved"):
        model_state_for_save(model, extra={"model_state": {}})
    # lossless conversions of str/float subclasses, so weights_only loading keeps working
    ckpt = model_state_for_save(model, extra={"torch": torch.__version__, "x": np.float64(0.5)})
    assert type(ckpt["torch"]) is str and type(ckpt["x"]) is float and ckpt["x"] == 0.5


def test_scan_backend_can_be_overridden_on_load():
    loaded, _ = load_model(model_state_for_save(_trained_like()), scan_backend="ref")
    assert loaded.config.scan_backend == "ref"
    assert all(b.mixer.backend == "ref" for b in loaded.blocks)


def _mamba_ssm_ready() -> bool:
    return torch.cuda.is_available() and backends.mamba_ssm_available()


@pytest.mark.gpu
@pytest.mark.skipif(not _mamba_ssm_ready(), reason="needs CUDA and mamba_ssm")
def test_checkpoint_loads_into_mamba_ssm_mixers_and_agrees(tmp_path):
    """Our checkpoint → a model whose mixers are mamba_ssm.Mamba, and back; outputs agree."""
    reference_mixer = backends.mamba_ssm_mixer_class()
    model = _trained_like(d_model=32, scan_backend="torch").cuda()
    path = save_checkpoint(tmp_path / "m.pt", model_state_for_save(model))
    ours, _ = load_model(path, map_location="cuda")
    theirs, _ = load_model(path, map_location="cuda")
    cfg = theirs.config
    for block in theirs.blocks:
        mixer = reference_mixer(cfg.d_model, d_state=cfg.d_state, d_conv=cfg.d_conv,
                                expand=cfg.expand, use_fast_path=False).cuda()
        mixer.load_state_dict(block.mixer.state_dict(), strict=True)
        block.mixer = mixer
    x, cond = (t.cuda() for t in _inputs(batch=4))
    with torch.no_grad():
        y_theirs = theirs(x, cond)
        for backend in ("torch", "cuda"):
            ours.set_scan_backend(backend)
            torch.testing.assert_close(ours(x, cond), y_theirs, rtol=1e-4, atol=1e-5)
    # and back: the mamba_ssm-backed model's state dict loads strictly into ours
    back, _ = load_model(dict(model_state_for_save(model), model_state=theirs.state_dict()))
    assert _same_weights(back, model.cpu())
