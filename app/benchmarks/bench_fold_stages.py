"""Benchmark: where a fold's wall time goes, stage by stage (``make bench`` → bench/fold_stages.json).

Usage:  python app/benchmarks/bench_fold_stages.py [--out bench/fold_stages.json] [--data DIR]
                                                   [--cases tiny,demo,real] [--work DIR]

Cases (each fold 1, run by ``spectra-cv fold`` in a fresh process, so start-up and imports count):

* ``tiny``: the unit tests' data (216 spectra), ``--preset cpu_quick --epochs 1 --set d_model=8
  --set n_layers=1``: the fixed cost of a fold, nearly nothing but overhead;
* ``demo``: ``make demo``'s data (3,240 spectra) and settings (``cpu_quick``, 30 epochs, a 60 s budget);
* ``real``: fold 1 of the dataset under ``--data`` (a folder holding ``spectra_for_fold/`` and
  ``metadata/``) with ``--epochs 1``; skipped without ``--data``.

For each it reports the process's wall seconds, its imports, the fold's summary figures
(``total_seconds`` from the fold's start, training and denoising seconds), every epoch's wall
seconds (training, validation and saves) and their share of the fold, the stages the package
records (``spectra_cv.stages``: manifests, train split read, baselines, training, denoising and
scoring per split, controls, coordinator), the rest of training (its set-up) and the report built
from the one fold, and the training throughput (spectra/s of the epochs). JSON to stdout and
atomically to --out. The data are written once under --work (default: a temporary folder).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click

HERE = Path(__file__).resolve().parent
CASES = {
    "tiny": ["--preset", "cpu_quick", "--epochs", "1", "--set", "d_model=8", "--set", "n_layers=1"],
    "demo": ["--preset", "cpu_quick", "--epochs", "30", "--time-budget-s", "60"],
    "real": ["--preset", "cpu_quick", "--epochs", "1"],
}


def _worker(args: list[str], run_root: Path, report: bool) -> dict[str, Any]:
    """Run in the child: one fold through the CLI in this process, then (optionally) the report."""
    started = time.perf_counter()
    try:
        from spectra_cv import stages
    except ImportError:  # a version before the stages were recorded (a "before" figure): summary figures only
        stages = None
    import spectra_cv.runs.fold  # noqa: F401  (torch and the pipeline: the imports a fold pays for)
    from spectra_cv.cli import main

    imports = time.perf_counter() - started
    os.chdir(run_root)
    fold_started = time.perf_counter()
    main(["fold", "--fold", "1", "--run-root", ".", *args], standalone_mode=False)
    fold_s = time.perf_counter() - fold_started
    report_s = None
    if report:
        report_started = time.perf_counter()
        main(["report", "--run-root", "."], standalone_mode=False)
        report_s = time.perf_counter() - report_started
    return {"imports_s": imports, "fold_call_s": fold_s, "report_s": report_s,
            "stages": stages.recorded() if stages is not None else []}


def _summary(run_root: Path) -> dict[str, Any]:
    """The fold's summary figures and its epochs' training throughput (the speed log)."""
    import pandas as pd

    from spectra_cv.paths import RunPaths

    paths = RunPaths(root=run_root)
    row = pd.read_csv(paths.summary_csv).iloc[0]
    figures = {k: float(row[k]) for k in ("total_seconds", "train_seconds", "denoise_seconds", "test_psnr_mean")}
    speed = json.loads(paths.speed_log(1).read_text())
    figures["examples_per_sec_median"] = speed["summary"]["median_examples_per_sec"]
    figures["epochs_train_only_s"] = round(sum(float(e["duration_sec"]) for e in speed["epochs"]), 2)
    return figures


def _case(name: str, data: Path, work: Path) -> dict[str, Any]:
    run_root = work / f"run_{name}"
    if run_root.exists():
        import shutil

        shutil.rmtree(run_root)
    run_root.mkdir(parents=True)
    args = [*CASES[name], "--data-root", str(data / "spectra_for_fold"), "--metadata-dir", str(data / "metadata")]
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    code = (f"import json, sys; sys.path.insert(0, {str(HERE)!r}); from bench_fold_stages import _worker; "
            f"print('@@' + json.dumps(_worker({args!r}, __import__('pathlib').Path({str(run_root)!r}), "
            f"{name != 'real'!r})))")
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if out.returncode != 0:
        raise click.ClickException(f"case {name}: the fold exited {out.returncode}:\n{out.stderr[-3000:]}")
    child = json.loads(next(line[2:] for line in out.stdout.splitlines() if line.startswith("@@")))
    return _figures(name, wall, child, _summary(run_root))


def _figures(name: str, wall: float, child: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    recorded = [(stage, round(seconds, 3)) for stage, seconds in child["stages"]]
    epochs = [s for stage, s in recorded if stage == "epoch"]
    totals: dict[str, float] = {}
    for stage, seconds in recorded:
        totals[stage] = round(totals.get(stage, 0.0) + seconds, 3)
    # the baselines (and the train split read for them) run inside training when the prior needs them:
    # then they are recorded before training's own record, otherwise during evaluation, after it
    training_at = next((i for i, (stage, _) in enumerate(recorded) if stage == "training"), len(recorded))
    inside_training = sum(s for stage, s in recorded[:training_at] if stage in ("baselines", "train split read"))
    if totals.get("training"):
        totals["training set-up"] = round(totals["training"] - sum(epochs) - inside_training, 3)
    fold_s = summary["total_seconds"]
    return {
        "case": name, "process_wall_s": round(wall, 2), "imports_s": round(child["imports_s"], 2),
        "fold_call_s": round(child["fold_call_s"], 2), "fold_total_seconds": fold_s,
        "train_seconds": summary["train_seconds"], "denoise_seconds": summary["denoise_seconds"],
        "epochs_train_steps_s": summary["epochs_train_only_s"],
        "outside_training_and_denoising_s": round(fold_s - summary["train_seconds"] - summary["denoise_seconds"], 1),
        "epochs": len(epochs), "epoch_s": epochs, "epochs_s_total": round(sum(epochs), 2),
        "epoch_share_of_fold": round(sum(epochs) / child["fold_call_s"], 3) if epochs else None,
        "outside_epochs_s": round(child["fold_call_s"] - sum(epochs), 2),
        "stages_s": totals, "report_s": round(child["report_s"], 2) if child["report_s"] is not None else None,
        "test_psnr_mean": summary["test_psnr_mean"],
        "train_examples_per_sec_median": summary["examples_per_sec_median"],
    }


def _data(name: str, work: Path, real: Path | None) -> Path | None:
    if name == "real":
        return real
    from spectra_cv.data import synth

    root = work / f"data_{name}"
    if not (root / "spectra_for_fold" / "manifest.csv").is_file():
        synth.write_synthetic(root, synth.PRESETS[name]())
    return root


@click.command()
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Also write the JSON here.")
@click.option("--data", "real", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="A real dataset (spectra_for_fold/ and metadata/) for the 'real' case.")
@click.option("--cases", default=",".join(CASES), show_default=True, help="Comma-separated cases to run.")
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the data and runs go (default: a temporary folder, removed after).")
def main(out: Path | None, real: Path | None, cases: str, work: Path | None) -> None:
    """Time every stage of one fold for each case; JSON to stdout and --out."""
    names = [c.strip() for c in cases.split(",") if c.strip()]
    unknown = sorted(set(names) - set(CASES))
    if unknown:
        raise click.BadParameter(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}",
                                 param_hint="--cases")
    with tempfile.TemporaryDirectory(prefix="fold_stages_") as tmp:
        base = work or Path(tmp)
        results = []
        for name in names:
            data = _data(name, base, real)
            if data is None:
                click.echo(f"case {name}: skipped (no --data)", err=True)
                continue
            click.echo(f"case {name}: running fold 1 …", err=True)
            results.append(_case(name, data.resolve(), base.resolve()))
    report = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}, "cases": results}
    if out is not None:
        from spectra_cv.io import atomic_write_json

        atomic_write_json(out, report)
    click.echo(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
