"""``spectra-cv denoise``: the original denoising command (``scripts/run_denoise_from_manifest.py``), verbatim."""

from __future__ import annotations

from pathlib import Path

import click

from spectra_cv.cli import CONTEXT_SETTINGS
from spectra_cv.cli.options import DIR, FILE, GreedyCommand


def _names(flag: str) -> list[str]:
    """The runbook's dashed flag and the underscored spelling the original orchestrator passed."""
    under = flag.replace("-", "_")
    return [f"--{flag}"] + ([f"--{under}"] if under != flag else [])


@click.command(cls=GreedyCommand, greedy=("film_features",), context_settings=CONTEXT_SETTINGS)
@click.option(*_names("manifest"), "manifest", type=FILE, required=True,
              help="Manifest whose rows are denoised.")
@click.option(*_names("root-dir"), "root_dir", type=DIR, required=True,
              help="Data root the manifest's relative paths live under.")
@click.option(*_names("checkpoint"), "checkpoint", type=FILE, required=True,
              help="A spectra-cv checkpoint (EMA weights are used when present).")
@click.option(*_names("output-root"), "output_root", type=DIR, required=True,
              help="Outputs go to <output-root>/<relative parent>/<stem>_denoised.npy.")
@click.option(*_names("sequence-length"), "sequence_length", type=int, default=None,
              help="Checked against the model's (601 for the 300-600 nm grid).")
@click.option(*_names("batch-size"), "batch_size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option(*_names("dose-features-csv"), "dose_features_csv", type=FILE,
              default=None, help="Per-spectrum dose features (needed by FiLM checkpoints).")
@click.option(*_names("dose-stats-json"), "dose_stats_json", type=FILE,
              default=None, help="Checked against the statistics stored in the checkpoint.")
@click.option(*_names("film-features"), "film_features", multiple=True,
              help="Checked against the checkpoint's features (several values after one flag).")
@click.option("--amp", is_flag=True, help="bf16 autocast on CUDA (as in training with --amp).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option(*_names("num-workers"), "num_workers", type=int, default=None,
              help="Accepted for compatibility; spectra are read once, no workers are used.")
def denoise(manifest: Path, root_dir: Path, checkpoint: Path, output_root: Path, sequence_length: int | None,
            batch_size: int, dose_features_csv: Path | None, dose_stats_json: Path | None,
            film_features: tuple[str, ...], amp: bool, device: str, num_workers: int | None) -> None:
    """Denoise every spectrum of a manifest with a checkpoint."""
    from spectra_cv.denoise import denoise_manifest

    result = denoise_manifest(
        checkpoint=checkpoint, manifest=manifest, root_dir=root_dir, output_root=output_root,
        batch_size=batch_size, device=device, amp=amp, dose_features_csv=dose_features_csv,
        dose_stats_json=dose_stats_json, film_features=film_features or None, sequence_length=sequence_length,
    )
    click.echo(f"Saved denoised spectra for {len(result.relative_paths)} entries to {output_root}")
