"""What the three configs (model, objective, trainer) share: one ``from_dict``, one validator, the docs.

Each config is a frozen dataclass deriving from ``Config``; each field is one training flag
``--<field>`` (``train.flags`` builds the flags from the fields). A field's documentation is the
string literal under it; its ``metadata`` may add

* ``choices`` — the allowed values of a ``str`` field (checked here, offered by the CLI);
* ``aliases`` — other flag spellings (the runbook's ``--geometry_film`` for ``film``, ``--bs``);
* ``flag=False`` — no flag (set by other means, e.g. ``cond_dim`` follows ``--film_features``).

Construction checks every field's type and choices and then the class's own ``problems()``, and
raises one ``ConfigError`` that lists every problem, not just the first.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import itertools
import re
import textwrap
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from spectra_cv.errors import ConfigError

T = TypeVar("T", bound="Config")

_TYPES: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,)}


class Config:
    """Base of the frozen config dataclasses: validation on construction, ``from_dict``/``to_dict``."""

    LABEL: ClassVar[str] = "config"
    """What errors call this config (``unknown model config keys …``)."""

    def problems(self) -> list[str]:
        """Everything wrong with the values beyond types and choices (one message each)."""
        return []

    def __post_init__(self) -> None:
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        """Every field as a plain value (what checkpoints and run records store)."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[T], values: Mapping[str, Any], source: str | None = None) -> T:
        """Build from ``to_dict()`` output; unknown keys, missing required keys and bad values are
        reported together, ``source`` (a file, a flag) first."""
        return from_dict(cls, values, source)


def from_dict(cls: type[T], values: Mapping[str, Any], source: str | None = None) -> T:
    """``cls(**values)`` with unknown or missing keys named (lists become tuples, as JSON gives them)."""
    where = f"{source}: " if source else ""
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    known = [f.name for f in fields]
    problems = []
    unknown = sorted(set(values) - set(known))
    if unknown:
        problems.append(f"unknown {cls.LABEL} keys {unknown}; known: {sorted(known)}")
    required = [f.name for f in fields if f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING and f.name not in values]
    if required:
        problems.append(f"missing {cls.LABEL} keys {required}")
    if problems:
        raise ConfigError(where + "; ".join(problems))
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(where + str(exc)) from exc


def validate(config: Config) -> None:
    """Raise one ``ConfigError`` listing every problem of ``config`` (types, choices, ``problems()``)."""
    problems = []
    for f in dataclasses.fields(config):  # type: ignore[arg-type]
        value = getattr(config, f.name)
        problem = _type_problem(f.name, value, str(f.type))
        if problem is None and f.metadata.get("choices") is not None and value not in f.metadata["choices"]:
            problem = f"--{f.name} must be one of {', '.join(f.metadata['choices'])}; got {value!r}"
        if problem is not None:
            problems.append(problem)
    if not problems:  # the class's own checks compare values: only once they have the right types
        problems = config.problems()
    if problems:
        head = f"{len(problems)} problems in the {config.LABEL}: " if len(problems) > 1 else ""
        raise ConfigError(head + "; ".join(problems))


def _type_problem(name: str, value: object, annotation: str) -> str | None:
    """A mistyped value (``d_model='128'``, ``residual=1``) named by its flag; None when it fits."""
    allowed = _TYPES.get(annotation)
    if allowed is None:
        return None
    if not isinstance(value, allowed) or (bool not in allowed and isinstance(value, bool)):
        return f"--{name} must be {annotation}; got {value!r} ({type(value).__name__})"
    return None


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Each field's documentation: the string literal under it in the class body, whitespace collapsed."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):  # no source (a frozen build): flags then go without help text
        return {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, after in itertools.pairwise(body):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) \
                and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) \
                and isinstance(after.value.value, str):
            docs[node.target.id] = re.sub(r"\s+", " ", after.value.value).strip()
    return docs


__all__ = ["Config", "from_dict", "validate", "field_docs", "difference"]


def difference(old: dict[str, Any] | None, new: dict[str, Any]) -> str:
    """``train.lr 0.001 → 0.002, model.d_model 32 → 16``: the first few settings that differ between two
    run configs as ``to_dict`` gives them (device and preset name aside: they do not change a result)."""
    if not isinstance(old, dict):
        return "the recorded config is missing"

    def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in d.items():
            if isinstance(value, dict):
                out.update(flat(value, f"{prefix}{key}."))
            else:
                out[f"{prefix}{key}"] = value
        return out

    a, b = flat(old), flat(new)
    keys = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k) and not k.endswith((".device", "preset"))]
    shown = [f"{k} {a.get(k, '(unset)')!r} → {b.get(k, '(unset)')!r}" for k in keys[:4]]
    more = f" and {len(keys) - 4} more" if len(keys) > 4 else ""
    return ", ".join(shown) + more if shown else "the config hash differs"
