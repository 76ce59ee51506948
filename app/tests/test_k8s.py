"""spectra_cv.cluster.k8s and ``spectra-cv k8s render``: the kustomize manifests under k8s/, rendered.

Every rendered object is validated offline against the Kubernetes OpenAPI schemas (kubernetes-validate,
strict: no unknown fields), then the behaviour that matters is asserted on it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

yaml = pytest.importorskip("yaml")
kv = pytest.importorskip("kubernetes_validate")

from spectra_cv.cli import main  # noqa: E402
from spectra_cv.cli.fold import fold_from_env  # noqa: E402
from spectra_cv.cli.run_options import RunOptions, run_options  # noqa: E402
from spectra_cv.cluster import k8s  # noqa: E402
from spectra_cv.errors import ConfigError  # noqa: E402

SOURCE = Path(__file__).resolve().parents[2] / "k8s"
K8S_VERSION = "1.33.0"  # backoffLimitPerIndex and podFailurePolicy are GA from 1.33
VERSIONS = sorted({K8S_VERSION, kv.latest_version()})


def render(**kwargs: Any) -> k8s.Rendered:
    return k8s.render(SOURCE, k8s.RenderSettings(**kwargs))


def by_kind(rendered: k8s.Rendered) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in rendered.documents}


def job(rendered: k8s.Rendered, name: str) -> dict[str, Any]:
    return by_kind(rendered)[("Job", name)]


def container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in pod.get("containers", []) + pod.get("initContainers", []) if c["name"] == name)


def env_of(c: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in c.get("env", [])}


def cli(*args: str) -> Any:
    return CliRunner().invoke(main, ["k8s", "render", "--source", str(SOURCE), *args])


OPTION_SETS = [
    {},
    {"overlay": "cpu"},
    {"overlay": "cpu", "folds": (1, 2, 3), "parallel": 2, "preset": "cpu_quick", "sets": ("d_model=8", "n_layers=1"),
     "epochs": 2},
    {"folds": (2, 4, 5), "parallel": 1, "image": "registry.example:5000/spectra-cv:cuda", "namespace": "ml",
     "name_prefix": "run2-", "data_claim": "nfs-data", "run_root_claim": "cv-run.shared", "force": True},
    {"overlay": "cpu", "folds": (3,), "batch_size": 16, "device": "cpu"},
    {"tracking": "mlflow", "tracking_uri": "https://mlflow.lab.example", "tracking_experiment": "uv-spectra"},
]


# --- the kustomize inputs -------------------------------------------------------------------------


@pytest.mark.parametrize("directory", ["base", "overlays/cpu"])
def test_kustomization_lists_only_existing_resources_and_supported_keys(directory: str) -> None:
    path = k8s.kustomization_file(SOURCE / directory)
    spec = yaml.safe_load(path.read_text())
    assert spec["kind"] == "Kustomization" and spec["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert set(spec) <= k8s.SUPPORTED_KEYS
    for entry in spec["resources"]:
        target = SOURCE / directory / entry
        assert target.is_file() or (target.is_dir() and k8s.kustomization_file(target).is_file()), entry
    for doc in k8s.load_kustomization(SOURCE / directory):
        kv.validate(doc, K8S_VERSION, strict=True)  # the unrendered objects are valid as they stand


def test_every_base_file_is_a_listed_resource() -> None:
    listed = set(yaml.safe_load((SOURCE / "base/kustomization.yaml").read_text())["resources"])
    on_disk = {p.name for p in (SOURCE / "base").glob("*.yaml")} - {"kustomization.yaml"}
    assert on_disk == listed


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with its built-in kustomize) not installed")
@pytest.mark.parametrize("directory", ["base", "overlays/cpu"])
def test_own_kustomize_matches_kubectl_kustomize(directory: str) -> None:
    out = subprocess.run(["kubectl", "kustomize", str(SOURCE / directory)], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    key = lambda d: (d["kind"], d["metadata"]["name"])  # noqa: E731
    theirs = sorted((d for d in yaml.safe_load_all(out) if d), key=key)
    ours = sorted(k8s.load_kustomization(SOURCE / directory), key=key)
    assert ours == theirs


# --- rendered: valid, and what it says ------------------------------------------------------------


@pytest.mark.parametrize("options", OPTION_SETS, ids=lambda o: ",".join(o) or "defaults")
def test_rendered_objects_are_valid_kubernetes(options: dict[str, Any]) -> None:
    rendered = render(**options)
    for doc in rendered.documents:
        for version in VERSIONS:
            kv.validate(doc, version, strict=True)
    text = k8s.to_yaml(rendered, k8s.RenderSettings(**options))
    assert [d for d in yaml.safe_load_all(text) if d] == rendered.documents
    assert f"job/{rendered.folds_job}" in text and "component!=report" in text


@pytest.mark.parametrize("options", OPTION_SETS, ids=lambda o: ",".join(o) or "defaults")
def test_folds_job_is_indexed_one_completion_per_fold(options: dict[str, Any]) -> None:
    rendered = render(**options)
    settings = k8s.RenderSettings(**options)
    spec = job(rendered, rendered.folds_job)["spec"]
    n = len(settings.folds)
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == n
    assert spec["parallelism"] == min(settings.parallel or 5, n)
    assert spec["backoffLimitPerIndex"] >= 1 and spec["maxFailedIndexes"] == n
    refused = [r for r in spec["podFailurePolicy"]["rules"] if r["action"] == "FailIndex"]
    assert refused and 3 in refused[0]["onExitCodes"]["values"]
    assert refused[0]["onExitCodes"]["containerName"] == k8s.FOLD_CONTAINER
    assert spec["template"]["spec"]["restartPolicy"] == "Never"


def test_gpu_limit_in_base_not_in_cpu_overlay() -> None:
    gpu = job(render(), k8s.FOLDS_JOB)["spec"]["template"]["spec"]
    fold = container(gpu, "fold")
    assert fold["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert fold["image"] == "spectra-cv:cuda" and env_of(fold)["SPECTRA_CV_DEVICE"] == "auto"
    assert any(t["key"] == "nvidia.com/gpu" for t in gpu["tolerations"])
    cpu_rendered = render(overlay="cpu")
    for doc in cpu_rendered.documents:
        assert "nvidia" not in yaml.safe_dump(doc), doc["metadata"]["name"]
    cpu = job(cpu_rendered, k8s.FOLDS_JOB)["spec"]["template"]["spec"]
    assert "tolerations" not in cpu and "nodeSelector" not in cpu
    assert env_of(container(cpu, "fold"))["SPECTRA_CV_DEVICE"] == "cpu"
    for c in k8s.containers(cpu_rendered.documents):
        assert c["image"] == "spectra-cv:cpu" and env_of(c)["SPECTRA_CV_IMAGE"] == "spectra-cv:cpu"


@pytest.mark.parametrize("options", OPTION_SETS, ids=lambda o: ",".join(o) or "defaults")
def test_security_settings_like_compose(options: dict[str, Any]) -> None:
    rendered = render(**options)
    pods = list(k8s.pod_specs(rendered.documents))
    assert len(pods) == 2
    for pod in pods:
        assert pod["automountServiceAccountToken"] is False
        ctx = pod["securityContext"]
        assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] == 10001 and ctx["runAsGroup"] == 10001
        assert ctx["seccompProfile"]["type"] == "RuntimeDefault"
        volumes = {v["name"]: v for v in pod["volumes"]}
        for c in pod["containers"] + pod.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
            for path in ("/run/home", "/tmp"):
                assert "emptyDir" in volumes[mounts[path]["name"]], (c["name"], path)
            run_root = volumes[mounts["/work"]["name"]]["persistentVolumeClaim"]
            assert not mounts["/work"].get("readOnly")
            assert run_root["claimName"] == (options.get("run_root_claim")
                                             or options.get("name_prefix", "") + k8s.RUN_ROOT_CLAIM)
            if "/work/data" in mounts:
                data = mounts["/work/data"]
                assert data["readOnly"] is True and volumes[data["name"]]["persistentVolumeClaim"]["readOnly"] is True
    fold_pod = job(rendered, rendered.folds_job)["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m["name"] for m in container(fold_pod, "fold")["volumeMounts"]}
    shm = {v["name"]: v for v in fold_pod["volumes"]}[mounts["/dev/shm"]]["emptyDir"]
    assert shm["medium"] == "Memory" and shm["sizeLimit"]
    assert "/work/data" in mounts


def test_claims_rwx_run_root_rox_data_and_existing_claims_left_out() -> None:
    docs = by_kind(render())
    assert docs[("PersistentVolumeClaim", k8s.RUN_ROOT_CLAIM)]["spec"]["accessModes"] == ["ReadWriteMany"]
    assert docs[("PersistentVolumeClaim", k8s.DATA_CLAIM)]["spec"]["accessModes"] == ["ReadOnlyMany"]
    rendered = render(data_claim="nfs-data", name_prefix="run2-", namespace="ml")
    docs = by_kind(rendered)
    assert set(docs) == {("PersistentVolumeClaim", "run2-spectra-cv-run"), ("Job", "run2-spectra-cv-folds"),
                         ("Job", "run2-spectra-cv-report")}
    assert all(d["metadata"]["namespace"] == "ml" for d in rendered.documents)
    for pod in k8s.pod_specs(rendered.documents):
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]
                  if "persistentVolumeClaim" in v}
        assert claims == {"data": "nfs-data", "run-root": "run2-spectra-cv-run"}
    assert "claim nfs-data must exist in namespace ml" in k8s.to_yaml(rendered, k8s.RenderSettings())


def test_report_job_syncs_then_reports_on_the_run_root() -> None:
    pod = job(render(overlay="cpu"), k8s.REPORT_JOB)["spec"]["template"]["spec"]
    assert [c["command"] for c in pod["initContainers"]] == [["spectra-cv", "coordinator", "--once", "--run-root",
                                                              "/work"]]
    assert [c["command"] for c in pod["containers"]] == [["spectra-cv", "report", "--run-root", "/work"]]
    assert all("resources" not in c or "nvidia.com/gpu" not in c["resources"].get("limits", {})
               for c in pod["containers"])


# --- the pods run what the options say ------------------------------------------------------------


def test_default_folds_use_the_job_index(monkeypatch: pytest.MonkeyPatch) -> None:
    fold = container(job(render(folds=(1, 2, 3)), k8s.FOLDS_JOB)["spec"]["template"]["spec"], "fold")
    assert fold["command"] == ["spectra-cv", "fold"] and "args" not in fold
    assert "SPECTRA_CV_FOLDS" not in env_of(fold)
    for index in range(3):
        monkeypatch.setenv("JOB_COMPLETION_INDEX", str(index))
        assert fold_from_env(None) == index + 1


@pytest.mark.skipif(shutil.which("sh") is None, reason="no /bin/sh")
def test_other_folds_are_mapped_from_the_index_by_the_pod_command() -> None:
    fold = container(job(render(folds=(2, 4, 5)), k8s.FOLDS_JOB)["spec"]["template"]["spec"], "fold")
    assert env_of(fold)["SPECTRA_CV_FOLDS"] == "2 4 5"
    argv = fold["command"] + fold["args"]
    assert argv[-2:] == ["spectra-cv", "fold"]
    echo = argv[:-2] + ["echo", "spectra-cv", "fold"]  # the same command line, echoed instead of run
    for index, expected in enumerate((2, 4, 5)):
        env = {"PATH": "/usr/bin:/bin", "SPECTRA_CV_FOLDS": "2 4 5", "JOB_COMPLETION_INDEX": str(index)}
        out = subprocess.run(echo, env=env, capture_output=True, text=True, timeout=10)
        assert out.returncode == 0 and out.stdout.split() == ["spectra-cv", "fold", "--fold", str(expected)]
    beyond = subprocess.run(echo, env={"PATH": "/usr/bin:/bin", "SPECTRA_CV_FOLDS": "2 4 5",
                                       "JOB_COMPLETION_INDEX": "3"}, capture_output=True, text=True, timeout=10)
    assert beyond.returncode == 2 and "no fold for JOB_COMPLETION_INDEX=3" in beyond.stderr


def test_fold_pod_env_is_read_by_the_fold_options(monkeypatch: pytest.MonkeyPatch) -> None:
    rendered = render(overlay="cpu", preset="cpu_quick", sets=("d_model=8", "n_layers=1"), epochs=2, batch_size=16,
                      force=True, folds=(1, 2, 3))
    env = env_of(container(job(rendered, k8s.FOLDS_JOB)["spec"]["template"]["spec"], "fold"))
    assert env["SPECTRA_CV_RETRAINING_FOLDS"] == "1,2,3" and env["SPECTRA_CV_FORCE"] == "1"
    seen: list[RunOptions] = []

    @click.command()
    @run_options
    def probe(opts: RunOptions) -> None:
        seen.append(opts)

    result = CliRunner().invoke(probe, [], env=env)
    assert result.exit_code == 0, result.output
    opts = seen[0]
    assert (opts.preset, opts.sets, opts.epochs, opts.batch_size, opts.device, str(opts.run_root)) == (
        "cpu_quick", ("d_model=8", "n_layers=1"), 2, 16, "cpu", "/work")
    assert opts.config().model.d_model == 8


def test_tracking_settings_reach_the_fold_and_report_pods_as_their_options_read_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """--tracking-uri (implying MLflow) and --tracking-experiment become the variables `fold` and
    `report` read; the server's credentials come from an optional Secret (the pods start without it)."""
    result = cli("--overlay", "cpu", "--tracking-uri", "http://mlflow.lab:5000", "--tracking-experiment", "uv")
    assert result.exit_code == 0, result.output
    docs = [d for d in yaml.safe_load_all(result.output) if d]
    pods = {d["metadata"]["name"]: d["spec"]["template"]["spec"] for d in docs if d["kind"] == "Job"}
    for job_name, name in ((k8s.FOLDS_JOB, "fold"), (k8s.REPORT_JOB, "report")):
        c = container(pods[job_name], name)
        env = env_of(c)
        assert (env["SPECTRA_CV_TRACKING"], env["MLFLOW_TRACKING_URI"], env["MLFLOW_EXPERIMENT_NAME"]) == (
            "mlflow", "http://mlflow.lab:5000", "uv")
        assert c["envFrom"] == [{"secretRef": {"name": "spectra-cv-tracking", "optional": True}}]
    seen: list[RunOptions] = []

    @click.command()
    @run_options
    def probe(opts: RunOptions) -> None:
        seen.append(opts)

    assert CliRunner().invoke(probe, [], env=env_of(container(pods[k8s.FOLDS_JOB], "fold"))).exit_code == 0
    assert (seen[0].tracking, seen[0].tracking_uri) == ("mlflow", "http://mlflow.lab:5000")
    # a server in the shell's environment alone renders nothing; with TensorBoard the URI is not passed
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://elsewhere:5000")
    for args, expected in (((), None), (("--tracking", "tensorboard"), "tensorboard")):
        out = cli("--overlay", "cpu", *args)
        fold_env = env_of(container(next(d for d in yaml.safe_load_all(out.output) if d and d["kind"] == "Job"
                                         and d["metadata"]["name"] == k8s.FOLDS_JOB)["spec"]["template"]["spec"],
                                    "fold"))
        assert fold_env.get("SPECTRA_CV_TRACKING") == expected and "MLFLOW_TRACKING_URI" not in fold_env


