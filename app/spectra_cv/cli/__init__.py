"""The ``spectra-cv`` command line: a click group whose subcommands load lazily.

The CLI is the edge: every ``SpectraCVError`` becomes a click error here (exit 1, one message),
and nothing in the package imports this module. Subcommands are imported only when invoked, so
``spectra-cv -h`` and the data commands start without importing torch.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import click

from spectra_cv import __version__
from spectra_cv import log as log_mod
from spectra_cv.errors import EXIT_REFUSED, Refused, SpectraCVError

# Before torch is imported: OpenMP threads that spin while waiting collapse throughput 10-40x
# when another process shares the cores (a coordinator, a second fold, a test run).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class _Refused(click.ClickException):
    """A refusal: exit status ``EXIT_REFUSED``, so runners tell "refused, nothing changed" from a failure."""

    exit_code = EXIT_REFUSED


class LazyGroup(click.Group):
    """A group whose subcommands are ``"module:attribute"`` strings imported on first use.

    Every invocation runs inside a guard that turns project errors into ``click.ClickException``.
    """

    def __init__(self, *args: Any, lazy_subcommands: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_subcommands = dict(lazy_subcommands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_subcommands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_subcommands:
            module_name, attr = self.lazy_subcommands[cmd_name].split(":")
            command = getattr(importlib.import_module(module_name), attr)
            if not isinstance(command, click.Command):  # pragma: no cover - wiring error
                raise TypeError(f"{module_name}:{attr} is not a click command")
            return command
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Refused as exc:
            raise _Refused(str(exc)) from exc
        except SpectraCVError as exc:
            raise click.ClickException(str(exc)) from exc
        except OSError as exc:  # a file-system fault no layer below named: still one paragraph, no traceback
            from spectra_cv.io import storage_error

            raise click.ClickException(str(storage_error(exc, exc.filename or "a file", "use"))) from exc
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:  # a defect of spectra-cv itself: one paragraph, the traceback on request
            if ctx.find_root().params.get("verbose"):
                raise
            raise click.ClickException(
                f"unexpected {type(exc).__name__}: {exc}. This is a defect of spectra-cv, not of your input or "
                "settings: rerun the same command with -v (spectra-cv -v …) for the traceback and report it; "
                "whatever the command finished before is kept") from exc


@click.group(
    cls=LazyGroup,
    context_settings=CONTEXT_SETTINGS,
    lazy_subcommands={
        "data": "spectra_cv.cli.data:data",
        "manifests": "spectra_cv.cli.manifests:manifests",
        "train": "spectra_cv.cli.train:train",
        "denoise": "spectra_cv.cli.denoise:denoise",
        "evaluate": "spectra_cv.cli.evaluate:evaluate",
        "fold": "spectra_cv.cli.fold:fold",
        "coordinator": "spectra_cv.cli.coordinator:coordinator",
        "config": "spectra_cv.cli.config:config",
        "cv": "spectra_cv.cli.cv:cv",
        "report": "spectra_cv.cli.report:report",
        "final": "spectra_cv.cli.final:final",
        "slurm": "spectra_cv.cli.slurm:slurm",
        "k8s": "spectra_cv.cli.k8s:k8s",
        "status": "spectra_cv.cli.status:status",
        "track": "spectra_cv.cli.track:track",
    },
)
@click.version_option(__version__, prog_name="spectra-cv")
@click.option("-v", "--verbose", count=True, help="More log output (repeat for more).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Five-fold cross-validation of a Mamba denoiser of UV reflectance spectra."""
    log_mod.configure(-1 if quiet else verbose)
    ctx.ensure_object(dict)
