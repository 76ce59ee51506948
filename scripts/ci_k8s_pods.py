#!/usr/bin/env python3
"""CI: run the rendered Kubernetes pods of the CPU overlay in Docker, then check the results on the host.

After the CI container stage (the image spectra-cv:cpu exists, the engine runs; this script neither
builds nor starts/stops anything but its own containers). ~1-3 minutes on 2 cores:

  1. tiny synthetic data (`spectra-cv data synth --preset tiny`, as scripts/ci_container.sh)
  2. `spectra-cv k8s render --overlay cpu` for three folds (default 1 3 5: not 1..N, so the pods' own
     index → fold mapping runs too) with the tiny model of the container stage
  3. every pod of the folds Job (JOB_COMPLETION_INDEX=0..N-1, `parallelism` at a time), then the report
     Job's init container and container, each as `docker run` built FROM the rendered YAML: its command,
     args and env, user and group, read-only root, dropped capabilities, no privilege escalation
     (no-new-privileges), emptyDirs as tmpfs of their sizeLimit, the claims as host folders at their
     mount paths (read-only where the manifest says so). What the manifest says is what runs. Not
     translated: resource requests/limits and the scheduler; --network none (these hosts have no bridge).
  4. host checks: each fold's completion record and audit log, fold_summary.csv with the folds
     completed on the image, cv_report.md and cv_metrics.csv, outputs owned by the pods' user

  .venv/bin/python scripts/ci_k8s_pods.py [--image spectra-cv:cpu] [--folds 1 3 5] [--work .docker-build/k8s]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "spectra_cv"]
# The tiny model of the CI container stage (scripts/ci_container.sh: PRESET, EPOCHS, SETS).
TINY = ["--preset", "cpu_quick", "--epochs", "2", "--set", "d_model=8", "--set", "n_layers=1"]
_QUANTITY = re.compile(r"^(\d+)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
_UNITS = {None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
START = time.monotonic()


def say(message: str) -> None:
    print(f"[ci-k8s {time.monotonic() - START:5.0f}s] {message}", flush=True)


def fail(message: str) -> None:
    print(f"[ci-k8s] FAILED: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def quantity_bytes(value: str) -> int:
    """``512Mi`` → 536870912 (the Kubernetes quantities the manifests use)."""
    match = _QUANTITY.fullmatch(str(value))
    if not match:
        fail(f"sizeLimit {value!r}: not a quantity this script translates")
    return int(match.group(1)) * _UNITS[match.group(2)]


def docker_run(pod: dict[str, Any], container: dict[str, Any], claims: dict[str, Path], name: str,
               extra_env: dict[str, str]) -> list[str]:
    """The `docker run` command line of one container of a pod spec."""
    ctx = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    argv = ["docker", "run", "--rm", "--name", name, "--network", "none", "--pull", "never"]
    if ctx.get("runAsNonRoot") and not ctx.get("runAsUser"):
        fail(f"{name}: runAsNonRoot without runAsUser (the image's user would decide)")
    if "runAsUser" in ctx:
        argv += ["--user", f"{ctx['runAsUser']}:{ctx.get('runAsGroup', ctx['runAsUser'])}"]
    if "fsGroup" in pod.get("securityContext", {}):
        argv += ["--group-add", str(pod["securityContext"]["fsGroup"])]
    if ctx.get("readOnlyRootFilesystem"):
        argv.append("--read-only")
    for cap in ctx.get("capabilities", {}).get("drop", []):
        argv += ["--cap-drop", cap]
    for cap in ctx.get("capabilities", {}).get("add", []):
        argv += ["--cap-add", cap]
    if ctx.get("allowPrivilegeEscalation") is False:
        argv += ["--security-opt", "no-new-privileges"]
    if ctx.get("privileged"):
        fail(f"{name}: a privileged container")
    # seccompProfile RuntimeDefault is Docker's default profile: nothing to add.
    env = {}
    for item in container.get("env", []):
        if "value" not in item:
            fail(f"{name}: env {item['name']} is not a plain value (valueFrom is not translated)")
        env[item["name"]] = str(item["value"])
    for source in container.get("envFrom", []):
        # an optional Secret (the tracking server's credentials) that this cluster-less check has none of
        if not source.get("secretRef", {}).get("optional"):
            fail(f"{name}: envFrom {source} is not an optional secretRef (not translated)")
    env.update(extra_env)
    for key, value in env.items():
        argv += ["--env", f"{key}={value}"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        path = mount["mountPath"]
        if "emptyDir" in volume:
            size = volume["emptyDir"].get("sizeLimit")
            opts = "rw,exec,nosuid,nodev,mode=1777" + (f",size={quantity_bytes(size)}" if size else "")
            argv += ["--tmpfs", f"{path}:{opts}"]
        elif "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"]["claimName"]
            if claim not in claims:
                fail(f"{name}: claim {claim} has no host folder (known: {', '.join(claims)})")
            host = claims[claim] / mount.get("subPath", "")
            read_only = mount.get("readOnly") or volume["persistentVolumeClaim"].get("readOnly")
            argv += ["--volume", f"{host}:{path}{':ro' if read_only else ''}"]
        else:
            fail(f"{name}: volume {mount['name']} is neither an emptyDir nor a claim")
    if container.get("workingDir"):
        argv += ["--workdir", container["workingDir"]]
    command, args = list(container.get("command", [])), list(container.get("args", []))
    if command:
        argv += ["--entrypoint", command[0], container["image"], *command[1:], *args]
    else:
        argv += [container["image"], *args]
    return argv


def run(argv: list[str], log: Path) -> int:
    with log.open("w") as out:
        return subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False).returncode


def run_pod_container(pod: dict[str, Any], container: dict[str, Any], claims: dict[str, Path], name: str,
                      logs: Path, extra_env: dict[str, str] | None = None) -> None:
    argv = docker_run(pod, container, claims, name, extra_env or {})
    (logs / f"{name}.argv.json").write_text(json.dumps(argv, indent=1))
    code = run(argv, logs / f"{name}.log")
    if code != 0:
        print((logs / f"{name}.log").read_text()[-4000:], file=sys.stderr)
        fail(f"{name} exited {code} (log {logs / f'{name}.log'}, command {logs / f'{name}.argv.json'})")
    say(f"{name}: ok")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="spectra-cv:cpu")
    parser.add_argument("--folds", nargs="+", type=int, default=[1, 3, 5])
    parser.add_argument("--work", type=Path, default=ROOT / ".docker-build" / "k8s")
    parser.add_argument("--max-parallel", type=int, default=os.cpu_count() or 1,
                        help="Fold containers at once, at most (the Job's parallelism otherwise).")
    opts = parser.parse_args()
    if subprocess.run(["docker", "image", "inspect", opts.image], capture_output=True).returncode != 0:
        fail(f"no image {opts.image}: run after the CI container stage (make build VARIANT=cpu)")
    work = opts.work.resolve()
    shutil.rmtree(work, ignore_errors=True)
    data, run_root, logs = work / "data", work / "run", work / "pod-logs"
    run_root.mkdir(parents=True)
    logs.mkdir()

    say("tiny synthetic data")
    subprocess.run(CLI + ["-q", "data", "synth", str(data), "--preset", "tiny", "--seed", "0"], check=True)
    rendered = work / "cv.yaml"
    say(f"render the cpu overlay: folds {' '.join(map(str, opts.folds))}")
    subprocess.run(CLI + ["k8s", "render", "--overlay", "cpu", "--image", opts.image, "--source", str(ROOT / "k8s"),
                          "--folds", *map(str, opts.folds), *TINY, "--output", str(rendered)], check=True)
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(rendered.read_text()) if d}
    jobs = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for (kind, _), d in docs.items()
            if kind == "Job"}
    claims_by_mode = {d["spec"]["accessModes"][0]: name for (kind, name), d in docs.items()
                      if kind == "PersistentVolumeClaim"}
    claims = {claims_by_mode["ReadWriteMany"]: run_root, claims_by_mode["ReadOnlyMany"]: data}
    folds_job, report_job = jobs["folds"], jobs["report"]
    pod = folds_job["spec"]["template"]["spec"]
    uid, gid = pod["securityContext"]["runAsUser"], pod["securityContext"].get("fsGroup", 0)
    if os.geteuid() == 0:  # what fsGroup does for the claim: the run root belongs to the pods' user
        os.chown(run_root, uid, gid)
    else:
        run_root.chmod(0o777)

    completions, parallelism = folds_job["spec"]["completions"], folds_job["spec"]["parallelism"]
    if completions != len(opts.folds):
        fail(f"completions {completions} for {len(opts.folds)} folds")
    lanes = max(1, min(parallelism, opts.max_parallel))
    say(f"folds Job {folds_job['metadata']['name']}: {completions} pods, {lanes} at a time")
    (container,) = pod["containers"]
    for init in pod.get("initContainers", []):
        fail(f"the folds pod has an init container {init['name']} this script does not run")

    def fold_pod(index: int) -> None:
        run_pod_container(pod, container, claims, f"{folds_job['metadata']['name']}-{index}", logs,
                          {"JOB_COMPLETION_INDEX": str(index)})

    with ThreadPoolExecutor(max_workers=lanes) as pool:
        list(pool.map(fold_pod, range(completions)))

    report_pod = report_job["spec"]["template"]["spec"]
    say(f"report Job {report_job['metadata']['name']}: init containers, then the container")
    for part in report_pod.get("initContainers", []) + report_pod["containers"]:
        run_pod_container(report_pod, part, claims, f"{report_job['metadata']['name']}-{part['name']}", logs)

    say("host checks")
    for index, fold in enumerate(opts.folds):  # pod i runs the i-th fold of the list
        if f"[fold {fold}] completed" not in (logs / f"{folds_job['metadata']['name']}-{index}.log").read_text():
            fail(f"pod {index} did not report '[fold {fold}] completed'")
    # Mount points of other volumes inside the run root are made by the engine (root's), as by kubelet.
    run_volumes = {v["name"] for v in pod["volumes"]
                   if v.get("persistentVolumeClaim", {}).get("claimName") == claims_by_mode["ReadWriteMany"]}
    run_mount = next(m["mountPath"] for m in container["volumeMounts"] if m["name"] in run_volumes)
    nested = {run_root / Path(m["mountPath"]).relative_to(run_mount) for m in container["volumeMounts"]
              if m["mountPath"].startswith(run_mount + "/")}
    check(run_root, opts.folds, opts.image, uid, nested)
    say("passed")


def check(run_root: Path, folds: list[int], image: str, uid: int, mount_points: set[Path]) -> None:
    import pandas as pd

    for fold in folds:
        tag = f"fold_{fold:02d}"
        record = run_root / f"checkpoints/Track_H_{tag}/fold_complete.json"
        if not record.is_file():
            fail(f"fold {fold}: no completion record {record}")
        audit = run_root / f"logs/Track_H_{tag}/auditing_manifest.log"
        if not audit.is_file() or "| Fold completed" not in audit.read_text():
            fail(f"fold {fold}: audit log {audit} missing or without 'Fold completed'")
    summary = pd.read_csv(run_root / "artifacts/cross_validation/fold_summary.csv")
    done = summary[summary["status"] == "completed"]
    if sorted(done["fold"]) != sorted(folds):
        fail(f"fold_summary.csv completed folds {sorted(done['fold'])}, expected {sorted(folds)}")
    if set(done["image"]) != {image}:
        fail(f"fold_summary.csv image {set(done['image'])}, expected {image} (SPECTRA_CV_IMAGE)")
    others = sorted(set(range(1, 6)) - set(folds))
    for fold in others:
        if (run_root / f"checkpoints/Track_H_fold_{fold:02d}").exists():
            fail(f"fold {fold} ran though not asked for")
    for name in ("cv_report.md", "cv_metrics.csv"):
        path = run_root / "artifacts/cross_validation" / name
        if not path.is_file() or path.stat().st_size == 0:
            fail(f"no {path}")
    foreign = [p for p in run_root.rglob("*") if p.stat().st_uid != uid and p not in mount_points]
    if foreign and os.geteuid() == 0:
        fail(f"outputs not owned by the pods' user {uid}: {foreign[0]}")
    psnr = ", ".join(f"{r.fold}: {r.test_psnr_mean:.2f} dB" for r in done.itertuples())
    say(f"folds {' '.join(map(str, folds))} completed (test PSNR {psnr}); report and metrics written")


if __name__ == "__main__":
    main()
