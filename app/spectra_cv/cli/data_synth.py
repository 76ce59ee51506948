"""``spectra-cv data synth``: write a synthetic dataset in the user's layout, with clean truth."""

from __future__ import annotations

import time
from pathlib import Path

import click

from spectra_cv.cli import CONTEXT_SETTINGS
from spectra_cv.cli.options import DIR, GreedyCommand

PRESET_NAMES = ("tiny", "demo", "full")


@click.command(cls=GreedyCommand, context_settings=CONTEXT_SETTINGS)
@click.argument("out", type=DIR)
@click.option(
    "--preset",
    type=click.Choice(PRESET_NAMES),
    required=True,
    help="tiny: 4 replicates per group (216 spectra, unit tests); demo: 60 (3,240, a CPU CV in "
    "minutes); full: 150 (8,100, the real dimensions).",
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Same seed, same bytes.")
@click.option(
    "--replicates",
    type=click.IntRange(min=2, max=999),
    default=None,
    help="Override the preset's replicates per (treatment, sample, angle) group.",
)
@click.option("--force", is_flag=True,
              help="Replace a non-empty OUT (its old content is removed once the new tree is complete).")
def synth(out: Path, preset: str, seed: int, replicates: int | None, force: bool) -> None:
    """Write a synthetic dataset under OUT, shaped like the real Track H data.

    \b
    OUT/spectra_for_fold/  wavelength_grid.npy, manifest.csv, lambda_stats.npz,
                           treatment_<k>/sample_<X>/<angle>/rep_<NNN>.npy
    OUT/metadata/          dose_features.csv, dose_sampling_weights.csv, dose_stats.json
    OUT/clean/             clean_manifest.csv and treatment_<k>/sample_<X>/<angle>.npy:
                           the noise-free spectrum of each group (the ground truth)
    OUT/synth_config.json  preset, seed and the generator's parameters

    Treatments 1-5 with 5 samples each and the control treatment_6 with samples G and I, two
    angles (6Oclock, 12Oclock). Point --data-root at OUT/spectra_for_fold and --metadata-dir at
    OUT/metadata (or SPECTRA_CV_DATA_ROOT / SPECTRA_CV_METADATA_DIR) to run any other command.
    """
    from dataclasses import replace

    from spectra_cv.data import synth as synth_mod  # imported here so `-h` stays instant

    config = synth_mod.PRESETS[preset](seed)
    if replicates is not None:
        config = replace(config, replicates=replicates)
    started = time.perf_counter()
    data = synth_mod.write_synthetic(out, config, force=force)
    click.echo(
        f"wrote {len(data.manifest)} spectra in {len(data.groups)} groups ({preset}, seed {seed}) "
        f"under {out} in {time.perf_counter() - started:.1f} s"
    )
    click.echo(f"  data root:    {out / 'spectra_for_fold'}")
    click.echo(f"  metadata dir: {out / 'metadata'}")
    click.echo(f"  clean truth:  {out / synth_mod.CLEAN_DIR / synth_mod.CLEAN_MANIFEST}")
