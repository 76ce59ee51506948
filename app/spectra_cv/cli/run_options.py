"""Options shared by ``fold``, ``cv`` and ``final``: where the data are, and the run's config.

The config is a preset (``--preset``) with the runbook orchestrator's overrides (``--batch-size``,
``--epochs``, ``--patience``, ``--lr``, ``--lr-min``) and ``--set FLAG=VALUE`` for any flag of
``spectra-cv train`` (``--set d_model=32 --set prior_rank=8``). ``cv`` forwards the same options
to every fold, so all folds share one config hash.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from spectra_cv import paths as run_paths
from spectra_cv.cli.options import DIR, FILE, tracking_backend, tracking_option, tracking_uri_option
from spectra_cv.tracking import require as require_tracking
from spectra_cv.train.config import device_name_problem


@dataclass(frozen=True)
class RunOptions:
    """The parsed shared options (``forward()`` gives them back as arguments for a child ``fold``)."""

    preset: str | None
    """``--preset`` as given (None: the config file's, else recipe)."""
    batch_size: int | None
    epochs: int | None
    patience: int | None
    lr: float | None
    lr_min: float | None
    seed: int | None
    time_budget_s: float | None
    sets: tuple[str, ...]
    data_root: Path
    metadata_dir: Path
    run_root: Path
    fold_config: Path | None
    device: str
    infer_batch_size: int
    clean_manifest: Path | None
    tracking: str | None = None
    config_file: Path | None = None
    tracking_uri: str | None = None

    def config(self) -> Any:
        """The RunConfig these options describe: the preset, then the config file's settings, then
        ``--set``, then the run options given (ConfigError on a bad file or ``--set``)."""
        from spectra_cv.train.flags import build_run_config  # torch: not for `--help`

        preset, values, features = self.resolved()
        return build_run_config(preset, {k: v for k, (v, _) in values.items()}, film_features=features)

    def resolved(self) -> tuple[str, dict[str, tuple[Any, str]], tuple[str, ...]]:
        """(preset, flag name → (value, where it came from), film features) before building the config."""
        from spectra_cv.config_files import resolve_settings
        from spectra_cv.train.flags import parse_sets

        options = {"batch_size": (self.batch_size, "--batch-size"), "epochs": (self.epochs, "--epochs"),
                   "early_stop_patience": (self.patience, "--patience"), "lr": (self.lr, "--lr"),
                   "lr_min": (self.lr_min, "--lr-min"), "seed": (self.seed, "--seed"),
                   "time_budget_s": (self.time_budget_s, "--time-budget-s")}
        return resolve_settings(self.preset, self.config_file, parse_sets(self.sets), options)

    def paths(self) -> run_paths.RunPaths:
        return run_paths.RunPaths(root=self.run_root)

    def forward(self) -> list[str]:
        """Arguments that make a child ``spectra-cv fold`` use the same data and config."""
        args = ["--preset", self.preset] if self.preset is not None else []
        args += ["--data-root", str(self.data_root), "--metadata-dir", str(self.metadata_dir),
                 "--run-root", str(self.run_root), "--device", self.device,
                 "--infer-batch-size", str(self.infer_batch_size)]
        if self.config_file is not None:
            args += ["--config", str(self.config_file.absolute())]
        for flag, value in (("--batch-size", self.batch_size), ("--epochs", self.epochs),
                            ("--patience", self.patience), ("--lr", self.lr), ("--lr-min", self.lr_min),
                            ("--seed", self.seed), ("--time-budget-s", self.time_budget_s),
                            ("--fold-config", self.fold_config), ("--clean-manifest", self.clean_manifest),
                            ("--tracking", self.tracking), ("--tracking-uri", self.tracking_uri)):
            if value is not None:
                args += [flag, str(value)]
        for item in self.sets:
            args += ["--set", item]
        return args


def _check_run_root(root: Path) -> None:
    """A run root that does not exist is created only when its parent does: one new folder is a new
    run, a missing chain of them a mistyped path (nothing is created then)."""
    if root.exists() and not root.is_dir():
        raise click.BadParameter(f"{root} is a file, not a folder", param_hint="--run-root")
    parent = root.absolute().parent
    if not root.exists() and not parent.is_dir():
        raise click.BadParameter(f"{root}: neither it nor its parent {parent} exists (a typo?); nothing was created. "
                                 f"Fix the path, or create the folder first (mkdir -p {root})", param_hint="--run-root")


def _apply_run_table(given: dict[str, Any]) -> None:
    """Fill the options left at their defaults from the config file's ``[run]`` table (the command line
    and the options' environment variables win; a bad file is a usage error naming it)."""
    if given["config_file"] is None:
        return
    from spectra_cv.config_files import read_config_file
    from spectra_cv.errors import ConfigError

    try:
        table = read_config_file(given["config_file"]).run
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--config") from exc
    fill_from_run_table(given, table)


def fill_from_run_table(given: dict[str, Any], table: dict[str, Any]) -> None:
    """The one precedence rule of a config file's ``[run]`` values: each fills an option of ``given``
    the command line left at its default, unless the option's environment variable is set (the data
    and run paths read theirs when unset)."""
    source = click.get_current_context().get_parameter_source
    env = {"data_root": run_paths.ENV_DATA_ROOT, "metadata_dir": run_paths.ENV_METADATA_DIR,
           "run_root": run_paths.ENV_RUN_ROOT}
    for key, value in table.items():
        if key not in given:
            continue
        if key in env:
            if given[key] is None and not os.environ.get(env[key]):
                given[key] = value
        elif source(key) in (click.core.ParameterSource.DEFAULT, None):
            given[key] = value


def run_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add the shared options; the command receives one ``opts: RunOptions`` argument."""
    options = [
        click.option("--preset", type=click.Choice(["recipe", "cpu_quick"]), default=None,
                     envvar="SPECTRA_CV_PRESET", show_envvar=True,
                     help="Starting settings (recipe: the cross-validation recipe, for a GPU; cpu_quick: 2 CPU "
                          "cores) [default: the config file's, else recipe]."),
        click.option("--config", "config_file", type=FILE, default=None, envvar="SPECTRA_CV_CONFIG", show_envvar=True,
                     help="A run config file (TOML: preset, [model], [objective], [train], [run]); the options "
                          "and --set given here override it. `spectra-cv config show --preset cpu_quick` prints "
                          "one to start from."),
        click.option("--batch-size", type=int, default=None, envvar="SPECTRA_CV_BATCH_SIZE", show_envvar=True,
                     help="Training batch size."),
        click.option("--epochs", type=int, default=None, envvar="SPECTRA_CV_EPOCHS", show_envvar=True,
                     help="Maximum epochs."),
        click.option("--patience", type=int, default=None, help="Early-stopping patience (validations)."),
        click.option("--lr", type=float, default=None, help="Peak learning rate."),
        click.option("--lr-min", type=float, default=None, help="Final learning rate of the cosine."),
        click.option("--seed", type=click.IntRange(min=0), default=None, help="Seed (the same for every fold)."),
        click.option("--time-budget-s", type=float, default=None, help="Stop training after this many seconds."),
        click.option("--set", "sets", multiple=True, metavar="FLAG=VALUE", envvar="SPECTRA_CV_SET", show_envvar=True,
                     help="Any `spectra-cv train` flag, e.g. --set d_model=32 (repeatable; the variable "
                     "takes several, space-separated)."),
        click.option("--data-root", "--train-dir", "data_root", type=DIR,
                     default=None, help=f"Spectra, manifest.csv, lambda_stats.npz [env {run_paths.ENV_DATA_ROOT}; "
                     f"default {run_paths.DEFAULT_DATA_ROOT}]."),
        click.option("--metadata-dir", type=DIR, default=None,
                     help=f"dose_features.csv, dose_stats.json, dose_sampling_weights.csv "
                     f"[env {run_paths.ENV_METADATA_DIR}; default {run_paths.DEFAULT_METADATA_DIR}]."),
        click.option("--run-root", type=DIR, default=None,
                     help=f"Where manifests/, logs/, checkpoints/, denoised/, artifacts/ go "
                     f"[env {run_paths.ENV_RUN_ROOT}; default .]."),
        click.option("--fold-config", type=FILE, default=None,
                     help="folds.json (default: the built-in sample rotation, as `spectra-cv manifests --help` says)."),
        click.option("--device", default="auto", show_default=True, envvar="SPECTRA_CV_DEVICE", show_envvar=True,
                     help="auto, cpu, cuda, cuda:1 …"),
        click.option("--infer-batch-size", type=click.IntRange(min=1), default=64, show_default=True,
                     help="Denoising batch size."),
        click.option("--clean-manifest", type=FILE, default=None,
                     help="Synthetic data: clean truth (default: <data-root>/../clean/clean_manifest.csv if present)."),
        tracking_option,
    ]
    names = ("preset", "batch_size", "epochs", "patience", "lr", "lr_min", "seed", "time_budget_s", "sets",
             "data_root", "metadata_dir", "run_root", "fold_config", "device", "infer_batch_size", "clean_manifest",
             "tracking", "config_file", "tracking_uri")

    def wrapper(**kwargs: Any) -> Any:
        given = {name: kwargs.pop(name) for name in names}
        _apply_run_table(given)
        given["tracking"] = tracking_backend(given["tracking"], given["tracking_uri"])
        problem = device_name_problem(given["device"])
        if problem is not None:
            raise click.BadParameter(problem.removeprefix("--device "), param_hint="--device")
        if given["tracking"] is not None:
            require_tracking(given["tracking"])  # a missing library fails now, not after training
        given["data_root"] = given["data_root"] or run_paths.data_root()
        given["metadata_dir"] = given["metadata_dir"] or run_paths.metadata_dir()
        given["run_root"] = given["run_root"] or Path(os.environ.get(run_paths.ENV_RUN_ROOT, "."))
        _check_run_root(given["run_root"])
        given["sets"] = tuple(given["sets"])
        return func(opts=RunOptions(**given), **kwargs)

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    options.append(tracking_uri_option)
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper
