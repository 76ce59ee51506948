"""``spectra-cv k8s render``: the kustomize manifests under ``k8s/`` with a run's settings, as plain YAML.

The folds become one Indexed Job (one pod per fold), the report a second Job applied after it; the
rendered file's header gives the ``kubectl`` commands. See ``k8s/base/kustomization.yaml``.
"""

from __future__ import annotations

from pathlib import Path

import click

from spectra_cv.cli import CONTEXT_SETTINGS
from spectra_cv.cli.options import DIR, FILE, GreedyCommand, tracking_backend, tracking_option, tracking_uri_option


@click.group(context_settings=CONTEXT_SETTINGS)
def k8s() -> None:
    """Kubernetes: the folds as an Indexed Job, then the report (manifests in k8s/)."""


@k8s.command(cls=GreedyCommand, greedy=("folds",), context_settings=CONTEXT_SETTINGS)
@click.option("--overlay", type=click.Choice(["base", "cpu"]), default="base", show_default=True,
              help="base: GPU pods on the CUDA image; cpu: k8s/overlays/cpu (CPU image, no GPU limit).")
@click.option("--image", default=None, help="Image of every container, e.g. registry.example/spectra-cv:cuda "
              "[default: the overlay's, spectra-cv:cuda or spectra-cv:cpu].")
@click.option("--folds", multiple=True, type=int, help="Folds to run (several after one flag) [default 1 2 3 4 5].")
@click.option("--parallel", type=int, default=None, help="Fold pods at once [default: all folds].")
@click.option("--preset", type=click.Choice(["recipe", "cpu_quick"]), default=None,
              help="Starting settings of every fold [default: the manifest's, recipe].")
@click.option("--set", "sets", multiple=True, metavar="FLAG=VALUE",
              help="Any `spectra-cv train` flag, e.g. --set d_model=32 (repeatable).")
@click.option("--epochs", type=int, default=None, help="Maximum epochs.")
@click.option("--batch-size", type=int, default=None, help="Training batch size.")
@click.option("--device", default=None, help="auto, cpu, cuda [default: the overlay's, auto or cpu].")
@click.option("--force", is_flag=True, help="Retrain completed folds (each beside its finished result).")
@click.option("--data-claim", default=None, metavar="NAME",
              help="An existing claim holding the data (mounted read-only at /work/data) [default: the "
              "rendered claim spectra-cv-data].")
@click.option("--run-root-claim", default=None, metavar="NAME",
              help="An existing ReadWriteMany claim for the run root /work [default: the rendered claim "
              "spectra-cv-run].")
@click.option("--namespace", default=None, help="Namespace of every object [default: kubectl's].")
@tracking_option
@tracking_uri_option
@click.option("--tracking-experiment", default=None, envvar="MLFLOW_EXPERIMENT_NAME", show_envvar=True,
              help="MLflow experiment of the runs [default: spectra-cv]. The server's credentials come from the "
                   "Secret spectra-cv-tracking when it exists (MLFLOW_TRACKING_TOKEN, or _USERNAME and _PASSWORD).")
@click.option("--name-prefix", default="", help="Prepended to the Jobs' and rendered claims' names, e.g. run2-.")
@click.option("--source", type=DIR, default=None,
              help="A manifests folder (base/ and overlays/) of your own [default: the manifests shipped with "
                   "spectra-cv, the repository's k8s/].")
@click.option("--output", "-o", type=FILE, default=None, help="Write the YAML here [default: stdout].")
def render(overlay: str, image: str | None, folds: tuple[int, ...], parallel: int | None, preset: str | None,
           sets: tuple[str, ...], epochs: int | None, batch_size: int | None, device: str | None, force: bool,
           data_claim: str | None, run_root_claim: str | None, namespace: str | None, tracking: str | None,
           tracking_uri: str | None, tracking_experiment: str | None, name_prefix: str, source: Path | None,
           output: Path | None) -> None:
    """Render the Jobs and claims as YAML for kubectl apply.

    The output's header gives the two-step kubectl commands (the folds, then the report).
    """
    from spectra_cv import io as sio
    from spectra_cv.cluster import k8s as k8s_mod
    from spectra_cv.train.flags import build_run_config, parse_sets

    backend = tracking_backend(tracking, tracking_uri)
    mlflow = backend == "mlflow"  # a URI or experiment in the shell's environment alone sets nothing
    settings = k8s_mod.RenderSettings(
        overlay=overlay, image=image, folds=tuple(folds) or k8s_mod.ALL_FOLDS, parallel=parallel, preset=preset,
        sets=tuple(sets), epochs=epochs, batch_size=batch_size, device=device, force=force, data_claim=data_claim,
        run_root_claim=run_root_claim, namespace=namespace, name_prefix=name_prefix,
        tracking=backend, tracking_uri=tracking_uri if mlflow else None,
        tracking_experiment=tracking_experiment if mlflow else None)
    values = parse_sets(sets)  # a bad --set fails here, not in five pods
    build_run_config(preset or "recipe", {**values, "epochs": epochs, "batch_size": batch_size})
    rendered = k8s_mod.render(source or k8s_mod.SOURCE, settings)
    text = k8s_mod.to_yaml(rendered, settings, output.name if output is not None else "THIS_FILE")
    if output is None:
        click.echo(text, nl=False)
        return
    sio.atomic_write_text(output, text)
    click.echo(f"wrote {output}: {len(rendered.documents)} objects; apply the folds, then the report "
               "(the commands are at the top of the file)", err=True)