# --- the CLI --------------------------------------------------------------------------------------


def test_cli_writes_the_file_and_stdout(tmp_path: Path) -> None:
    out = tmp_path / "cv.yaml"
    result = cli("--overlay", "cpu", "--folds", "1", "2", "3", "--parallel", "2", "--set", "d_model=8", "--output",
                 str(out))
    assert result.exit_code == 0, result.output
    docs = [d for d in yaml.safe_load_all(out.read_text()) if d]
    spec = next(d for d in docs if d["metadata"]["name"] == k8s.FOLDS_JOB)["spec"]
    assert (spec["completions"], spec["parallelism"]) == (3, 2)
    stdout = cli("--overlay", "cpu", "--folds", "1", "2", "3", "--parallel", "2", "--set", "d_model=8")
    assert stdout.exit_code == 0
    assert [d for d in yaml.safe_load_all(stdout.output) if d] == docs
    assert "apply -f cv.yaml -l app.kubernetes.io/component!=report" in out.read_text()


@pytest.mark.parametrize(("args", "names"), [
    (["--folds", "0"], "--folds"),
    (["--folds", "1", "6"], "--folds"),
    (["--folds", "2", "2"], "listed twice"),
    (["--parallel", "0"], "--parallel"),
    (["--epochs", "0"], "--epochs"),
    (["--data-claim", "Data_Claim"], "--data-claim"),
    (["--run-root-claim", "-run"], "--run-root-claim"),
    (["--namespace", "ML"], "--namespace"),
    (["--name-prefix", "Run_"], "--name-prefix"),
    (["--set", "d_model=8 n_layers=1"], "--set"),
    (["--set", "no_such_flag=1"], "no_such_flag"),
    (["--device", "gpu"], "--device"),
    (["--overlay", "gpu"], "--overlay"),
    (["--tracking", "tensorboard", "--tracking-uri", "http://lab:5000"], "--tracking-uri"),
    (["--tracking-uri", "http://lab:5000", "--tracking-experiment", " "], "--tracking-experiment"),
])
def test_bad_options_name_the_option(args: list[str], names: str) -> None:
    result = cli(*args)
    assert result.exit_code != 0
    assert names in result.output, result.output


