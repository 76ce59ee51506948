"""``spectra-cv manifests --fold N``: write one fold's train/val/test manifests (docs/folds-and-metrics.md).

Same flags as the original ``scripts/generate_fold_manifests.py`` (which now wraps this command):
``--fold``, ``--config``, ``--input-manifest``, ``--output-root``; prints the counts the runbook
asks to verify (``train=4500 val=1500 test=1500`` on the real data) and every exclusion.
"""

from __future__ import annotations

from pathlib import Path

import click

from spectra_cv import paths
from spectra_cv.cli import CONTEXT_SETTINGS
from spectra_cv.cli.options import GreedyCommand
from spectra_cv.data import contract
from spectra_cv.errors import SpectraCVError
from spectra_cv.folds import N_FOLDS, ROLES, FoldResult, generate


def summary_lines(result: FoldResult) -> list[str]:
    """Human summary of one generated fold: source, per-treatment roles, exclusions, counts."""
    assignment = result.assignment
    lines = [f"fold {result.fold}: {assignment.source}, from {result.input_manifest}"]
    for treatment in assignment.roles["train"]:
        parts = [f"{role} {','.join(assignment.roles[role][treatment])}" for role in ROLES]
        lines.append(f"  {treatment}: " + " | ".join(parts))
    for treatment, reason in assignment.excluded.items():
        lines.append(f"  EXCLUDED {treatment}: {reason}")
    lines.append("counts: " + " ".join(f"{role}={result.counts[role]}" for role in ROLES))
    lines.append(f"Generated manifests in {result.directory} (record: {result.record.name})")
    return lines


@click.command("manifests", cls=GreedyCommand, context_settings=CONTEXT_SETTINGS)
@click.option("--fold", required=True, type=click.IntRange(1, N_FOLDS), help=f"Fold to generate (1..{N_FOLDS}).")
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help='folds.json {"folds": {"1": {"train": {t: [s, …]}, "val": {t: s}, "test": {t: s}}}} '
    "[default: the built-in rotation: in fold k each treatment's five samples, sorted and shifted by k − 1, "
    "go three to train, one to validation, one to test]",
)
@click.option(
    "--input-manifest",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"Manifest to split; its directory is the data root "
    f"[default: ${paths.ENV_DATA_ROOT}/{contract.MANIFEST_FILE}, i.e. "
    f"{paths.DEFAULT_DATA_ROOT / contract.MANIFEST_FILE}]",
)
@click.option(
    "--output-root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=f"Writes <output-root>/fold_XX/{{train,val,test}}_manifest.csv and fold.json "
    f"[default: ${paths.ENV_RUN_ROOT}/manifests, i.e. ./manifests]",
)
@click.option(
    "--check-files/--no-check-files",
    default=True,
    show_default=True,
    help="Fail when a relative_path does not exist under the data root.",
)
def manifests(
    fold: int, config: Path | None, input_manifest: Path | None, output_root: Path | None, check_files: bool
) -> None:
    """Write fold N's train/val/test manifests and prove no sample is in two roles."""
    if input_manifest is None:
        input_manifest = paths.data_root() / contract.MANIFEST_FILE
    if output_root is None:
        output_root = paths.RunPaths.from_env().manifests(fold).parent
    try:
        result = generate(fold, input_manifest, output_root, config=config, check_files=check_files)
    except SpectraCVError as exc:
        raise click.ClickException(str(exc)) from exc
    for line in summary_lines(result):
        click.echo(line)
