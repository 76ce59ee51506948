"""``spectra-cv data``: check the data contract, write synthetic data, recompute statistics."""

from __future__ import annotations

import click

from spectra_cv.cli import CONTEXT_SETTINGS, LazyGroup


@click.group(
    cls=LazyGroup,
    context_settings=CONTEXT_SETTINGS,
    lazy_subcommands={
        "check": "spectra_cv.cli.data_check:check",
        "synth": "spectra_cv.cli.data_synth:synth",
        "stats": "spectra_cv.cli.data_stats:stats",
    },
)
def data() -> None:
    """Data: validate a dataset, generate synthetic data, recompute derived statistics."""