def test_missing_source_says_where_to_run(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["k8s", "render", "--source", str(tmp_path / "k8s")])
    assert result.exit_code == 1 and "--source" in result.output and "repository root" in result.output


# --- the kustomize subset -------------------------------------------------------------------------


def test_json_patch_ops() -> None:
    doc = {"a": {"b/c": [1, 2], "d": "x"}}
    k8s.json_patch(doc, [{"op": "add", "path": "/a/b~1c/-", "value": 3},
                         {"op": "add", "path": "/a/b~1c/0", "value": 0},
                         {"op": "replace", "path": "/a/d", "value": {"y": 1}},
                         {"op": "remove", "path": "/a/b~1c/1"},
                         {"op": "add", "path": "/e", "value": []}])
    assert doc == {"a": {"b/c": [0, 2, 3], "d": {"y": 1}}, "e": []}
    for bad in ({"op": "remove", "path": "/a/nope"}, {"op": "replace", "path": "/a/b~1c/9", "value": 1},
                {"op": "move", "path": "/a", "from": "/e"}, {"op": "add", "path": "/x/y", "value": 1}):
        with pytest.raises(ConfigError, match="op 1"):
            k8s.json_patch(doc, [bad])


def test_images_transformer() -> None:
    docs = [{"kind": "Job", "metadata": {"name": "j"}, "spec": {"template": {"spec": {
        "containers": [{"name": "a", "image": "spectra-cv:cuda"}, {"name": "b", "image": "other:1"}],
        "initContainers": [{"name": "c", "image": "spectra-cv"}]}}}}]
    k8s.apply_image(docs, {"name": "spectra-cv", "newName": "reg:5000/team/spectra-cv", "newTag": "cpu"}, "t")
    assert [c["image"] for c in k8s.containers(docs)] == ["reg:5000/team/spectra-cv:cpu", "other:1",
                                                          "reg:5000/team/spectra-cv:cpu"]
    k8s.apply_image(docs, {"name": "reg:5000/team/spectra-cv", "digest": "sha256:abc"}, "t")
    assert next(k8s.containers(docs))["image"] == "reg:5000/team/spectra-cv@sha256:abc"


