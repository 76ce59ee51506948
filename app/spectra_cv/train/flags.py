"""The training flags, generated from the config fields, and a run's config built from them.

One table (``flags()``) serves ``spectra-cv train`` (one click option per flag, help from the
field's documentation), ``--set FLAG=VALUE`` of ``fold``/``cv``/``final``/``slurm``/``k8s``, and the
type conversion of both. Every field of ``ModelConfig``, ``ObjectiveConfig`` and ``TrainConfig`` is
a flag of the same name unless its metadata says ``flag=False``; runbook spellings are aliases in
the field's metadata (``--geometry_film`` for ``film``, ``--bs`` for ``batch_size``), and dashed
spellings (``--d-model``) work too. ``build_run_config`` applies given values to a preset and
reports every problem of the three configs at once.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from spectra_cv.configs import field_docs
from spectra_cv.errors import ConfigError
from spectra_cv.model.mamba_uv import ModelConfig
from spectra_cv.model.zoo import MODEL_ZOO
from spectra_cv.objective import ObjectiveConfig
from spectra_cv.train.config import TrainConfig
from spectra_cv.train.presets import RunConfig, preset

SECTIONS: dict[str, type] = {"model": ModelConfig, "objective": ObjectiveConfig, "train": TrainConfig}
"""Which config each flag sets, by the ``RunConfig`` attribute that holds it."""
ZOO_FIELDS = ("name", "d_model", "n_layers", "d_state", "d_conv", "expand")
"""What ``--model <zoo name>`` sets (given flags still override the sizes)."""

_KINDS: dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True, kw_only=True)
class Flag:
    """One training flag: the config field it sets, its type, and how it may be spelled."""

    name: str
    """The field's name, which is the flag's (``--d_model``)."""
    section: str
    kind: type
    choices: tuple[str, ...] | None
    aliases: tuple[str, ...]
    help: str

    @property
    def switch(self) -> bool:
        """An on/off flag: ``--x`` / ``--no_x`` on the command line, ``x=true|false`` with ``--set``."""
        return self.kind is bool

    @property
    def names(self) -> tuple[str, ...]:
        """Every accepted spelling without the dashes in front: underscores first, then dashed ones."""
        spelled = (self.name, *self.aliases)
        dashed = tuple(n.replace("_", "-") for n in spelled if "_" in n)
        return spelled + dashed

    def convert(self, raw: str, item: str) -> Any:
        """``raw`` (text of ``--set item``) as this flag's type; ConfigError naming the item."""
        text = raw.strip()
        if self.switch:
            low = text.lower()
            if low not in _TRUE | _FALSE:
                raise ConfigError(f"--set {item!r}: {self.name} is on/off; use {self.name}=true or {self.name}=false")
            return low in _TRUE
        if self.choices is not None and text not in self.choices:
            raise ConfigError(f"--set {item!r}: {self.name} must be one of {', '.join(self.choices)}")
        try:
            return self.kind(text)
        except ValueError as exc:
            raise ConfigError(f"--set {item!r}: {self.name} takes a {self.kind.__name__}; {exc}") from exc


def _help(doc: str, name: str) -> str:
    """A field's documentation as help text, without the flag names it repeats (``--x:``, ``[--x]``)."""
    text = re.sub(r"^--\w+(?: \(\w+\))?: ", "", doc)
    text = re.sub(r"\s*\[--[\w/-]+\]", "", text)
    text = text.replace("``", "")  # reST literals read as plain words on a terminal
    return text or f"Sets {name}."


@functools.cache
def flags() -> dict[str, Flag]:
    """Every training flag by name, in config order (model, objective, train)."""
    table: dict[str, Flag] = {}
    spellings: dict[str, str] = {}
    for section, cls in SECTIONS.items():
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            if f.metadata.get("flag", True) is False:
                continue
            flag = Flag(name=f.name, section=section, kind=_KINDS[str(f.type)],
                        choices=tuple(f.metadata["choices"]) if f.metadata.get("choices") else None,
                        aliases=tuple(f.metadata.get("aliases", ())), help=_help(docs.get(f.name, ""), f.name))
            for spelling in flag.names:
                if spelling in spellings:  # pragma: no cover - a wiring error caught by the tests
                    raise ConfigError(f"flag --{spelling} of {section}.{f.name} is already {spellings[spelling]}'s")
                spellings[spelling] = f"{section}.{f.name}"
            table[f.name] = flag
    return table


def lookup(key: str) -> Flag:
    """The flag spelled ``key`` (leading dashes, dashes for underscores and aliases allowed)."""
    wanted = key.strip().lstrip("-")
    for flag in flags().values():
        if wanted in flag.names:
            return flag
    known = sorted(n for f in flags().values() for n in (f.name, *f.aliases))
    close = difflib.get_close_matches(wanted.replace("-", "_"), known, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else "`spectra-cv train --help` lists them"
    raise ConfigError(f"unknown flag {wanted!r}; {hint}")


def parse_sets(items: Iterable[str]) -> dict[str, Any]:
    """``("d_model=32", "geometry_film=false")`` → ``{"d_model": 32, "film": False}``, typed by the table."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected FLAG=VALUE, e.g. --set d_model=32")
        try:
            flag = lookup(key)
        except ConfigError as exc:
            raise ConfigError(f"--set {item!r}: {exc}") from exc
        out[flag.name] = flag.convert(raw, item)
    return out


def build_run_config(preset_name: str, values: Mapping[str, Any] | None = None, *, model_name: str | None = None,
                     film_features: tuple[str, ...] = (), lambda_scale: str | None = None) -> RunConfig:
    """The preset with every given flag value applied (keys: flag names or aliases; None: not given).

    ``model_name`` takes a zoo model's sizes first; ``film_features`` replaces the preset's (they
    are dropped with ``film`` off); ``lambda_scale`` is ``mean1`` or ``original``. Pure: no files read.
    """
    base = preset(preset_name)
    changes: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    if model_name is not None and model_name != base.model.name:
        if model_name not in MODEL_ZOO:
            raise ConfigError(f"--model {model_name!r} is not in the zoo; choose one of {sorted(MODEL_ZOO)}")
        zoo = MODEL_ZOO[model_name]
        changes["model"].update({key: getattr(zoo, key) for key in ZOO_FIELDS})
    for key, value in (values or {}).items():
        if value is not None:
            flag = lookup(key)
            changes[flag.section][flag.name] = value
    if lambda_scale is not None:
        changes["objective"]["normalise_lambda_weights"] = lambda_scale == "mean1"
    features = tuple(film_features) if film_features else base.film_features
    if not changes["model"].get("film", base.model.film):
        features = ()
    changes["model"]["cond_dim"] = max(1, len(features))
    parts: dict[str, Any] = {}
    problems = []
    for section in SECTIONS:
        try:
            parts[section] = dataclasses.replace(getattr(base, section), **changes[section])
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError("; ".join(problems))
    return RunConfig(**parts, film_features=features, preset=preset_name)


__all__ = ["Flag", "SECTIONS", "flags", "lookup", "parse_sets", "build_run_config"]
