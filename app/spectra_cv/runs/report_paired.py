"""The report's paired verdict: the model against one baseline, test group by test group.

A fold's metrics JSON keeps, per method, the mean PSNR and SAM of each test group (treatment, sample,
angle) against the leave-one-out means (``per_group``). Every group is tested in exactly one fold, so
the groups of all completed folds are independent units of one comparison. From their paired
differences (model − baseline) this module gives the share of groups won, the median and the worst
group, the mean with a 95 % bootstrap interval over groups (percentile method, 10,000 resamples of
the groups, seed 0: the same files give the same interval), a Wilcoxon signed-rank test over the
folds' mean differences (SciPy; exact for few folds, two-sided), and the same per treatment, per
angle and per band of the baseline's SAM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

BOOTSTRAP_RESAMPLES = 10_000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Paired:
    """Per-group differences and what is said of them."""

    groups: pd.DataFrame
    """One row per (fold, group): treatment, model and baseline PSNR and SAM, their differences."""
    folds_without: tuple[int, ...]
    """Completed folds whose metrics JSON predates per-group scores (left out)."""


def paired_groups(records: dict[int, dict], baseline: str, model: str = "model", split: str = "test") -> Paired:
    """The per-group table of the model against ``baseline`` over every completed fold's ``split``."""
    rows, without = [], []
    for fold, record in sorted(records.items()):
        test = record.get("splits", {}).get(split, {})
        if split != "test" and not test:
            continue  # a fold that scored no such split
        mine, theirs = (test.get(model) or {}).get("per_group"), (test.get(baseline) or {}).get("per_group")
        if not (isinstance(mine, dict) and isinstance(theirs, dict)):
            without.append(fold)
            continue
        for group, psnr in mine.get("psnr", {}).items():
            base_psnr = theirs.get("psnr", {}).get(group)
            sam, base_sam = mine.get("sam_deg", {}).get(group), theirs.get("sam_deg", {}).get(group)
            if base_psnr is None or sam is None or base_sam is None:
                continue
            rows.append({"fold": fold, "group": group, "treatment": group.split("/")[0], "model_psnr": psnr,
                         "baseline_psnr": base_psnr, "d_psnr": psnr - base_psnr, "model_sam": sam,
                         "baseline_sam": base_sam, "d_sam": sam - base_sam})
    columns = ["fold", "group", "treatment", "model_psnr", "baseline_psnr", "d_psnr", "model_sam", "baseline_sam",
               "d_sam"]
    return Paired(groups=pd.DataFrame(rows, columns=columns), folds_without=tuple(without))


