"""Classical baselines on one fold of a real dataset, beside the figures of SPEC §4.

Usage:  python app/benchmarks/baselines_real.py DATA_DIR [--fold 1] [--output result.json]

DATA_DIR holds manifest.csv and wavelength_grid.npy (or has them under spectra_for_fold/).
The fold's splits follow SPEC §2 (per treatment with 5 samples: sort, rotate; train 3 / val 1 /
test 1); references are LOO means within each split; each baseline's parameter is chosen on
train and scored on test. Prints JSON (and writes it atomically with --output). About 20–40 s on
2 shared CPU cores for the 8,100-spectrum Track H data (nearly all of it the parameter grids).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import numpy as np

from spectra_cv.data import contract, loaders
from spectra_cv.io import atomic_write_json
from spectra_cv.metrics import evaluate, fit_baselines, loo_means

SPEC_TABLE = {  # SPEC §4: mean over the 5 folds' test sets
    "identity": {"psnr": 46.33, "sam_deg": 1.044},
    "savgol": {"psnr": 49.29, "sam_deg": 0.747},
    "gaussian": {"psnr": 49.64, "sam_deg": 0.711},
    "pca": {"psnr": 53.67, "sam_deg": 0.410},
    "ridge": {"psnr": 54.09, "sam_deg": 0.348},
}


def fold_roles(manifest, fold: int) -> dict[str, list[str]]:
    """Sample-level roles of fold k (1..5): {'train': [...], 'val': [...], 'test': [...]} of
    'treatment/sample' keys; treatments without exactly 5 samples are left out."""
    roles: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for treatment, rows in manifest.groupby("treatment"):
        order = sorted(rows["sample"].unique())
        if len(order) != contract.FOLD_SAMPLES_PER_TREATMENT:
            continue
        rotated = [f"{treatment}/{order[(fold - 1 + i) % 5]}" for i in range(5)]
        roles["train"] += rotated[:3]
        roles["val"].append(rotated[3])
        roles["test"].append(rotated[4])
    return roles


def _data_root(path: Path) -> Path:
    if (path / contract.MANIFEST_FILE).is_file():
        return path
    if (path / "spectra_for_fold" / contract.MANIFEST_FILE).is_file():
        return path / "spectra_for_fold"
    raise click.ClickException(f"{path}: no {contract.MANIFEST_FILE} here or under spectra_for_fold/")


@click.command()
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--fold", type=click.IntRange(1, 5), default=1, show_default=True)
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the JSON here (atomically).")
def main(data_dir: Path, fold: int, output: Path | None) -> None:
    """Fit the baselines on DATA_DIR's fold-FOLD train split and evaluate them on its test split."""
    started = time.perf_counter()
    root = _data_root(data_dir)
    grid = loaders.read_grid(root)
    manifest = loaders.read_manifest(root / contract.MANIFEST_FILE)
    roles = fold_roles(manifest, fold)
    key = manifest["treatment"] + "/" + manifest["sample"]
    split = {name: manifest[key.isin(members)] for name, members in roles.items()}
    noisy = {n: loaders.load_spectra(root, f["relative_path"].tolist(), grid).astype(np.float64) for n, f in split.items()}
    ref = {n: loo_means(noisy[n], split[n]["group_id"].to_numpy()) for n in split}
    loaded = time.perf_counter()

    fitted = fit_baselines(noisy["train"], ref["train"])
    fitted_at = time.perf_counter()
    results = {}
    for name, baseline in fitted.items():
        t0 = time.perf_counter()
        metrics = evaluate(baseline.apply(noisy["test"]), ref["test"], grid)
        results[name] = {
            "params": baseline.params,
            "train_psnr_mean": max(baseline.train_scores.values()),
            "test": metrics,
            "spec": SPEC_TABLE[name],
            "delta_psnr_vs_spec": round(metrics["psnr_mean"] - SPEC_TABLE[name]["psnr"], 3),
            "apply_and_evaluate_s": round(time.perf_counter() - t0, 3),
        }
    report = {
        "data_root": str(root),
        "fold": fold,
        "roles": roles,
        "n_spectra": {n: int(len(f)) for n, f in split.items()},
        "baselines": results,
        "timings_s": {
            "load": round(loaded - started, 3),
            "fit_all": round(fitted_at - loaded, 3),
            "total": round(time.perf_counter() - started, 3),
        },
    }
    text = json.dumps(report, indent=2)
    if output is not None:
        atomic_write_json(output, report)
    click.echo(text)


if __name__ == "__main__":
    main()
