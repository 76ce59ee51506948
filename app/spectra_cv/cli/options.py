"""Click helpers shared by the command modules.

``GreedyCommand`` accepts argparse-style multi-value options (``--film_features a b c`` or
``--folds 3 4 5``) so that the original scripts' commands work verbatim: before click parses, the
values after a greedy option are rewritten into repeated options (``--folds 3 --folds 4 --folds 5``),
and a long option may be spelled with dashes or underscores (``--no-ema``, ``--no_ema``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from spectra_cv.tracking import BACKENDS

FILE = click.Path(path_type=Path, dir_okay=False)
"""A file path option (not checked for existence: the commands say what is missing and how to fix it)."""
DIR = click.Path(path_type=Path, file_okay=False)
"""A directory path option (same)."""

tracking_option = click.option(
    "--tracking", type=click.Choice(BACKENDS), default=None, envvar="SPECTRA_CV_TRACKING", show_envvar=True,
    help="Export the runs to an MLflow store or TensorBoard files under <run-root>/tracking (MLflow: or to "
         "--tracking-uri); fold, cv, slurm submit: each fold when it ends; report: the folds and the CV run "
         "with the report and plots; track: now. Needs the tracking extra; a failed export is a warning.")
"""``--tracking`` of ``fold``, ``cv``, ``slurm submit``, ``report`` and ``track`` (declared once)."""

tracking_uri_option = click.option(
    "--tracking-uri", default=None, envvar="MLFLOW_TRACKING_URI", show_envvar=True,
    help="MLflow: log to this tracking server or store (http://host:5000, sqlite:///…, databricks …) instead "
         "of the run root's own store (given here, it implies --tracking mlflow); the experiment is "
         "MLFLOW_EXPERIMENT_NAME or spectra-cv, credentials MLflow's own MLFLOW_TRACKING_TOKEN or "
         "MLFLOW_TRACKING_USERNAME/PASSWORD.")
"""``--tracking-uri`` of ``fold``, ``cv`` and ``track`` (declared once)."""


def tracking_backend(backend: str | None, uri: str | None) -> str | None:
    """The tracking backend a command uses: ``--tracking-uri`` given on the command line (or in a config
    file's ``[run]``) means MLflow even without ``--tracking``; with ``--tracking tensorboard`` it is a
    usage error (TensorBoard writes files under the run root). ``MLFLOW_TRACKING_URI`` alone, as a lab's
    environment may set it for every tool, only says where MLflow runs go: it starts no tracking."""
    source = click.get_current_context().get_parameter_source("tracking_uri")
    explicit = uri is not None and source is not click.core.ParameterSource.ENVIRONMENT
    if explicit and backend == "tensorboard":
        raise click.BadParameter(f"{uri} is an MLflow tracking URI; TensorBoard writes its files under the "
                                 "run root: drop --tracking-uri, or use --tracking mlflow", param_hint="--tracking-uri")
    if explicit and backend is None:
        return "mlflow"
    return backend


class GreedyCommand(click.Command):
    """A command whose ``multiple=True`` options listed in ``greedy`` take several values at once."""

    def __init__(self, *args: Any, greedy: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.greedy = tuple(greedy)

    def _greedy_names(self) -> set[str]:
        names: set[str] = set()
        for param in self.params:
            if isinstance(param, click.Option) and param.name in self.greedy:
                names.update(param.opts)
        return names

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        known = {name for param in self.params if isinstance(param, click.Option)
                 for name in (*param.opts, *param.secondary_opts)}
        return super().parse_args(ctx, expand_greedy(respell(args, known), self._greedy_names()))


def respell(args: Sequence[str], known: set[str]) -> list[str]:
    """Dashes and underscores alike in every long option: ``--no-ema`` is ``--no_ema`` when only that
    spelling is declared, and the other way round (``--opt=value`` too)."""
    out = []
    for token in args:
        head, sep, value = token.partition("=")
        if token.startswith("--") and head not in known:
            for other in ("--" + head[2:].replace("-", "_"), "--" + head[2:].replace("_", "-")):
                if other in known:
                    token = other + sep + value
                    break
        out.append(token)
    return out


def expand_greedy(args: Sequence[str], greedy_names: set[str]) -> list[str]:
    """Rewrite ``--opt a b c`` into ``--opt a --opt b --opt c`` for each name in ``greedy_names``.

    Values run until the next token that starts with ``-`` and is not a negative number.
    ``--opt=a`` stays a single value.
    """
    out: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        out.append(token)
        i += 1
        if token not in greedy_names:
            continue
        first = True
        while i < len(args) and not _looks_like_option(args[i]):
            if not first:
                out.append(token)
            out.append(args[i])
            first = False
            i += 1
    return out


def _looks_like_option(token: str) -> bool:
    if not token.startswith("-") or token == "-":
        return False
    try:
        float(token)
    except ValueError:
        return True
    return False
