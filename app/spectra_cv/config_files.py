"""Run config files: a TOML file a researcher keeps beside a paper, read by ``--config``.

    preset = "cpu_quick"          # the starting settings
    film_features = [...]         # optional: the conditioning features, in order
    [model]                       # any `spectra-cv train` flag of the model, by name
    d_model = 32
    [objective]                   # … of the objective
    [train]                       # … of the trainer
    epochs = 30
    [run]                         # where the data are and how the folds run (all optional)
    data_root = "data/spectra_for_fold"   # relative paths: from the file's folder

A key left out keeps the preset's value. What is given on the command line wins: the run options
(``--epochs``, ``--lr``…) and ``--set FLAG=VALUE`` override the file's settings; a ``[run]`` value is
used when neither its option nor its environment variable is given. The shipped presets are such
files, every setting written out (``preset_text``; ``spectra-cv config show --preset cpu_quick``
prints one to copy). The config hash, not the file, stays the identity of a run: a file that
spells out a preset's values gives the preset's hash.

Hand-written over a library: reading is ``tomllib`` (standard library); writing needs only flat
``key = value`` lines of numbers, booleans, strings and string lists, which JSON spells as TOML does.
"""

from __future__ import annotations

import difflib
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spectra_cv.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

SETTING_SECTIONS = ("model", "objective", "train")
"""The sections of training flags, as ``RunConfig`` names its parts."""
RUN_KEYS = ("data_root", "metadata_dir", "run_root", "fold_config", "clean_manifest", "device",
            "infer_batch_size", "tracking", "tracking_uri")
"""What ``[run]`` may hold: the run options that are not settings (the first five are paths)."""
PATH_KEYS = frozenset(RUN_KEYS[:5])
TOP_KEYS = ("preset", "film_features", *SETTING_SECTIONS, "run")


@dataclass(frozen=True)
class ConfigFile:
    """A parsed config file: its preset, its settings by flag name, its ``[run]`` values."""

    path: Path
    preset: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    """Flag name → value, every section merged (each key checked against its section)."""
    film_features: tuple[str, ...] | None = None
    run: dict[str, Any] = field(default_factory=dict)
    """``RUN_KEYS`` → value; paths resolved against the file's folder."""


def _did_you_mean(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def read_config_file(path: str | Path) -> ConfigFile:
    """Parse and check ``path``: unknown sections or keys (with a "did you mean"), a key in the wrong
    section and values of the wrong kind are one ``ConfigError`` naming the file and every problem."""
    from spectra_cv.train.flags import flags  # torch: not for `--help`

    where = Path(path)
    try:
        raw = tomllib.loads(where.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read the config file ({exc.strerror or exc})") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: not a TOML config file ({exc})") from exc
    table = flags()
    problems = [f"unknown key {k!r}{_did_you_mean(k, list(TOP_KEYS))}" for k in raw if k not in TOP_KEYS]
    settings: dict[str, Any] = {}
    for section in SETTING_SECTIONS:
        values = raw.get(section, {})
        if not isinstance(values, dict):
            problems.append(f"[{section}] must be a table of FLAG = VALUE")
            continue
        for key, value in values.items():
            flag = table.get(key)
            if flag is None:
                problems.append(f"[{section}] {key}: no such setting{_did_you_mean(key, list(table))}")
            elif flag.section != section:
                problems.append(f"[{section}] {key}: a setting of [{flag.section}]; move it there")
            elif not _kind_ok(value, flag.kind):
                problems.append(f"[{section}] {key} = {value!r}: expected {flag.kind.__name__}")
            else:
                settings[key] = float(value) if flag.kind is float else value
    run = _run_values(raw.get("run", {}), where, problems)
    preset = raw.get("preset")
    if preset is not None and not isinstance(preset, str):
        problems.append(f"preset = {preset!r}: expected a preset's name")
    features = raw.get("film_features")
    if features is not None and not (isinstance(features, list) and all(isinstance(f, str) for f in features)):
        problems.append("film_features: expected a list of feature names")
    if problems:
        raise ConfigError(f"{where}: " + "; ".join(problems))
    return ConfigFile(path=where, preset=preset, settings=settings,
                      film_features=tuple(features) if features is not None else None, run=run)


def _kind_ok(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind) and not isinstance(value, bool)


def _run_values(values: Any, where: Path, problems: list[str]) -> dict[str, Any]:
    if not isinstance(values, dict):
        problems.append("[run] must be a table")
        return {}
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in RUN_KEYS:
            problems.append(f"[run] {key}: no such run option{_did_you_mean(key, list(RUN_KEYS))}")
        elif key == "infer_batch_size" and not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            problems.append(f"[run] infer_batch_size = {value!r}: expected a whole number ≥ 1")
        elif key != "infer_batch_size" and not isinstance(value, str):
            problems.append(f"[run] {key} = {value!r}: expected a string")
        else:
            out[key] = (where.parent / value) if key in PATH_KEYS else value
    return out


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return json.dumps(list(value))
    if isinstance(value, float):
        return repr(value)
    return json.dumps(value) if isinstance(value, str) else str(value)


def config_text(config: Any, sources: Mapping[str, str] | None = None, header: str = "") -> str:
    """``config`` (a ``RunConfig``) as a config file: every flag's value under its section, the flag's
    help as a comment above it, and (``sources``: flag name → where its value came from) a comment
    after each value. Reading the text back gives the same config."""
    from spectra_cv.train.flags import flags

    sources = sources or {}
    lines = [*(f"# {line}".rstrip() for line in header.splitlines()), f'preset = "{config.preset}"',
             f"film_features = {toml_value(config.film_features)}"]
    by_section: dict[str, list[str]] = {s: [] for s in SETTING_SECTIONS}
    for name, flag in flags().items():
        value = getattr(getattr(config, flag.section), name)
        if value is None:
            continue  # not set (TOML has no null): the preset's None stays
        note = f"  # {sources[name]}" if name in sources else ""
        by_section[flag.section] += [f"# {flag.help.splitlines()[0][:110]}" if flag.help else "",
                                     f"{name} = {toml_value(value)}{note}"]
    for section, body in by_section.items():
        lines += ["", f"[{section}]", *(line for line in body if line)]
    return "\n".join(lines) + "\n"


def preset_text(name: str) -> str:
    """The shipped config file of preset ``name`` (``presets/<name>.toml`` holds exactly this)."""
    from spectra_cv.train.presets import preset

    return config_text(preset(name), header=(
        f"spectra-cv run config: the {name} preset, every setting written out.\n"
        "Copy it, edit it, run `spectra-cv cv --config my.toml` (or fold, slurm submit). A key left out keeps\n"
        "the preset's value; --epochs, --lr … and --set FLAG=VALUE on the command line override this file.\n"
        "Optional [run] table: data_root, metadata_dir, run_root, fold_config, clean_manifest (paths relative\n"
        "to this file), device, infer_batch_size, tracking, tracking_uri."))


DEFAULT_PRESET = "recipe"


def resolve_settings(preset: str | None, config_file: str | Path | None, sets: Mapping[str, Any] | None = None,
                     options: Mapping[str, tuple[Any, str]] | None = None,
                     ) -> tuple[str, dict[str, tuple[Any, str]], tuple[str, ...]]:
    """The one precedence rule, for the CLI and the Python API: the preset (given, else the file's, else
    ``DEFAULT_PRESET``), then the file's settings, then ``sets`` (``--set``: flag name → value), then
    ``options`` (flag name → (value, the option that gave it); None values are not given). Returns
    (preset, flag name → (value, where it came from), film features); ``build_run_config`` takes them."""
    file = read_config_file(config_file) if config_file is not None else None
    name = preset or (file.preset if file is not None else None) or DEFAULT_PRESET
    values: dict[str, tuple[Any, str]] = {}
    if file is not None:
        values.update({k: (v, str(file.path)) for k, v in file.settings.items()})
    values.update({k: (v, "--set") for k, v in (sets or {}).items()})
    values.update({k: (v, where) for k, (v, where) in (options or {}).items() if v is not None})
    features = file.film_features if file is not None and file.film_features is not None else ()
    return name, values, tuple(features)


PRESET_DIR = Path(__file__).resolve().parent / "presets"
"""The shipped preset files (package data)."""