def test_unsupported_kustomization_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: [job.yaml]\nnamePrefix: x-\n")
    with pytest.raises(ConfigError, match=r"kustomization.yaml: namePrefix not supported"):
        k8s.load_kustomization(tmp_path)
    (tmp_path / "kustomization.yaml").write_text("resources: [missing.yaml]\n")
    with pytest.raises(ConfigError, match="resource 'missing.yaml' does not exist"):
        k8s.load_kustomization(tmp_path)
    (tmp_path / "job.yaml").write_text("kind: Job\nmetadata: {name: j}\n")
    (tmp_path / "kustomization.yaml").write_text(
        "resources: [job.yaml]\npatches:\n- target: {kind: Job, name: k}\n  patch: '[]'\n")
    with pytest.raises(ConfigError, match="matches no resource"):
        k8s.load_kustomization(tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        "resources: [job.yaml]\npatches:\n- target: {kind: Job, name: j}\n  patch: '{spec: {}}'\n")
    with pytest.raises(ConfigError, match="not strategic merge"):
        k8s.load_kustomization(tmp_path)


def test_render_works_anywhere_from_the_manifests_shipped_in_the_package(tmp_path):
    """No --source, run from a folder without k8s/ (as from an installed wheel): the package's own
    manifests are rendered; the repository's k8s/ is the same folder."""
    from spectra_cv.cluster import k8s as k8s_mod

    assert Path.cwd() == tmp_path and not (tmp_path / "k8s").exists()
    result = CliRunner().invoke(main, ["k8s", "render", "--overlay", "cpu", "--image", "reg.example/spectra-cv:cpu"])
    assert result.exit_code == 0, result.output
    assert "kind: Job" in result.output and "reg.example/spectra-cv:cpu" in result.output
    assert SOURCE.resolve() == k8s_mod.SOURCE and k8s_mod.SOURCE.is_relative_to(Path(k8s_mod.__file__).parent)