def bootstrap_interval(values: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES,
                       confidence: float = CONFIDENCE, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (resampling the values with replacement)."""
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(resamples, values.size))].mean(axis=1)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(low), float(high)


def signed_rank(fold_differences: np.ndarray) -> tuple[float, float] | None:
    """(W, two-sided p) of the Wilcoxon signed-rank test of the folds' mean differences against zero;
    None with fewer than two folds or no non-zero difference."""
    from scipy.stats import wilcoxon

    diffs = np.asarray(fold_differences, dtype=np.float64)
    if diffs.size < 2 or not np.any(diffs != 0):
        return None
    result = wilcoxon(diffs, alternative="two-sided")
    return float(result.statistic), float(result.pvalue)


def verdict(paired: Paired) -> dict[str, float | int | str]:
    """The paired verdict's figures (empty without groups): groups and groups won, the mean PSNR
    difference with its 95 % bootstrap interval, the median, the worst group, and SAM's."""
    table = paired.groups
    if table.empty:
        return {}
    d = table["d_psnr"].to_numpy()
    low, high = bootstrap_interval(d)
    worst = table.loc[table["d_psnr"].idxmin()]
    return {"groups": len(table), "folds": int(table["fold"].nunique()), "won": int((d > 0).sum()),
            "won_share": float((d > 0).mean()), "mean_db": float(d.mean()), "ci95_low_db": low, "ci95_high_db": high,
            "median_db": float(np.median(d)), "worst_group": str(worst["group"]), "worst_fold": int(worst["fold"]),
            "worst_db": float(worst["d_psnr"]), "sam_won": int((table["d_sam"] < 0).sum()),
            "sam_mean_deg": float(table["d_sam"].mean())}


def paired_lines(paired: Paired, fold_differences: dict[int, float], baseline_name: str) -> list[str]:
    """The report section: the verdict over groups, the interval, the signed-rank test, per treatment."""
    table = paired.groups
    lines = [f"## Paired comparison over test groups: model − {baseline_name}", ""]
    if paired.folds_without:
        lines += [f"Fold(s) {', '.join(map(str, paired.folds_without))} left out here: their metrics JSON predates "
                  "per-group scores (rerun them to include them).", ""]
    if table.empty:
        return lines + ["No per-group scores to compare.", ""]
    v = verdict(paired)
    lines += [
        f"Each (treatment, sample, angle) group is tested in exactly one fold; its mean test PSNR and SAM against "
        f"the leave-one-out means, model minus {baseline_name}, over the {v['groups']} groups of "
        f"{v['folds']} fold(s):", "",
        f"- PSNR: the model is ahead in **{v['won']} of {v['groups']} groups ({v['won_share']:.0%})**; mean "
        f"difference {v['mean_db']:+.2f} dB (95 % bootstrap interval over groups {v['ci95_low_db']:+.2f} … "
        f"{v['ci95_high_db']:+.2f} dB), median {v['median_db']:+.2f} dB; worst group `{v['worst_group']}` (fold "
        f"{v['worst_fold']}) {v['worst_db']:+.2f} dB.",
        f"- SAM: lower (better) in {v['sam_won']} of {v['groups']} groups; mean difference "
        f"{v['sam_mean_deg']:+.4f}°.",
    ]
    test = signed_rank(np.array(list(fold_differences.values())))
    if test is None:
        lines.append("- Signed-rank test over folds: not computed (fewer than two folds, or no difference).")
    else:
        lines.append(f"- Wilcoxon signed-rank test of the {len(fold_differences)} folds' mean test PSNR differences "
                     f"against zero: W = {test[0]:g}, two-sided p = {test[1]:.3g} (with five folds the smallest "
                     "p it can give is 0.0625: the folds are few, the groups above are the finer evidence).")
    return lines + ["", *per_treatment_lines(table, baseline_name)]


def unseen_verdict(paired: Paired) -> dict[str, Any]:
    """The paired verdict on the samples no fold saw (leave-samples-out), {} without any: each such
    group is scored by every fold's model, so the folds' differences are averaged per group before
    they are counted (groups, won, mean with its 95 % bootstrap interval, worst, SAM, per group)."""
    table = paired.groups
    if table.empty:
        return {}
    per_group = table.groupby("group", sort=True)[["model_psnr", "baseline_psnr", "d_psnr", "d_sam"]].mean()
    d = per_group["d_psnr"].to_numpy()
    low, high = bootstrap_interval(d)
    worst = str(per_group["d_psnr"].idxmin())
    return {"groups": len(d), "folds": int(table["fold"].nunique()), "won": int((d > 0).sum()),
            "mean_db": float(d.mean()), "ci95_low_db": low, "ci95_high_db": high, "worst_group": worst,
            "worst_db": float(per_group.loc[worst, "d_psnr"]), "sam_won": int((per_group["d_sam"] < 0).sum()),
            "model_psnr": float(per_group["model_psnr"].mean()),
            "baseline_psnr": float(per_group["baseline_psnr"].mean()),
            "per_group_db": {str(g): float(v) for g, v in per_group["d_psnr"].items()}}


def unseen_lines(paired: Paired, baseline_name: str) -> list[str]:
    """The report's lines of ``unseen_verdict``."""
    v = unseen_verdict(paired)
    return [f"### Samples never seen: model − {baseline_name}, per group", "",
            f"Over the {v['groups']} group(s) of samples left out of every role (each scored by "
            f"{v['folds']} fold model(s), averaged): the model is ahead in **{v['won']} of {v['groups']}**; "
            f"mean {v['mean_db']:+.2f} dB (95 % bootstrap interval over groups {v['ci95_low_db']:+.2f} … "
            f"{v['ci95_high_db']:+.2f} dB), worst `{v['worst_group']}` {v['worst_db']:+.2f} dB; SAM lower in "
            f"{v['sam_won']}.", ""]


DIFFICULTY_BANDS = 5
"""The groups are also split into this many bands of the baseline's SAM (easiest first)."""


def per_treatment_lines(table: pd.DataFrame, baseline_name: str) -> list[str]:
    """The differences broken down per treatment, per angle and per band of how hard a group is for
    the baseline (its SAM): groups, groups won, mean PSNR of both, mean differences of PSNR and SAM —
    so a gain carried by a few bright groups, or missing at one angle, shows."""
    angle = table["group"].str.split("/").str[-1]
    bands = min(DIFFICULTY_BANDS, len(table))
    band = pd.qcut(table["baseline_sam"].rank(method="first"), bands, labels=False) + 1
    limits = table.groupby(band)["baseline_sam"].agg(["min", "max"])
    names = {b: f"{b} of {bands}: {limits.loc[b, 'min']:.3f}–{limits.loc[b, 'max']:.3f}°" for b in limits.index}
    return [*_breakdown(table, table["treatment"], "Per treatment", "treatment", baseline_name),
            *_breakdown(table, angle, "Per angle", "angle", baseline_name),
            *_breakdown(table, band, f"Per band of {baseline_name}'s SAM (easiest first)",
                        f"band: {baseline_name} SAM", baseline_name, names)]


def _breakdown(table: pd.DataFrame, key: pd.Series, title: str, column: str, baseline_name: str,
               names: dict | None = None) -> list[str]:
    """One table of the groups of ``table`` split by ``key`` (sorted by it; ``names`` shows a key
    otherwise)."""
    lines = [f"### {title}", "",
             f"| {column} | groups | won | model PSNR dB | {baseline_name} PSNR dB | Δ PSNR dB | Δ SAM ° |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for value, part in table.groupby(key, sort=True):
        lines.append(f"| {(names or {}).get(value, value)} | {len(part)} | {int((part['d_psnr'] > 0).sum())} | "
                     f"{part['model_psnr'].mean():.2f} | {part['baseline_psnr'].mean():.2f} | "
                     f"{part['d_psnr'].mean():+.2f} | {part['d_sam'].mean():+.4f} |")
    return [*lines, ""]
