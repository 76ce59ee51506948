"""What a perfect denoiser would score: the noise of the leave-one-out references, fold by fold.

Usage:  python app/benchmarks/reference_floor.py DATA_DIR [--folds 1 2 3 4 5] [--output result.json]

DATA_DIR holds manifest.csv (or has it under spectra_for_fold/). Every metric compares a denoised
spectrum with the mean of the *other* replicates of its group, which still carries their noise, so
even the true spectrum scores a finite PSNR and a non-zero spectral angle against it. For each
fold's validation and test split (the built-in rotation; the spectra read, checked and grouped as
a fold reads them) this prints that floor
(``metrics.spectral.reference_floor``: measured from random half-splits of each group, checked
against the clean truth of synthetic data by the tests), averaged over the spectra as the fold's
metrics are, and the groups' spread. A target below the floor cannot be reached by any denoiser;
one close to it only by a near-perfect one. Prints JSON (and writes it atomically with --output);
~30 s on 2 CPU cores for the 8,100-spectrum Track H data.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np
from baselines_real import data_root  # the same folder of scripts: run as `python app/benchmarks/...`

from spectra_cv.data import contract, loaders
from spectra_cv.data.splits import split_of
from spectra_cv.folds.manifests import rotation_assignment, split_manifest
from spectra_cv.io import atomic_write_json
from spectra_cv.metrics.spectral import reference_floor

SPLITS = ("val", "test")


def split_floor(spectra: np.ndarray, group_ids: list[str]) -> dict:
    """The floor of one split: the mean over its spectra, and the lowest and highest group."""
    floor = reference_floor(spectra, group_ids)
    ids = np.asarray(group_ids)
    by_group = {g: round(float(floor["sam_deg"][ids == g][0]), 4) for g in sorted(set(group_ids))}
    return {"n_spectra": len(group_ids), "psnr_mean": round(float(np.mean(floor["psnr"])), 3),
            "sam_deg_mean": round(float(np.mean(floor["sam_deg"])), 4),  # every group has ≥ 2 (split_of)
            "sam_deg_lowest_group": "{} {}".format(*min(by_group.items(), key=lambda kv: kv[1])),
            "sam_deg_highest_group": "{} {}".format(*max(by_group.items(), key=lambda kv: kv[1]))}


@click.command()
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--folds", type=click.IntRange(1, 5), multiple=True, default=(1, 2, 3, 4, 5), show_default=True)
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None)
def main(data_dir: Path, folds: tuple[int, ...], output: Path | None) -> None:
    root = data_root(data_dir)
    grid = loaders.read_grid(root)
    manifest = loaders.read_manifest(root / contract.MANIFEST_FILE)
    result: dict = {"data": str(data_dir), "folds": {}}
    for fold in folds:
        splits = split_manifest(manifest, rotation_assignment(manifest, fold))
        read = {name: split_of(root, splits[name], grid, f"fold {fold} {name}") for name in SPLITS}
        result["folds"][fold] = {name: split_floor(read[name].noisy, list(read[name].groups)) for name in SPLITS}
    for name in SPLITS:
        values = [result["folds"][f][name] for f in folds]
        result[f"{name}_mean_over_folds"] = {
            "psnr_mean": round(float(np.mean([v["psnr_mean"] for v in values])), 3),
            "sam_deg_mean": round(float(np.mean([v["sam_deg_mean"] for v in values])), 4)}
    text = json.dumps(result, indent=2)
    if output is not None:
        atomic_write_json(output, result)
    click.echo(text)


if __name__ == "__main__":
    main()
