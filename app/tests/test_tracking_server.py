"""A real MLflow tracking server, started here as a lab runs one (``mlflow server`` with a SQL backend
and proxied artifacts), and a real fold run sending its runs to it with ``--tracking-uri``.

Slow: the server takes ~15 s to start. Needs the server's own libraries (the test extra lists them:
mlflow-skinny plus Flask, Flask-CORS, graphene, huey and aiohttp).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from runs_support import fold_args, spectra_cv
from spectra_cv.paths import RunPaths

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_until_up(url: str, proc: subprocess.Popen, log: Path, seconds: float = 180.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"mlflow server exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"mlflow server not up after {seconds:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def server(tmp_path):
    """(URL, the server's artifact folder) of a tracking server on a free local port."""
    pytest.importorskip("mlflow", reason="the tracking extra: pip install 'spectra-cv[tracking]'")
    for module in ("flask", "flask_cors", "graphene", "huey", "aiohttp"):
        pytest.importorskip(module, reason="the MLflow server's libraries: pip install 'spectra-cv[test]'")
    executable = Path(sys.executable).with_name("mlflow")
    here = tmp_path / "server"
    here.mkdir()
    port, log = _free_port(), here / "server.log"
    command = [str(executable) if executable.exists() else "mlflow", "server", "--host", "127.0.0.1",
               "--port", str(port), "--workers", "1", "--backend-store-uri", f"sqlite:///{here / 'mlflow.db'}",
               "--artifacts-destination", str(here / "artifacts")]
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=here, env=env,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, proc, log)
        yield url, here / "artifacts"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # uvicorn and its worker
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def test_a_fold_run_with_tracking_uri_shows_on_the_server_as_a_child_of_the_cv_run(server, uninterrupted, data,
                                                                                    tmp_path, monkeypatch):
    """`fold --tracking-uri http://…` (no --tracking: the URI implies MLflow): the server holds, in the
    experiment MLFLOW_EXPERIMENT_NAME names, one parent CV run with the across-fold figures and the
    report and its plots (uploaded through the server, byte for byte), and the fold's run as its child
    with the per-epoch metrics and the scores; the run root's own store is not written."""
    from mlflow.tracking import MlflowClient

    url, artifact_store = server
    root = tmp_path / "run"
    shutil.copytree(uninterrupted, root, ignore=shutil.ignore_patterns("*.lock"))
    spectra_cv("report", "--run-root", ".", cwd=root)
    plots_dir = RunPaths(root=root).plots_dir
    plots = sorted(p.name for p in plots_dir.glob("*.png"))
    assert plots
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "lab-uv-spectra")
    out = spectra_cv("fold", "--fold", "1", *fold_args(data, root), "--tracking-uri", url, cwd=root)
    assert "[fold 1] skipped" in out.stdout
    assert "not exported" not in out.stderr, out.stderr[-2000:]

    client = MlflowClient(tracking_uri=url)
    experiment = client.get_experiment_by_name("lab-uv-spectra")
    assert experiment is not None and experiment.artifact_location.startswith("mlflow-artifacts:")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("spectra_cv.kind") == "cross-validation"]
    children = [r for r in runs if r not in parents]
    assert len(parents) == 1 and len(children) == 1
    parent, child = parents[0], children[0]
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert child.info.status == "FINISHED" and child.info.run_name.startswith("fold_01")
    assert len(client.get_metric_history(child.info.run_id, "val/psnr")) >= 2  # one point per validated epoch
    assert any(k.startswith("score/test/model/") for k in child.data.metrics)
    assert parent.data.metrics["folds_completed"] == 1.0 and "cv_test_psnr_mean" in parent.data.metrics

    uploaded = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert {f"plots/{name}" for name in plots} <= uploaded
    fetched = Path(client.download_artifacts(parent.info.run_id, f"plots/{plots[0]}", str(tmp_path / "fetched")))
    assert fetched.read_bytes() == (plots_dir / plots[0]).read_bytes()
    assert list(artifact_store.rglob(plots[0]))  # stored by the server, not written by the client
    assert not (root / "tracking" / "mlflow").exists()

    # `report --tracking-uri` (what the Kubernetes report Job runs): the same runs, updated, none twice
    out = spectra_cv("report", "--run-root", ".", "--tracking-uri", url, cwd=root)
    assert f"mlflow: {url}" in out.stdout
    assert len(client.search_runs([experiment.experiment_id])) == 2
    assert client.get_experiment_by_name("spectra-cv") is None  # the lab's experiment only
    assert "cv_report.md" in {a.path for a in client.list_artifacts(parent.info.run_id)}
