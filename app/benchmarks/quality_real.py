"""The model against the best linear method on the five real folds: the quality table against the project's targets.

Usage:  python app/benchmarks/quality_real.py DATA_DIR --run-root RUN [--preset cpu_quick] [--parallel 2]
            [--folds 1 2 3 4 5] [--set FLAG=VALUE ...] [--hold-out TREATMENT/SAMPLE ...] [--output quality.json]

--hold-out: the leave-samples-out check. The samples named are kept out of every role of every fold (a
folds.json written into RUN; the other samples rotate), and each fold scores its model and the
baselines on them; the table adds the paired verdict on those never-seen samples.

DATA_DIR holds spectra_for_fold/ and metadata/ (the Track H layout). Runs ``spectra-cv cv`` with the
preset into RUN (a rerun resumes or skips what is done, like any ``cv``), then ``spectra-cv report``,
and prints one table from the folds' metrics files: per fold the model's test PSNR and SAM, the best
linear method of that fold (every baseline is a linear map; each fitted on the fold's train split,
its parameters chosen on held-out samples of it) and model − best, then the mean ± std across folds
beside the project's targets. Exit 0 when it ran, whatever the figures say; the JSON says whether each
target is met. Minutes per fold (the preset's budget), so not part of ``make bench``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import numpy as np

from spectra_cv.io import atomic_write_json, atomic_write_text
from spectra_cv.metrics.baselines import BASELINE_NAMES
from spectra_cv.paths import RunPaths

TARGETS = {"psnr_mean_db": 55.8, "sam_deg_max": 0.285, "margin_every_fold_db": 0.3, "groups_won_share": 0.8}
"""The project's targets (README, "Models, presets and results"): five-fold test PSNR ≥ 55.8 dB and SAM
≤ 0.285°, above the best linear method by ≥ 0.3 dB in every fold and in ≥ 80 % of the test groups."""


def fold_rows(paths: RunPaths, folds: tuple[int, ...]) -> list[dict]:
    """One row per fold from its metrics JSON: model, best baseline, their test figures, control figures."""
    rows = []
    for fold in folds:
        splits = json.loads(paths.metrics_json(fold).read_text())["splits"]
        test = {name: row["loo"] for name, row in splits["test"].items()}
        best = max(BASELINE_NAMES, key=lambda name: test[name]["psnr_mean"])
        control = {name: row["loo"] for name, row in (splits.get("control") or {}).items()}
        rows.append({
            "fold": fold, "model_psnr": test["model"]["psnr_mean"], "model_sam_deg": test["model"]["sam_deg_mean"],
            "best_linear": best, "best_linear_psnr": test[best]["psnr_mean"],
            "best_linear_sam_deg": test[best]["sam_deg_mean"],
            "margin_db": test["model"]["psnr_mean"] - test[best]["psnr_mean"],
            "baselines_psnr": {name: test[name]["psnr_mean"] for name in BASELINE_NAMES},
            "control_model_psnr": control.get("model", {}).get("psnr_mean"),
            "control_ridge_psnr": control.get("ridge", {}).get("psnr_mean"),
            "control_ridge_wiener_psnr": control.get("ridge_wiener", {}).get("psnr_mean"),
        })
    return rows


def summarise(rows: list[dict]) -> dict:
    """Mean ± std (ddof=1) across folds and whether each target is met."""
    def stat(key: str) -> dict:
        values = np.array([r[key] for r in rows], dtype=np.float64)
        return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else None}

    psnr, sam = stat("model_psnr"), stat("model_sam_deg")
    margin = TARGETS["margin_every_fold_db"]
    return {
        "model_psnr": psnr, "model_sam_deg": sam, "best_linear_psnr": stat("best_linear_psnr"),
        "margin_db": stat("margin_db"),
        "baselines_psnr": {name: float(np.mean([r["baselines_psnr"][name] for r in rows])) for name in BASELINE_NAMES},
        "targets": TARGETS,
        "met": {"psnr": psnr["mean"] >= TARGETS["psnr_mean_db"], "sam": sam["mean"] <= TARGETS["sam_deg_max"],
                "above_best_linear_in_every_fold": all(r["margin_db"] > 0 for r in rows),
                f"above_best_linear_by_{margin}_db_in_every_fold": all(r["margin_db"] >= margin for r in rows)},
    }


def paired(paths: RunPaths, folds: tuple[int, ...], rows: list[dict]) -> dict:
    """The paired verdict over test groups against the best linear method across folds (highest mean
    test PSNR), as the report gives it: groups won, mean with its 95 % bootstrap interval, worst group."""
    from spectra_cv.runs.report_paired import paired_groups, verdict

    best = max(BASELINE_NAMES, key=lambda name: np.mean([r["baselines_psnr"][name] for r in rows]))
    records = {fold: json.loads(paths.metrics_json(fold).read_text()) for fold in folds}
    figures = verdict(paired_groups(records, best))
    met = bool(figures) and figures["won_share"] >= TARGETS["groups_won_share"]
    return {"baseline": best, **figures, "met": met}


def unseen(paths: RunPaths, folds: tuple[int, ...], baseline: str) -> dict:
    """The paired verdict on the samples no fold saw (``--hold-out``), as the report gives it
    (``report_paired.unseen_verdict``); {} when no fold scored any."""
    from spectra_cv.runs.report_paired import paired_groups, unseen_verdict

    records = {fold: json.loads(paths.metrics_json(fold).read_text()) for fold in folds}
    figures = unseen_verdict(paired_groups(records, baseline, split="unseen"))
    return {"baseline": baseline, **figures, "met": figures["mean_db"] >= 0} if figures else {}


def table(rows: list[dict], summary: dict, groups: dict, never_seen: dict | None = None) -> str:
    lines = ["| fold | model PSNR dB | model SAM ° | best linear method | its PSNR dB | model − best dB |",
             "|---:|---:|---:|---|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['fold']} | {r['model_psnr']:.2f} | {r['model_sam_deg']:.3f} | {r['best_linear']} | "
                     f"{r['best_linear_psnr']:.2f} | {r['margin_db']:+.2f} |")
    s = summary

    def pm(d: dict, spec: str) -> str:
        return f"{d['mean']:{spec}}" + (f" ± {d['std']:{spec.lstrip('+')}}" if d["std"] is not None else "")

    lines.append(f"| mean | {pm(s['model_psnr'], '.2f')} | {pm(s['model_sam_deg'], '.3f')} | | "
                 f"{pm(s['best_linear_psnr'], '.2f')} | {pm(s['margin_db'], '+.2f')} |")
    lines.append("")
    met = s["met"]
    margin = TARGETS["margin_every_fold_db"]
    if groups.get("groups"):
        lines.append(f"Paired over test groups, model − {groups['baseline']}: ahead in {groups['won']} of "
                     f"{groups['groups']} ({groups['won_share']:.0%}), mean {groups['mean_db']:+.2f} dB (95 % bootstrap "
                     f"{groups['ci95_low_db']:+.2f} … {groups['ci95_high_db']:+.2f}), median {groups['median_db']:+.2f}, "
                     f"worst {groups['worst_group']} (fold {groups['worst_fold']}) {groups['worst_db']:+.2f} dB; "
                     f"SAM lower in {groups['sam_won']}.")
    if never_seen:
        u = never_seen
        lines.append(f"Samples never seen (leave-samples-out), model − {u['baseline']} per group: ahead in {u['won']} of "
                     f"{u['groups']}, mean {u['mean_db']:+.2f} dB (95 % bootstrap {u['ci95_low_db']:+.2f} … "
                     f"{u['ci95_high_db']:+.2f}); model {u['model_psnr']:.2f} dB against {u['baseline_psnr']:.2f}.")
    word = {True: "met", False: "not met"}
    lines.append(f"Targets: PSNR ≥ {TARGETS['psnr_mean_db']} dB ({word[met['psnr']]}), SAM ≤ {TARGETS['sam_deg_max']}° "
                 f"({word[met['sam']]}), above the best linear method in every fold "
                 f"({word[met['above_best_linear_in_every_fold']]}) and by ≥ {margin} dB "
                 f"({word[met[f'above_best_linear_by_{margin}_db_in_every_fold']]}), ahead in ≥ "
                 f"{TARGETS['groups_won_share']:.0%} of test groups ({word[bool(groups.get('met'))]}).")
    return "\n".join(lines)


@click.command()
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--run-root", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--preset", default="cpu_quick", show_default=True)
@click.option("--folds", type=click.IntRange(1, 5), multiple=True, default=(1, 2, 3, 4, 5), show_default=True)
@click.option("--parallel", type=click.IntRange(1, 5), default=1, show_default=True)
@click.option("--set", "sets", multiple=True, metavar="FLAG=VALUE", help="Passed to `spectra-cv cv --set`.")
@click.option("--hold-out", "held_out", multiple=True, metavar="TREATMENT/SAMPLE",
              help="Keep this sample out of every fold and score the fold models on it (repeatable).")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None)
def main(data_dir: Path, run_root: Path, preset: str, folds: tuple[int, ...], parallel: int,
         sets: tuple[str, ...], held_out: tuple[str, ...], output: Path | None) -> None:
    """Run the preset's five folds on DATA_DIR into RUN_ROOT and print the quality table against the project's targets."""
    for needed in ("spectra_for_fold/manifest.csv", "metadata"):
        if not (data_dir / needed).exists():
            raise click.ClickException(f"{data_dir / needed}: missing; DATA_DIR must be in the Track H layout")
    run_root.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "spectra_cv", "cv", "--preset", preset, "--folds", *map(str, folds),
               "--parallel", str(parallel), "--data-root", str(data_dir.resolve() / "spectra_for_fold"),
               "--metadata-dir", str(data_dir.resolve() / "metadata"), "--run-root", "."]
    for item in sets:
        command += ["--set", item]
    if held_out:
        command += ["--fold-config", str(write_hold_out(data_dir, run_root, held_out))]
    click.echo("$ " + " ".join(command[2:]), err=True)
    if subprocess.run(command, cwd=run_root).returncode != 0:
        raise click.ClickException(f"`spectra-cv cv` failed; see {run_root}/logs/")
    subprocess.run([sys.executable, "-m", "spectra_cv", "report", "--run-root", "."], cwd=run_root, check=False)
    rows = fold_rows(RunPaths(root=run_root), folds)
    summary = summarise(rows)
    groups = paired(RunPaths(root=run_root), folds, rows)
    never_seen = unseen(RunPaths(root=run_root), folds, groups["baseline"])
    report = {"data_dir": str(data_dir), "run_root": str(run_root), "preset": preset, "sets": list(sets),
              "held_out": list(held_out), "per_fold": rows, "across_folds": summary,
              "paired_over_test_groups": groups, "never_seen_samples": never_seen}
    if output is not None:
        atomic_write_json(output, report)
    click.echo(table(rows, summary, groups, never_seen))
    click.echo(json.dumps(report, indent=2))


def write_hold_out(data_dir: Path, run_root: Path, held_out: tuple[str, ...]) -> Path:
    """RUN/folds_hold_out.json: the folds with ``held_out`` kept out of every role."""
    import pandas as pd

    from spectra_cv.errors import FoldError
    from spectra_cv.folds.manifests import leave_samples_out

    manifest = pd.read_csv(data_dir / "spectra_for_fold" / "manifest.csv", dtype=str, keep_default_na=False)
    try:
        config = leave_samples_out(manifest, list(held_out))
    except FoldError as exc:
        raise click.BadParameter(str(exc), param_hint="--hold-out") from exc
    path = run_root / "folds_hold_out.json"
    atomic_write_text(path, json.dumps(config, indent=2) + "\n")
    return path


if __name__ == "__main__":
    main()
