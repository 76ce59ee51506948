"""Classical baselines on one fold of a real dataset, beside the original specification's figures.

Usage:  python app/benchmarks/baselines_real.py DATA_DIR [--folds 1 2 3 4 5] [--output result.json]

DATA_DIR holds manifest.csv and wavelength_grid.npy (or has them under spectra_for_fold/).
The fold's splits follow the built-in rotation (per treatment with 5 samples: sort, rotate; train 3 / val 1 /
test 1); references are LOO means within each split; each baseline's parameter is chosen on
held-out samples of the train split (three inner folds, one sample of every treatment each), the
baseline refitted on the whole train split, and scored on test. Prints JSON with every fold and
the mean ± std across folds (and writes it atomically with --output). About 30–60 s per fold on 2
CPU cores for the 8,100-spectrum Track H data (nearly all of it the parameter grids).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import numpy as np

from spectra_cv.data import contract, loaders
from spectra_cv.io import atomic_write_json
from spectra_cv.metrics import fit_baselines, loo_means, score

SPEC_TABLE = {  # the specification's figures: mean over the 5 folds' test sets (ridge: α on held-out samples)
    "identity": {"psnr": 46.33, "sam_deg": 1.044},
    "savgol": {"psnr": 49.29, "sam_deg": 0.747},
    "gaussian": {"psnr": 49.64, "sam_deg": 0.711},
    "pca": {"psnr": 53.67, "sam_deg": 0.410},
    "ridge": {"psnr": 54.67, "sam_deg": 0.339},
    "wiener": {"psnr": 54.87, "sam_deg": 0.319},
    "ridge_wiener": {"psnr": 55.22, "sam_deg": 0.310},
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


def data_root(path: Path) -> Path:
    """DATA_DIR itself when it holds the manifest, else its spectra_for_fold/ (the Track H layout)."""
    if (path / contract.MANIFEST_FILE).is_file():
        return path
    if (path / "spectra_for_fold" / contract.MANIFEST_FILE).is_file():
        return path / "spectra_for_fold"
    raise click.ClickException(f"{path}: no {contract.MANIFEST_FILE} here or under spectra_for_fold/")


def run_fold(root: Path, grid: np.ndarray, manifest, fold: int) -> dict:
    """Fit on the fold's train split (parameters on held-out train samples), score on its test split."""
    started = time.perf_counter()
    roles = fold_roles(manifest, fold)
    key = manifest["treatment"] + "/" + manifest["sample"]
    split = {name: manifest[key.isin(members)] for name, members in roles.items()}
    noisy = {n: loaders.load_spectra(root, f["relative_path"].tolist(), grid).astype(np.float64) for n, f in split.items()}
    groups = {n: split[n]["group_id"].tolist() for n in split}
    ref = {n: loo_means(noisy[n], groups[n]) for n in split}
    loaded = time.perf_counter()
    fitted = fit_baselines(noisy["train"], ref["train"], groups["train"])
    fitted_at = time.perf_counter()
    results = {}
    for name, baseline in fitted.items():
        metrics = score(baseline.apply(noisy["test"]), ref["test"], grid)
        finite = [v for v in baseline.train_scores.values() if np.isfinite(v)]
        results[name] = {"params": baseline.params, "held_out_psnr_mean": max(finite) if finite else None,
                         "test": metrics}
    return {"fold": fold, "n_spectra": {n: int(len(f)) for n, f in split.items()}, "baselines": results,
            "timings_s": {"load": round(loaded - started, 3), "fit_all": round(fitted_at - loaded, 3)}}


@click.command()
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--folds", type=click.IntRange(1, 5), multiple=True, default=(1, 2, 3, 4, 5), show_default=True)
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the JSON here (atomically).")
def main(data_dir: Path, folds: tuple[int, ...], output: Path | None) -> None:
    """Fit the baselines on each fold's train split of DATA_DIR and evaluate them on its test split."""
    started = time.perf_counter()
    root = data_root(data_dir)
    grid = loaders.read_grid(root)
    manifest = loaders.read_manifest(root / contract.MANIFEST_FILE)
    per_fold = [run_fold(root, grid, manifest, fold) for fold in folds]
    summary = {}
    for name in per_fold[0]["baselines"]:
        psnr = [f["baselines"][name]["test"]["psnr_mean"] for f in per_fold]
        sam = [f["baselines"][name]["test"]["sam_deg_mean"] for f in per_fold]
        summary[name] = {
            "test_psnr_mean": round(float(np.mean(psnr)), 3),
            "test_psnr_std": round(float(np.std(psnr, ddof=1)), 3) if len(psnr) > 1 else None,
            "test_sam_deg_mean": round(float(np.mean(sam)), 4),
            "params_per_fold": [f["baselines"][name]["params"] for f in per_fold],
            "spec": SPEC_TABLE[name],
        }
    report = {"data_root": str(root), "folds": list(folds), "across_folds": summary, "per_fold": per_fold,
              "total_s": round(time.perf_counter() - started, 3)}
    if output is not None:
        atomic_write_json(output, report)
    click.echo(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
