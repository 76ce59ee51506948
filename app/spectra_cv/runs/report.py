"""The cross-validation report: ``cv_report.md``, the tidy ``cv_metrics.csv`` and five plots.

Reads files only: the fold summary, each completed fold's metrics JSON (``score_table`` per
split, with its per-wavelength RMSE and per-spectrum PSNR percentiles), the learning curves, and
for the example plot a few test spectra of every completed fold (their groups' noisy spectra and
the examples' denoised outputs). No baseline is refitted. Everything is computed in memory first
and written last (PNGs, CSV, then the Markdown that links them), so an error leaves no partial
report. Across-fold figures are the mean of the per-fold means and their sample standard
deviation (ddof=1) over the completed folds; failed or running folds are listed, never averaged.
Metrics JSONs written before the profiles were kept still make a report: the plots that need them
are left out, with a sentence saying why. No torch anywhere; the plots (``report_plots``) import
matplotlib only when drawn.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spectra_cv import io as sio
from spectra_cv.errors import ConfigError, DataContractError, SpectraCVError
from spectra_cv.evaluation import format_metric
from spectra_cv.log import get_logger
from spectra_cv.metrics import DipMetricConfig
from spectra_cv.metrics.baselines import BASELINE_NAMES
from spectra_cv.paths import RunPaths
from spectra_cv.runs import events as ev
from spectra_cv.runs import fingerprint as fp
from spectra_cv.runs import report_plots as plot
from spectra_cv.runs.coordinator import fold_alive
from spectra_cv.runs.outputs import FoldOutputs
from spectra_cv.runs.report_data import (
    error_curves,
    example_spectra,
    folds_text,
    psnr_percentiles,
    read_learning_curves,
)
from spectra_cv.runs.report_facts import run_fact_lines
from spectra_cv.runs.report_paired import paired_groups, paired_lines, unseen_lines
from spectra_cv.runs.report_plots import Examples
from spectra_cv.runs.rerun import finished_run
from spectra_cv.runs.summary import read_summary

log = get_logger("runs.report")

MODEL = "model"
METHODS = (MODEL, *BASELINE_NAMES)
NAMES = {MODEL: "model", "identity": "identity (no denoising)", "savgol": "Savitzky–Golay",
         "gaussian": "Gaussian smoothing", "pca": "PCA projection", "ridge": "ridge regression",
         "wiener": "Wiener filter", "ridge_wiener": "mean of ridge and Wiener"}
SPLITS = ("val", "test", "control", "unseen")
CONTROL_METHODS = (MODEL, "ridge", "ridge_wiener")
"""Methods shown for the control samples (the treatments left out of CV) and the unseen samples."""
LEFT_OUT = {
    "control": ("Control samples (left out of CV, never trained on)",
                "Each fold's model and its baselines on the treatments no fold trains on (the zero-dose control), "
                "against their leave-one-out means: what a user meets applying the model to new controls."),
    "unseen": ("Samples never seen (leave-samples-out)",
               "Each fold's model and its baselines on samples of the CV treatments that the fold config leaves out "
               "of every role of the fold (never trained on, never used to choose anything), against their "
               "leave-one-out means: what a user meets applying the model to new samples of known treatments."),
}
"""The splits scored beside the folds: section title and what they say."""
REFERENCES = ("loo", "clean")
KEYS = ("fold", "split", "reference", "method")
CSV_METRICS = ("n_spectra", "psnr_mean", "psnr_std", "psnr_dataset", "sam_deg_mean", "sam_deg_std", "rmse_mean",
               "roi_psnr_mean", "dip_centroid_error_nm_mean", "dip_area_error_pct_mean", "dip_depth_mae_mean")
HEADLINE = (("psnr_mean", "PSNR dB", ".2f"), ("sam_deg_mean", "SAM °", ".3f"), ("rmse_mean", "RMSE", ".5f"),
            ("roi_psnr_mean", "ROI PSNR dB", ".2f"),
            ("dip_centroid_error_nm_mean", "dip centroid error nm", ".2f"),
            ("dip_area_error_pct_mean", "dip area error %", ".1f"))
CONSISTENT = ("config_hash", "preset", "model", "parameters", "code_version", "image", "data_root")
"""Summary columns that must agree across completed folds for their figures to be comparable."""
COMPARED = ("gaussian", "ridge", "ridge_wiener")
FOLDS_IN_CV = 5
"""How many folds a whole cross-validation has (the sample rotation's): fewer completed is a partial run."""
PLOT_TITLES = {"fold_metrics.png": "Per-fold test PSNR and SAM, model beside the baselines",
               "error_curves.png": "Per-wavelength test RMSE of the model, the best baseline and Gaussian "
                                   "smoothing, dip ROI shaded",
               "psnr_distributions.png": "Per-spectrum test PSNR per fold, model beside the best baseline",
               "spectra_examples.png": "Example test spectra of every fold: noisy, denoised, reference (LOO mean) "
                                       "with its dips",
               "learning_curves.png": "Learning curves: train loss and validation PSNR per fold"}


@dataclass(frozen=True, kw_only=True)
class ReportResult:
    """What ``build_report`` wrote, and which folds it aggregated."""

    markdown: Path
    metrics_csv: Path
    plots: tuple[Path, ...]
    completed_folds: tuple[int, ...]
    other_folds: tuple[int, ...]
    """Folds in the summary that are failed or still running (listed, not aggregated)."""


def _cell(value: Any) -> str:
    """A summary cell as text ('' for an empty cell, 3 rather than 3.0)."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _fmt(value: float, spec: str) -> str:
    return format_metric(value, spec, "—")


def read_fold_metrics(paths: RunPaths, folds: tuple[int, ...]) -> tuple[dict[int, dict], dict[int, str]]:
    """``fold_NN_metrics.json`` of each completed fold, and for each one missing or damaged why (naming
    the file and the fix): a damaged file costs its fold, not the report."""
    records: dict[int, dict] = {}
    unreadable: dict[int, str] = {}
    for fold in folds:
        path = paths.metrics_json(fold)
        if not path.is_file():
            unreadable[fold] = (f"{path}: missing, yet fold_summary.csv marks fold {fold} completed; rerun the fold "
                                "(it rewrites its metrics) or rebuild the summary with `spectra-cv coordinator "
                                "--rebuild`")
            continue
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            valid = isinstance(record["splits"]["test"][MODEL]["loo"], dict)
        except (OSError, ValueError, KeyError, TypeError, RecursionError):
            valid = False
        if not valid:
            unreadable[fold] = f"{path}: not a fold metrics file (needs splits.test.{MODEL}.loo); rerun fold {fold}"
            continue
        records[fold] = record
    return records, unreadable


def metrics_frame(fold_metrics: dict[int, dict]) -> pd.DataFrame:
    """Tidy table: one row per (fold, split, reference, method), then ``fold`` = mean and std rows.

    The aggregates are over the folds present for that (split, reference, method), NaN skipped;
    ``std`` is the sample std (ddof=1) of the per-fold values, NaN with a single fold.
    """
    rows = []
    for fold, record in sorted(fold_metrics.items()):
        for split in SPLITS:
            table = record["splits"].get(split) or {}
            for reference in REFERENCES:
                for method in _ordered(table):
                    metrics = table[method].get(reference)
                    if metrics is not None:
                        rows.append({"fold": str(fold), "split": split, "reference": reference, "method": method,
                                     "n_folds": 1, **{k: metrics.get(k, np.nan) for k in CSV_METRICS}})
    per_fold = pd.DataFrame(rows, columns=[*KEYS, "n_folds", *CSV_METRICS]).astype(dict.fromkeys(CSV_METRICS, float))
    grouped = per_fold.groupby(list(KEYS[1:]), sort=False)
    count = grouped["psnr_mean"].count().rename("n_folds")
    aggregates = [pd.concat([count, stat], axis=1).reset_index().assign(fold=label)
                  for label, stat in (("mean", grouped[list(CSV_METRICS)].mean()),
                                      ("std", grouped[list(CSV_METRICS)].std(ddof=1)))]
    return pd.concat([per_fold, *aggregates], ignore_index=True)[per_fold.columns]


def _ordered(table: dict) -> list[str]:
    return [m for m in METHODS if m in table] + sorted(set(table) - set(METHODS))


def _lookup(frame: pd.DataFrame) -> dict[tuple[str, ...], dict]:
    return {tuple(row[k] for k in KEYS): row for row in frame.to_dict("records")}


def _value(lookup: dict, fold: object, split: str, method: str | None, metric: str, reference: str = "loo") -> float:
    """A figure of the tidy table (fold: a number, "mean" or "std"); NaN when absent."""
    return float(lookup.get((str(fold), split, reference, method), {}).get(metric, float("nan")))


def _test(lookup: dict, fold: object, method: str | None, metric: str, reference: str = "loo") -> float:
    """A test-split figure of the tidy table (fold: a number, "mean" or "std"); NaN when absent."""
    return _value(lookup, fold, "test", method, metric, reference)


def _left_out(lookup: dict, folds: tuple[int, ...], split: str) -> list[str]:
    """The section of a split scored beside the folds (``LEFT_OUT``; empty when no fold scored it)."""
    scored = [f for f in folds if math.isfinite(_value(lookup, f, split, MODEL, "psnr_mean"))]
    if not scored:
        return []
    title, what = LEFT_OUT[split]
    lines = [f"## {title}", "", f"{what} Mean ± std over the {len(scored)} fold(s) that scored them.", "",
             "| method | PSNR dB | SAM ° |", "|---|---:|---:|"]
    for method in CONTROL_METHODS:
        cells = [f"{_fmt(_value(lookup, 'mean', split, method, key), spec)} ± "
                 f"{_fmt(_value(lookup, 'std', split, method, key), spec)}"
                 for key, spec in (("psnr_mean", ".2f"), ("sam_deg_mean", ".3f"))]
        lines.append(f"| {NAMES.get(method, method)} | " + " | ".join(cells) + " |")
    return lines + [""]


def _consistency(done: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Facts (columns agreeing across completed folds) and warnings (columns that differ)."""
    facts, warnings = [], []
    for column in CONSISTENT:
        values = {int(row["fold"]): _cell(row[column]) for _, row in done.iterrows()}
        distinct = sorted(set(values.values()))
        if len(distinct) == 1:
            facts.append(f"- {column}: `{distinct[0]}`" if distinct[0] else f"- {column}: (not recorded)")
        else:
            warnings.append(f"{column} differs: " + ", ".join(f"fold {f} `{v or '(empty)'}`"
                                                              for f, v in values.items()))
    return facts, warnings


def _comparison(lookup: dict, methods: list[str], folds: tuple[int, ...], reference: str) -> list[str]:
    """Headline table (mean ± std across folds per method), then one plain sentence per compared
    baseline: does the model beat it on mean test PSNR, by how much, in how many folds."""
    lines = ["| method | " + " | ".join(label for _, label, _ in HEADLINE) + " |",
             "|---|" + "---:|" * len(HEADLINE)]
    for method in methods:
        cells = [f"{_fmt(_test(lookup, 'mean', method, key, reference), spec)} ± "
                 f"{_fmt(_test(lookup, 'std', method, key, reference), spec)}" for key, _, spec in HEADLINE]
        name = f"**{NAMES[method]}**" if method == MODEL else NAMES.get(method, method)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    model = _test(lookup, "mean", MODEL, "psnr_mean", reference)
    for baseline in COMPARED:
        base = _test(lookup, "mean", baseline, "psnr_mean", reference)
        if not (math.isfinite(model) and math.isfinite(base)):
            lines.append(f"- The model cannot be compared with {NAMES[baseline]}: a mean test PSNR is missing.")
            continue
        wins = sum(_test(lookup, f, MODEL, "psnr_mean", reference) > _test(lookup, f, baseline, "psnr_mean", reference)
                   for f in folds)
        verb = "**beats**" if model > base else "**does not beat**"
        lines.append(f"- The model {verb} {NAMES[baseline]} on mean test PSNR: {model:.2f} vs {base:.2f} dB "
                     f"({model - base:+.2f} dB; higher in {wins} of {len(folds)} folds).")
    return lines


def _best_baseline(lookup: dict, fold: int, methods: list[str]) -> str | None:
    """The baseline with the highest mean test PSNR (against LOO means) in ``fold``; None if none scored."""
    scored = [(_test(lookup, fold, m, "psnr_mean"), m) for m in methods if m != MODEL]
    return max([s for s in scored if math.isfinite(s[0])], default=(float("nan"), None))[1]


def _margin(lookup: dict, folds: tuple[int, ...], baseline: str | dict[int, str]) -> tuple[np.ndarray, str]:
    """Per-fold test PSNR differences model − baseline (folds scoring both; ``baseline`` a method or a
    fold → method mapping) and their mean ± sample std as text ('+0.80 ± 0.12 dB')."""
    pick: dict[int, str] = baseline if isinstance(baseline, dict) else dict.fromkeys(folds, baseline)
    diffs = np.array([_test(lookup, f, MODEL, "psnr_mean") - _test(lookup, f, pick[f], "psnr_mean") for f in folds])
    diffs = diffs[np.isfinite(diffs)]
    if diffs.size == 1:
        return diffs, f"{diffs[0]:+.2f} dB (a single fold: no spread)"
    return diffs, f"{diffs.mean():+.2f} ± {diffs.std(ddof=1):.2f} dB" if diffs.size else ""


def best_baseline(lookup: dict, methods: list[str]) -> str:
    """The run's best baseline: the highest mean test PSNR across the completed folds (against the
    leave-one-out means). The verdict and every figure compare the model with this one."""
    scored = [(_test(lookup, "mean", m, "psnr_mean"), m) for m in methods if m != MODEL]
    best = max([s for s in scored if math.isfinite(s[0])], default=(float("nan"), "ridge_wiener"))[1]
    return str(best)


def _partial(folds: tuple[int, ...]) -> str:
    """The report's first words when the cross-validation is not whole."""
    if len(folds) >= FOLDS_IN_CV:
        return ""
    missing = [f for f in range(1, FOLDS_IN_CV + 1) if f not in folds]
    return (f"**Partial cross-validation: {len(folds)} of {FOLDS_IN_CV} folds completed** (missing: "
            f"{', '.join(map(str, missing))}); every figure below covers the completed folds only. ")


def _lead(lookup: dict, folds: tuple[int, ...], methods: list[str]) -> str:
    """The first paragraph's verdict: does the model beat the run's best baseline, by how much, in how
    many folds; then the same against each fold's own best baseline."""
    lead = best_baseline(lookup, methods)
    name = f"{NAMES.get(lead, lead)}, the best baseline"
    diffs, margin = _margin(lookup, folds, lead)
    if not diffs.size:
        return f"The model cannot be compared with {name}: no completed fold scored both on test."
    wins, n = int((diffs > 0).sum()), diffs.size
    if diffs.mean() > 0:
        text = f"The model beats {name}, in {wins} of {n} folds, by {margin} test PSNR on average"
    else:
        text = f"The model does not beat {name}: it is ahead in {wins} of {n} folds, by {margin} test PSNR on average"
    text += (" (per-fold mean test PSNR against the leave-one-out means, model minus baseline; mean ± sample "
             "std over folds).")
    best = {f: b for f in folds if (b := _best_baseline(lookup, f, methods)) is not None}
    diffs, margin = _margin(lookup, tuple(best), best)
    if diffs.size:
        counts: dict[str, list[int]] = {}
        for fold, baseline in best.items():
            counts.setdefault(NAMES.get(baseline, baseline), []).append(fold)
        which = "; ".join(f"{b} in fold{'s' if len(fs) > 1 else ''} {', '.join(map(str, fs))}"
                          for b, fs in counts.items())
        text += (f" Against each fold's best baseline ({which}) it is ahead in {int((diffs > 0).sum())} of "
                 f"{diffs.size} folds, by {margin}.")
    return text


def _per_fold(lookup: dict, folds: tuple[int, ...], methods: list[str]) -> list[str]:
    lines = ["| fold | test spectra | model PSNR dB | best baseline | baseline PSNR dB | Δ PSNR dB | model SAM ° "
             "| baseline SAM ° |", "|---:|---:|---:|---|---:|---:|---:|---:|"]
    for fold in folds:
        best = _best_baseline(lookup, fold, methods)
        model, base = (_test(lookup, fold, MODEL, "psnr_mean"), _test(lookup, fold, best, "psnr_mean"))
        best_name = NAMES.get(best, best) if best else "—"
        lines.append(f"| {fold} | {_fmt(_test(lookup, fold, MODEL, 'n_spectra'), '.0f')} | {_fmt(model, '.2f')} ± "
                     f"{_fmt(_test(lookup, fold, MODEL, 'psnr_std'), '.2f')} | {best_name} | "
                     f"{_fmt(base, '.2f')} | {_fmt(model - base, '+.2f')} | "
                     f"{_fmt(_test(lookup, fold, MODEL, 'sam_deg_mean'), '.3f')} | "
                     f"{_fmt(_test(lookup, fold, best, 'sam_deg_mean'), '.3f')} |")
    return lines


def _paired_section(records: dict[int, dict], frame: pd.DataFrame) -> list[str]:
    """The paired comparison over test groups with the run's best baseline (``runs.report_paired``)."""
    lookup = _lookup(frame)
    lead = best_baseline(lookup, _ordered({m: None for m in frame["method"]}))
    differences = {f: _test(lookup, f, MODEL, "psnr_mean") - _test(lookup, f, lead, "psnr_mean") for f in records}
    lines = paired_lines(paired_groups(records, lead, MODEL),
                         {f: d for f, d in differences.items() if math.isfinite(d)}, NAMES.get(lead, lead))
    unseen = paired_groups(records, lead, MODEL, split="unseen")
    if not unseen.groups.empty:
        lines += unseen_lines(unseen, NAMES.get(lead, lead))
    return lines


def render_markdown(paths: RunPaths, summary: pd.DataFrame, frame: pd.DataFrame, plots: list[str],
                    notes: list[str], data_warnings: list[str] | None = None,
                    captions: dict[str, str] | None = None, left_out: dict[str, str] | None = None,
                    paired: list[str] | None = None) -> str:
    """The whole ``cv_report.md`` text (plots: PNG file names under ``plots_dir`` to link;
    data_warnings: completed folds whose data changed since they ran; captions: a sentence under a
    plot; left_out: plot name → why it was not drawn, said where it would have been)."""
    captions, left_out = captions or {}, left_out or {}
    done = summary[summary["status"] == "completed"]
    others = summary[summary["status"] != "completed"]
    folds = tuple(int(f) for f in done["fold"])
    lookup = _lookup(frame)
    methods = _ordered({m: None for m in frame["method"]})
    facts, warnings = _consistency(done)
    warnings += list(data_warnings or [])
    warnings += [f"fold {int(r['fold'])}: a retrain is being swapped in ({_cell(r['retrain'])}): its files may "
                 "mix two runs until the swap ends"
                 for _, r in done.iterrows() if _cell(r["retrain"]).startswith("swap")]
    for warning in warnings:
        log.warning("cv report: completed folds are not comparable: %s", warning)
    pending = ", ".join(str(int(f)) for f in others["fold"]) or "none"
    lead = f"{_partial(folds)}{_lead(lookup, folds, methods)}"
    out = ["# Cross-validation report", "", f"{lead} Run root `{paths.root}`. Folds completed: {len(folds)} "
           f"({', '.join(map(str, folds))}); not completed: {len(others)} ({pending}).", ""]
    if warnings:
        out += ["> **WARNING: the completed folds were not run alike, so their figures are not comparable.** "
                "Rerun the odd folds with the same config, code and data before trusting the aggregates.", ">"]
        out += [f"> - {w}" for w in warnings] + [""]
    out += ["## Run facts", "", *facts, "", *run_fact_lines(paths, folds), "",
            "## Test metrics across folds (against leave-one-out means)", "",
            f"Mean ± sample std (ddof=1) of the per-fold means over the {len(folds)} completed fold(s); the "
            "reference of each spectrum is the leave-one-out mean of its (treatment, sample, angle) group in "
            "the test split. Baselines are fitted on each fold's train split.", "",
            *_comparison(lookup, methods, folds, "loo"), "",
            "## Per fold: the model against the best baseline (test PSNR)", "",
            "Model PSNR is mean ± std over the fold's test spectra; the best baseline is the one with the highest "
            "mean test PSNR in that fold.", "", *_per_fold(lookup, folds, methods), "", *(paired or []),
            *_left_out(lookup, folds, "control"), *_left_out(lookup, folds, "unseen")]
    if all(math.isfinite(_test(lookup, f, MODEL, "psnr_mean", "clean")) for f in folds):
        out += ["## Against the clean truth (synthetic data)", "",
                "**These are synthetic figures**: the data are generated, so each spectrum's noise-free truth is "
                "known. They measure the denoisers against that truth and say nothing about real spectra.", "",
                *_comparison(lookup, methods, folds, "clean"), ""]
    if plots or left_out:
        out += ["## Plots", "", "Each plot is also written as SVG beside its PNG (same name), for print.", ""]
        order = [n for n in PLOT_TITLES if n in plots or n in left_out]
        for name in order + [n for n in plots if n not in PLOT_TITLES]:
            if name not in plots:
                out += [f"*{PLOT_TITLES[name]}*: left out, {left_out[name]}.", ""]
                continue
            link = (paths.plots_dir / name).relative_to(paths.report_md.parent).as_posix()
            out += [f"![{PLOT_TITLES.get(name, name)}]({link})", ""]
            if captions.get(name):
                out += [captions[name], ""]
    retraining = [f"fold {int(r['fold'])}: {_cell(r['retrain'])}" for _, r in done.iterrows() if _cell(r["retrain"])]
    if retraining:
        out += ["## Retrains in progress", "",
                "A forced retrain works beside the finished result, which the figures above still describe: "
                + "; ".join(retraining) + ".", ""]
    out += ["## Folds not completed", ""]
    if len(others):
        out += ["| fold | status | error |", "|---:|---|---|"]
        for _, row in others.iterrows():
            error = _cell(row["error"]).replace("|", "\\|").replace("\n", " ") or "—"
            out.append(f"| {int(row['fold'])} | {_cell(row['status']) or '(no status)'} | {error} |")
    else:
        out.append("None: every fold in the summary completed.")
    if notes:
        out += ["", "## Notes", "", *[f"- {n}" for n in notes]]
    return "\n".join(out) + "\n"


def _live_states(paths: RunPaths, summary: pd.DataFrame) -> pd.DataFrame:
    """``running`` cells of folds whose lock is free become ``interrupted`` (the summary may be older
    than the kill)."""

    summary = summary.copy()
    for column in ("status", "retrain"):
        for i, row in summary.iterrows():
            if _cell(row[column]) == "running" and not fold_alive(paths, int(row["fold"])):
                summary.at[i, column] = "interrupted"
    return summary


def _inputs(paths: RunPaths, start: dict[str, Any]) -> tuple[Path, Path, Path | None] | None:
    """(data root, metadata dir, fold config) a fold read: relative to the run root, else where they were."""
    absolute = start.get("inputs_at") or {}

    def where(key: str, base: str) -> Path | None:
        value = start.get(key) if base == "rooted" else absolute.get(key)
        if not value:
            return None
        return paths.root / str(value) if base == "rooted" else Path(str(value))

    for base in ("rooted", "absolute"):
        data_root, meta = where("data_root", base), where("metadata_dir", base)
        if data_root is not None and meta is not None and data_root.is_dir():
            return data_root, meta, where("fold_config", base)
    return None


def data_changes(paths: RunPaths, folds: tuple[int, ...]) -> tuple[list[str], list[str]]:
    """(warnings, notes): completed folds whose data changed since they ran, naming the first changed
    file; folds whose data cannot be checked here."""

    warnings, notes = [], []
    for fold in folds:
        run = finished_run(ev.read_events(paths.events(fold)))
        if run is None:
            continue
        start = run[0].data
        if not start.get("data_digest") or not start.get("metadata_dir"):
            notes.append(f"fold {fold} ran before data fingerprints were recorded: its data were not checked")
            continue
        found = _inputs(paths, start)
        if found is None:
            notes.append(f"fold {fold}: its data root {start['data_root']} is not here, so its data were not checked")
            continue
        data_root, meta, folds_json = found
        config = start.get("config") or {}
        try:
            now = fp.fold_inputs(fold, data_root, meta, folds_json, film=bool(config.get("film_features")))
        except (DataContractError, ConfigError, SpectraCVError) as exc:
            warnings.append(f"fold {fold}: its data can no longer be read as it was: {exc}")
            continue
        change = fp.describe_change(str(start["data_digest"]), now, [FoldOutputs(paths, fold).fingerprint])
        if change is not None:
            warnings.append(f"fold {fold}: the data changed since it ran: {change}")
    return warnings, notes


MAX_SPECTRA_WARNINGS = 20
"""Spectra warnings the report lists (the count says how many more)."""


def spectra_warnings(records: dict[int, dict]) -> list[str]:
    """What each fold warned about its spectra when it read them (``data.degenerate``: saturated ones),
    as the report's warnings (``fold 2: test_manifest.csv row 7: …``)."""
    found = [f"fold {fold}: {w}" for fold, record in sorted(records.items())
             for w in record.get("data_warnings") or [] if isinstance(w, str)]
    if len(found) > MAX_SPECTRA_WARNINGS:
        found = found[:MAX_SPECTRA_WARNINGS] + [f"… and {len(found) - MAX_SPECTRA_WARNINGS} more spectra warnings "
                                                 "in the folds' metrics JSON (data_warnings)"]
    return found


def _draw(paths: RunPaths, done: pd.DataFrame, frame: pd.DataFrame, records: dict[int, dict],
          all_folds: tuple[int, ...], examples_per_fold: int,
          notes: list[str]) -> tuple[dict[str, dict[str, bytes]], dict[str, str], dict[str, str]]:
    """Every plot as PNG bytes, in memory: (pngs, captions, left_out: plot name → why it is not drawn)."""
    folds = tuple(int(f) for f in done["fold"])
    lookup = _lookup(frame)
    methods = _ordered({m: None for m in frame["method"]})
    pngs: dict[str, dict[str, bytes]] = {}
    captions: dict[str, str] = {}
    left_out: dict[str, str] = {}
    _drawn(pngs, left_out, "fold_metrics.png", lambda: plot.plot_fold_metrics(folds, {m: {k: [
        _test(lookup, f, m, k) for f in folds] for k in ("psnr_mean", "psnr_std", "sam_deg_mean", "sam_deg_std")}
        for m in methods}, NAMES))

    examples: list[Examples] = []
    for _, row in done.iterrows():
        fold = int(row["fold"])
        try:
            if not _cell(row["data_root"]):
                raise DataContractError(f"{paths.summary_csv}: fold {fold} has no data_root")
            examples.append(example_spectra(paths, fold, paths.root / _cell(row["data_root"]), examples_per_fold))
        except DataContractError as exc:
            notes.append(f"spectra examples of fold {fold} skipped: {exc}")
    dips = np.unique(np.concatenate([e.dip_wavelengths() for e in examples])) if examples else np.empty(0)

    roi = DipMetricConfig().roi
    lead = best_baseline(lookup, methods)
    curves, why = error_curves(paths, records, tuple(dict.fromkeys((MODEL, lead, "gaussian"))))
    if curves is None:
        left_out["error_curves.png"] = why
    else:
        _drawn(pngs, left_out, "error_curves.png",
               lambda: plot.plot_error_curves(curves, NAMES, roi, dips, lead))
        captions["error_curves.png"] = (
            f"Mean over {folds_text(list(curves.folds))} of each fold's per-wavelength RMSE on its test split against "
            f"the leave-one-out means (below: the model's over {NAMES[lead]}'s, the best baseline, under 1 where "
            f"the model errs less). Shaded: {roi[0]:g}–{roi[1]:g} nm, where the dip metrics and ROI PSNR look for dips "
            "and the objective's dip term does by default (dip_roi_min/max); red ticks: the dips found on the example "
            "references below." + (f" Not drawn from every fold: {why}." if why else ""))
    spreads, why = psnr_percentiles(paths, records, (MODEL, lead))
    if MODEL not in spreads:
        left_out["psnr_distributions.png"] = why
    else:
        _drawn(pngs, left_out, "psnr_distributions.png", lambda: plot.plot_psnr_distributions(spreads, NAMES))
        captions["psnr_distributions.png"] = (
            "Each fold's per-spectrum test PSNR against the leave-one-out means: box 25–75 %, line the median, "
            "whiskers 5–95 %, dots the worst and best spectrum." + (f" Not every fold: {why}." if why else ""))
    if examples:
        _drawn(pngs, left_out, "spectra_examples.png", lambda: plot.plot_spectra_examples(examples))
        captions["spectra_examples.png"] = (
            f"{folds_text([e.fold for e in examples]).capitalize()}: up to {examples_per_fold} test spectra each, "
            "one per treatment first; the reference is the leave-one-out mean of the spectrum's group.")
    else:
        left_out["spectra_examples.png"] = "no completed fold's test spectra could be read (see the notes)"
    curves_read = read_learning_curves(paths, all_folds, notes)
    _drawn(pngs, left_out, "learning_curves.png", lambda: plot.plot_learning_curves(curves_read))
    for name in left_out:
        captions.pop(name, None)
    return pngs, captions, left_out


def _drawn(pngs: dict[str, dict[str, bytes]], left_out: dict[str, str], name: str,
           draw: Callable[[], dict[str, bytes]]) -> None:
    """``pngs[name] = draw()``; a plot that fails is left out with the reason (the report says where it
    would have been) and a warning: a plot illustrates the results, it never fails the report."""
    try:
        pngs[name] = draw()
    except Exception as exc:  # noqa: BLE001 - matplotlib, fonts, a full disk: whatever breaks a drawing
        left_out[name] = f"drawing it failed ({type(exc).__name__}: {exc})"
        log.warning("report: %s not drawn: %s: %s", name, type(exc).__name__, exc)


def build_report(paths: RunPaths, examples_per_fold: int = 4, plots: bool = True) -> ReportResult:
    """Aggregate the completed folds into ``cv_report.md``, ``cv_metrics.csv`` and (unless not
    ``plots``) up to five PNGs under ``plots_dir``; ``examples_per_fold`` test spectra of every
    completed fold are drawn. A completed fold whose metrics JSON is missing or damaged is left out
    (listed among the folds not completed, with the reason); zero readable folds is an error and
    nothing is written."""
    summary = _live_states(paths, read_summary(paths.summary_csv))
    summary["status"] = summary["status"].map(_cell)
    done = summary[summary["status"] == "completed"]
    if done.empty:
        states = ", ".join(f"fold {int(r['fold'])} {r['status'] or '(no status)'}" for _, r in summary.iterrows())
        raise DataContractError(
            f"{paths.summary_csv}: no fold has completed ({states or 'no rows'}); nothing to report. Run one with "
            "`spectra-cv cv` (or a fold and the coordinator), then rerun `spectra-cv report`")
    records, unreadable = read_fold_metrics(paths, tuple(int(f) for f in done["fold"]))
    if not records:
        raise DataContractError("no completed fold's metrics can be read: " + "; ".join(unreadable.values()))
    summary = summary.astype({"status": object, "error": object})  # an all-empty column reads as float
    for fold, why in unreadable.items():  # shown among the folds not completed, with the reason
        row = summary["fold"].astype(int) == fold
        summary.loc[row, "status"], summary.loc[row, "error"] = "metrics unreadable", why
        log.warning("cv report: fold %d left out: %s", fold, why)
    done = summary[summary["status"] == "completed"]
    folds = tuple(int(f) for f in done["fold"])
    frame = metrics_frame(records)
    changed, notes = data_changes(paths, folds)
    changed += spectra_warnings(records)
    pngs: dict[str, dict[str, bytes]] = {}
    captions: dict[str, str] = {}
    left_out: dict[str, str] = {}
    if plots:
        pngs, captions, left_out = _draw(paths, done, frame, records, tuple(int(f) for f in summary["fold"]),
                                         examples_per_fold, notes)
    for note in notes:
        log.warning("cv report: %s", note)
    for name, why in left_out.items():
        log.warning("cv report: %s left out: %s", name, why)
    text = render_markdown(paths, summary, frame, list(pngs), notes, changed, captions, left_out,
                           paired=_paired_section(records, frame))
    written = tuple(sio.atomic_write_bytes(paths.plots_dir / Path(name).with_suffix(f".{fmt}").name, data)
                    for name, rendered in pngs.items() for fmt, data in rendered.items())
    sio.atomic_write_csv(paths.report_metrics_csv, frame)
    sio.atomic_write_text(paths.report_md, text)
    log.info("cv report: %d completed fold(s) -> %s", len(folds), paths.report_md)
    return ReportResult(markdown=paths.report_md, metrics_csv=paths.report_metrics_csv, plots=written,
                        completed_folds=folds, other_folds=tuple(int(f) for f in summary.loc[
                            summary["status"] != "completed", "fold"]))
