"""Checkpoint (de)serialisation: every checkpoint carries its ModelConfig and is rebuilt from it alone.

Layout of the dict (``torch.save``'d; loadable with ``weights_only=True``)::

    format          "spectra-cv/mamba_uv"
    format_version  1
    model_config    ModelConfig.to_dict()
    arch            one-line description, e.g. "MambaUV D384x8 d_state16 ... FiLM 8->64"
    n_parameters    int
    model_state     the raw model's state_dict (no "module."/"_orig_mod." prefixes), CPU tensors
    ema_state       the EMA weights under the same keys, or None
    <extra keys>    whatever the caller passes (epoch, sam_deg, config, provenance, ...)

``model_state``/``ema_state`` keep the original Track H key names, so code reading those finds
them. ``load_model`` prefers ``ema_state`` when present and loads strictly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from spectra_cv.errors import ConfigError
from spectra_cv.io import atomic_write, zip_damage
from spectra_cv.log import get_logger
from spectra_cv.model.mamba_uv import MambaUV, ModelConfig
from spectra_cv.model.zoo import count_parameters

FORMAT = "spectra-cv/mamba_uv"
FORMAT_VERSION = 1
RESERVED_KEYS = ("format", "format_version", "model_config", "arch", "n_parameters",
                 "model_state", "ema_state")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_DROP_KEYS = ("n_averaged",)  # torch.optim.swa_utils.AveragedModel's counter
_log = get_logger("model.checkpoint")


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside DDP/DataParallel (``.module``), ``torch.compile`` (``._orig_mod``) or
    ``AveragedModel`` (``.module``) wrappers, however deeply nested."""
    while True:
        inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            inner = getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def clean_state_dict(state: Mapping[str, Any]) -> dict[str, Any]:
    """Strip ``module.``/``_orig_mod.`` prefixes (repeatedly) and drop ``n_averaged``."""
    out: dict[str, Any] = {}
    for key, value in state.items():
        stripped = True
        while stripped:
            stripped = False
            for prefix in _WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, stripped = key[len(prefix):], True
        if key not in _DROP_KEYS:
            out[key] = value
    return out


def describe_arch(cfg: ModelConfig) -> str:
    """One-line architecture summary stored beside the weights."""
    film = f"FiLM {cfg.cond_dim}->{cfg.film_hidden_dim}" if cfg.film else "no FiLM"
    head = "residual" if cfg.residual else "direct"
    if cfg.bidirectional:
        head = f"bidirectional {head}"
    return (
        f"MambaUV D{cfg.d_model}x{cfg.n_layers} d_state{cfg.d_state} d_conv{cfg.d_conv} "
        f"expand{cfg.expand} L{cfg.sequence_length} in{cfg.in_channels} {film} "
        f"{head}/{cfg.out_activation}"
    )


def _plain(value: Any, where: str) -> Any:
    """A copy of ``value`` that ``torch.load(weights_only=True)`` reads back, or ConfigError.

    str/int/float subclasses (``torch.__version__``, ``numpy.float64``) become the base type.
    """
    if value is None or type(value) in (bool, int, float, str) or isinstance(value, torch.Tensor):
        return value
    for base in (str, float, int):
        if isinstance(value, base) and not isinstance(value, bool):
            return base(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(item, f"{where}[{i}]") for i, item in enumerate(value))
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if type(key) not in (str, int):
                raise ConfigError(f"checkpoint extra {where}: key {key!r} must be str or int")
            out[key] = _plain(item, f"{where}[{key!r}]")
        return out
    raise ConfigError(
        f"checkpoint extra {where} is a {type(value).__name__}; store only str/int/float/bool/None, "
        "lists, dicts and tensors (convert paths with str(), numpy values with .item()/.tolist())"
    )


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True)
            for k, v in clean_state_dict(module.state_dict()).items()}


