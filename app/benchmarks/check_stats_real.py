"""Recompute the derived statistics of a real dataset and compare them with the shipped files.

Usage:  python app/benchmarks/check_stats_real.py DATA_DIR [--output result.json]

DATA_DIR holds spectra_for_fold/ and metadata/ (the Track H layout). Runs `spectra-cv data stats`
with the full manifest into a temporary directory (the data stay untouched) and reports:
the max relative difference of every lambda_stats.npz key (``weights`` must be ≤ 1e-3), whether
``bin_pair`` and ``sampling_weight`` match exactly (rows aligned on relative_path), and the max
relative difference of dose_stats computed over treatments 1–5 (how the shipped file was made)
against the shipped dose_stats.json. Prints JSON; exits 1 when a check fails. ~2 s on the
8,100-spectrum Track H data.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np
import pandas as pd
from click.testing import CliRunner

from spectra_cv.cli import main as cli_main
from spectra_cv.data import contract, loaders, stats
from spectra_cv.io import atomic_write_json

WEIGHTS_RTOL = 1e-3


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12)))


def compare(data_dir: Path, out_dir: Path) -> dict:
    """Run ``data stats`` on ``data_dir`` into ``out_dir`` and compare with the shipped files."""
    root, meta = data_dir / "spectra_for_fold", data_dir / "metadata"
    started = time.perf_counter()
    result = CliRunner().invoke(
        cli_main,
        ["data", "stats", "--data-root", str(root), "--metadata-dir", str(meta), "--output-dir", str(out_dir)],
    )
    seconds = time.perf_counter() - started
    if result.exit_code != 0:
        raise click.ClickException(f"data stats failed: {result.output}")
    ours = np.load(out_dir / contract.LAMBDA_STATS_FILE)
    shipped = np.load(root / contract.LAMBDA_STATS_FILE)
    lam = {key: _rel(ours[key], shipped[key]) for key in contract.LAMBDA_STATS_KEYS}

    mine = pd.read_csv(out_dir / contract.SAMPLING_WEIGHTS_FILE).set_index("relative_path")
    theirs = pd.read_csv(meta / contract.SAMPLING_WEIGHTS_FILE).set_index("relative_path")
    same_rows = set(mine.index) == set(theirs.index)
    theirs = theirs.loc[mine.index] if same_rows else theirs
    bin_pair_exact = bool(same_rows and (mine["bin_pair"] == theirs["bin_pair"]).all())
    weight_exact = bool(same_rows and (mine["sampling_weight"] == theirs["sampling_weight"]).all())

    manifest = loaders.read_manifest(root / contract.MANIFEST_FILE)
    treated = manifest.loc[manifest["treatment"] != "treatment_6", "relative_path"].tolist()
    dose = stats.read_dose_features(meta / contract.DOSE_FEATURES_FILE)
    film = stats.dose_stats(dose, treated)
    shipped_film = json.loads((meta / contract.DOSE_STATS_FILE).read_text())
    return {
        "data_dir": str(data_dir),
        "spectra": len(manifest),
        "data_stats_seconds": round(seconds, 2),
        "lambda_stats_max_rel_diff": lam,
        "weights_ok": lam["weights"] <= WEIGHTS_RTOL,
        "bin_pair_exact": bin_pair_exact,
        "sampling_weight_exact": weight_exact,
        "dose_stats_t1_5_max_rel_diff": {
            "mean": _rel(np.array(film["mean"])[1:], np.array(shipped_film["mean"])[1:]),  # cos_theta mean is 0
            "std": _rel(film["std"], shipped_film["std"]),
        },
    }


@click.command()
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--output", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Also write the JSON here."
)
def run(data_dir: Path, output: Path | None) -> None:
    """Compare recomputed derived statistics of DATA_DIR with its shipped files."""
    with tempfile.TemporaryDirectory(prefix="spectra-cv-stats-") as tmp:
        report = compare(data_dir, Path(tmp))
    click.echo(json.dumps(report, indent=2))
    if output is not None:
        atomic_write_json(output, report)
    if not (report["weights_ok"] and report["bin_pair_exact"]):
        sys.exit(1)


if __name__ == "__main__":
    run()