def model_state_for_save(model: nn.Module, ema_model: nn.Module | None = None,
                         extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The checkpoint dict of ``model`` (a MambaUV, possibly wrapped) and its EMA copy.

    ``extra`` entries (epoch, metrics, run config, provenance: library versions, seed, data
    fingerprint, ...) are stored at top level; they must be plain values (str/int/float/bool/None,
    lists, dicts, tensors) and must not reuse a reserved key. Weights are copied to CPU.
    """
    core = unwrap_model(model)
    if not isinstance(core, MambaUV):
        raise ConfigError(f"model_state_for_save needs a MambaUV; got {type(core).__name__}")
    state = _cpu_state(core)
    ema_state = None
    if ema_model is not None:
        ema_state = _cpu_state(ema_model)
        if set(ema_state) != set(state):
            diff = sorted(set(ema_state) ^ set(state))[:5]
            raise ConfigError(f"EMA model keys differ from the model's (e.g. {diff}); "
                              "pass the EMA copy of this same model")
    ckpt: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_config": core.config.to_dict(),
        "arch": describe_arch(core.config),
        "n_parameters": count_parameters(core),
        "model_state": state,
        "ema_state": ema_state,
    }
    for key, value in (extra or {}).items():
        if key in RESERVED_KEYS:
            raise ConfigError(f"checkpoint extra key {key!r} is reserved ({', '.join(RESERVED_KEYS)})")
        ckpt[key] = _plain(value, repr(key))
    return ckpt


def save_checkpoint(path: str | os.PathLike[str], ckpt: Mapping[str, Any]) -> Path:
    """``torch.save`` the checkpoint dict to ``path`` atomically (temp file, fsync, rename)."""
    return atomic_write(path, lambda handle: torch.save(dict(ckpt), handle))


LFS_POINTER = b"version https://git-lfs"
"""How a Git LFS pointer file (what a clone without LFS holds in a weight's place) begins."""


def read_checkpoint(path: str | os.PathLike[str],
                    map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict with ``weights_only=True``; clear errors for missing/foreign files."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"checkpoint {p} does not exist; check --checkpoint (or train the fold first)")
    try:
        with open(p, "rb") as handle:
            head = handle.read(len(LFS_POINTER))
    except OSError as exc:
        raise ConfigError(f"checkpoint {p} cannot be read ({exc.strerror or exc}); check its permissions") from exc
    if head == LFS_POINTER:
        raise ConfigError(f"checkpoint {p} is a Git LFS pointer, not the checkpoint: fetch it (`git lfs pull`) "
                          "or point --checkpoint at the real file")
    damage = zip_damage(p)
    if damage is not None:
        raise ConfigError(f"checkpoint {p} is damaged ({damage}): its bytes changed since it was written. "
                          "Restore it from a copy, or retrain it")
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - UnpicklingError, zip and decoding errors of a file that is not one
        first = (str(exc).splitlines()[0] if str(exc) else type(exc).__name__)[:160]
        raise ConfigError(f"checkpoint {p} cannot be read as a spectra-cv checkpoint ({type(exc).__name__}: "
                          f"{first}); it is corrupt, truncated or another kind of file") from exc
    if not isinstance(ckpt, dict):
        raise ConfigError(f"checkpoint {p} holds a {type(ckpt).__name__}, not a checkpoint dict")
    return ckpt


def _strict_load(model: MambaUV, state: Mapping[str, Any], source: str) -> None:
    """load_state_dict(strict=True), with missing/unexpected/mis-shaped keys listed by name."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", shapes)):
            if items:
                more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
                parts.append(f"{label}: {', '.join(items[:5])}{more}")
        raise ConfigError(
            f"{source}: weights do not match the stored model config ({'; '.join(parts)}); "
            "the file is corrupt or was written by other code"
        )
    model.load_state_dict(state, strict=True)


def load_model(path_or_dict: str | os.PathLike[str] | Mapping[str, Any],
               map_location: str | torch.device | None = "cpu", *, prefer_ema: bool = True,
               scan_backend: str | None = None) -> tuple[MambaUV, dict[str, Any]]:
    """Rebuild a MambaUV from a checkpoint's stored config alone and load its weights strictly.

    Loads ``ema_state`` when present and ``prefer_ema``, else ``model_state``. ``scan_backend``
    replaces the stored backend (e.g. "torch" to run a GPU-trained model on CPU). The model is
    returned in eval mode on ``map_location`` (when that is a device) with the checkpoint dict.
    """
    if isinstance(path_or_dict, Mapping):
        ckpt, source = dict(path_or_dict), "checkpoint dict"
    else:
        ckpt, source = read_checkpoint(path_or_dict, map_location), f"checkpoint {path_or_dict}"
    if "model_config" not in ckpt or "model_state" not in ckpt:
        raise ConfigError(
            f"{source} has no 'model_config'/'model_state' (keys: {sorted(ckpt)[:8]}): it was not "
            "written by spectra-cv, so the model cannot be rebuilt from it"
        )
    if not isinstance(ckpt["model_config"], Mapping) or not isinstance(ckpt["model_state"], Mapping):
        raise ConfigError(f"{source}: its 'model_config'/'model_state' are not tables; the file was not written "
                          "by spectra-cv or is damaged")
    values = dict(ckpt["model_config"])
    if scan_backend is not None:
        values["scan_backend"] = scan_backend
    cfg = ModelConfig.from_dict(values, source=source)
    model = MambaUV(cfg)
    use_ema = prefer_ema and ckpt.get("ema_state") is not None
    state = clean_state_dict(ckpt["ema_state"] if use_ema else ckpt["model_state"])
    _strict_load(model, state, source)
    _log.debug("loaded %s (%s weights): %s", source, "EMA" if use_ema else "raw", describe_arch(cfg))
    if isinstance(map_location, (str, torch.device)):
        model.to(map_location)
    return model.eval(), ckpt
