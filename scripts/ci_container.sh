#!/usr/bin/env bash
# CI container stage (after the unit tests): a real engine, the CPU image, and the README's bare
# `docker compose run --rm fold --fold 3` run by an ordinary (non-root) user in their own checkout,
# then checks from the host. Stops what it started. ~2-5 minutes (the first base image is the slow part).
#
#   1. engine + Compose v2 (scripts/docker_engine.sh; installed and started when absent)
#   2. base image (debootstrap, no registry), wheelhouse (host pip), CPU image
#   3. `docker compose config` validates both compose files; `docker compose up` starts only the coordinator
#   4. as user spectra-ci: `make volumes VARIANT=cpu` (.env, folders), then `docker compose run --rm fold --fold 3`
#   5. host checks: audit log lines, the fold's summary row, every denoised file, files owned by the user
#   6. rerun = resume: the same command skips the fold, a changed config is refused (exit 3), FORCE=1
#      retrains it beside the finished result and swaps it in
#   7. tracking: `docker compose run --rm track` exports the runs from the image into outputs/tracking
#   8. the containers: non-root, no network, read-only root, no capabilities, NoNewPrivs, nosuid tmpfs
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS=0
PY=${PY:-.venv/bin/python}
CLI=${CLI:-.venv/bin/spectra-cv}
export VARIANT=cpu
IMAGE=spectra-cv:cpu
export SPECTRA_CV_IMAGE=$IMAGE
COMPOSE="docker compose -f compose.yaml -f compose.cpu.yaml"
CI_USER=${CI_USER:-spectra-ci}
say() { echo "[ci-container $(printf '%4d' $SECONDS)s] $*"; }
fail() { echo "[ci-container] FAILED: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "this stage needs root (engine, debootstrap, a test user)"

scripts/docker_engine.sh up
home=""
cleanup() {
  if [ -n "$home" ] && [ -d "$home/spectra-cv" ]; then
    (cd "$home/spectra-cv" && runuser -u "$CI_USER" -- docker compose down --remove-orphans >/dev/null 2>&1) || true
    rm -rf "$home/spectra-cv"
  fi
  $COMPOSE down --remove-orphans >/dev/null 2>&1 || true
  scripts/docker_engine.sh down
}
trap cleanup EXIT

say "base image and wheelhouse"
make --no-print-directory base-image
make --no-print-directory wheelhouse VARIANT=cpu PYTHON="$PY"
say "building $IMAGE"
make --no-print-directory build VARIANT=cpu >.docker-build/build.log 2>&1 || { tail -40 .docker-build/build.log; fail "image build"; }
size=$(docker image inspect "$IMAGE" --format '{{.Size}}')
say "image $IMAGE: $((size / 1024 / 1024)) MiB"
label() { docker image inspect "$IMAGE" --format "{{index .Config.Labels \"org.opencontainers.image.$1\"}}"; }
[ "$(label title)" = spectra-cv ] || fail "the image has no OCI title label"
revision=$(label revision)
[ -n "$revision" ] && [ "$revision" != unknown ] || fail "the image's OCI revision label is '$revision', not the code version"
say "OCI labels: revision $revision, created $(label created)"

say "compose config; \`docker compose up\` starts at most the coordinator"
docker compose -f compose.yaml config -q
$COMPOSE config -q
services=$($COMPOSE config --services | tr '\n' ' ')
[ "$services" = "coordinator " ] || fail "without a profile compose would start: $services"

say "user $CI_USER with a checkout of its own"
getent group docker >/dev/null || groupadd --system docker
id "$CI_USER" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$CI_USER"
usermod -aG docker "$CI_USER"
sock=/var/run/docker.sock
[ "$(stat -c %G "$sock")" = docker ] || { chgrp docker "$sock" && chmod 660 "$sock"; }
home=$(getent passwd "$CI_USER" | cut -d: -f6)
uid=$(id -u "$CI_USER")
# A clean environment, as a user's shell has it: nothing of this script's (the Makefile exports
# SPECTRA_CV_UID & co. for root) may leak in; only the tiny-model settings are added.
as_user() { (cd "$home/spectra-cv" && runuser -u "$CI_USER" -- env -i PATH=/usr/local/bin:/usr/bin:/bin \
  HOME="$home" USER="$CI_USER" PRESET=cpu_quick EPOCHS=2 SETS="d_model=8 n_layers=1" "$@"); }
rm -rf "$home/spectra-cv" && mkdir -p "$home/spectra-cv"
git ls-files -z -co --exclude-standard | tar --null -T - -c | tar -x -C "$home/spectra-cv"
rm -rf .docker-build/tiny && "$CLI" -q data synth .docker-build/tiny --preset tiny --seed 0
cp -r .docker-build/tiny/. "$home/spectra-cv/volumes/data/" && rm -rf .docker-build/tiny
chown -R "$CI_USER": "$home/spectra-cv"
as_user make --no-print-directory volumes VARIANT=cpu   # (what `make build` does first: .env and the mounted folders)
grep -q "^SPECTRA_CV_UID=$uid$" "$home/spectra-cv/.env" || fail ".env does not carry $CI_USER's uid $uid"
out="$home/spectra-cv/volumes/outputs"

say "as $CI_USER: docker compose run --rm fold --fold 3 (the README's command, nothing else set)"
as_user docker compose run --rm fold --fold 3
as_user docker compose stop coordinator   # SIGTERM: its final sync, then exit

say "host checks"
audit=$out/logs/Track_H_fold_03/auditing_manifest.log
[ -f "$audit" ] || fail "no audit log at $audit"
for msg in "Starting fold_03" "Generating manifests" "Generated manifests: manifests/fold_03/train_manifest.csv" \
           "Launching training run" "Training completed successfully" \
           "Checkpoint ready: checkpoints/Track_H_fold_03/mamba_tiny_uv_best.pt" \
           "Starting inference for val -> denoised/folds/fold_03/val" "Completed inference for test" "Fold completed"; do
  grep -q "^[0-9T:-]* | $msg" "$audit" || fail "audit log lacks '$msg'"
done
foreign=$(find "$out" "$home/spectra-cv/volumes/checkpoints" ! -uid "$uid" -print -quit)
[ -z "$foreign" ] || fail "files not owned by $CI_USER (uid $uid): $foreign"
check_fold() {
  "$PY" - "$home/spectra-cv/volumes" "$1" <<'PYCHECK'
import hashlib, json, sys
from pathlib import Path
import pandas as pd
volumes, runs = Path(sys.argv[1]), int(sys.argv[2])
out = volumes / "outputs"
rows = pd.read_csv(out / "artifacts/cross_validation/fold_summary.csv")
row = rows[rows["fold"] == 3]
assert len(row) == 1 and row.iloc[0]["status"] == "completed", rows[["fold", "status"]]
assert row.iloc[0]["image"] == "spectra-cv:cpu", row.iloc[0]["image"]
missing = 0
for role in ("train", "val", "test"):
    manifest = pd.read_csv(out / f"manifests/fold_03/{role}_manifest.csv")
    for rel in manifest["relative_path"]:
        p = Path(rel)
        missing += not (out / "denoised/folds/fold_03" / role / p.parent / f"{p.stem}_denoised.npy").is_file()
assert missing == 0, f"{missing} denoised files missing"
ckpt = volumes / "checkpoints/Track_H_fold_03/mamba_tiny_uv_best.pt"
record = json.loads((volumes / "checkpoints/Track_H_fold_03/fold_complete.json").read_text())
assert record["checkpoint_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest(), "record and checkpoint differ"
audit = (out / "logs/Track_H_fold_03/auditing_manifest.log").read_text()
assert audit.count("| Fold completed\n") == runs, audit
print(f"summary row ok: test PSNR {row.iloc[0]['test_psnr_mean']:.2f} dB; all denoised files present; "
      f"{runs} completed run(s) in the audit log")
PYCHECK
}
check_fold 1

say "rerun = resume: the same command skips the fold; a changed config is refused; FORCE=1 retrains it"
as_user docker compose run --rm fold --fold 3 | tee .docker-build/rerun.log
as_user docker compose stop coordinator   # its last sync: the audit line is written by then
grep -q "\[fold 3\] skipped" .docker-build/rerun.log || fail "the rerun did not skip the completed fold"
grep -q "| Skipping fold_03: already completed" "$audit" || fail "no 'Skipping fold_03' audit line"
set +e
as_user env EPOCHS=3 docker compose run --rm fold --fold 3 2>&1 | tee .docker-build/refused.log
code=${PIPESTATUS[0]}
set -e
[ "$code" = 3 ] || fail "a changed config was not refused (exit $code, expected 3)"
grep -q "the config differs (train.epochs 2 → 3)" .docker-build/refused.log || fail "the refusal does not name the change"
as_user env EPOCHS=3 FORCE=1 docker compose run --rm fold --fold 3
as_user docker compose stop coordinator
check_fold 2
grep -q "| Swapping the retrained fold_03 in" "$audit" || fail "the forced retrain was not swapped in"

say "tracking: docker compose run --rm track (the image carries the tracking extra; only this service has a network)"
as_user docker compose run --rm track | tee .docker-build/track.log
grep -q "^mlflow: /work/tracking/mlflow" .docker-build/track.log || fail "track did not export to the MLflow store"
"$PY" - "$out/tracking/mlflow/mlflow.db" <<'PYCHECK'
import sys
from mlflow.tracking import MlflowClient
client = MlflowClient(tracking_uri=f"sqlite:///{sys.argv[1]}")
runs = client.search_runs([client.get_experiment_by_name("spectra-cv").experiment_id])
parents = [r for r in runs if r.data.tags.get("spectra_cv.kind") == "cross-validation"]
assert len(parents) == 1, [r.data.tags for r in runs]
children = [r for r in runs if r not in parents]
assert len(children) == 2 and {r.data.tags.get("mlflow.parentRunId") for r in children} == {parents[0].info.run_id}
print(f"MLflow store: one CV run, {len(children)} fold runs (fold 3 and its forced retrain) under it")
PYCHECK
# (this engine runs without a bridge network, so the service's network is checked in its config)
mode=$($COMPOSE --profile jobs config --format json | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["services"]["track"].get("network_mode"))')
[ "$mode" = bridge ] || fail "the track service's network is '$mode', not bridge: it could not reach a tracking server"

say "containers: non-root, no network, read-only root, no capabilities, no new privileges, nosuid tmpfs"
probe=$(as_user docker compose run --rm --no-deps --entrypoint python fold -c '
import os, socket
net = sorted(os.listdir("/sys/class/net"))
try:
    socket.create_connection(("1.1.1.1", 53), timeout=2); reach = "reachable"
except OSError:
    reach = "unreachable"
try:
    open("/usr/probe", "w"); ro = "writable"
except OSError:
    ro = "read-only"
status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\t" in line)
mounts = {f[1]: f[3] for f in (l.split() for l in open("/proc/mounts")) if f[1] in ("/tmp", "/run/home")}
tmpfs = "ok" if len(mounts) == 2 and all({"nosuid", "nodev"} <= set(o.split(",")) for o in mounts.values()) else mounts
print(os.getuid(), ",".join(net), reach, ro, status["CapEff"].strip(), status["NoNewPrivs"].strip(), tmpfs)')
echo "  probe: $probe"
read -r puid nets reach ro capeff nnp tmpfs <<<"$(echo "$probe" | tail -1)"
[ "$puid" = "$uid" ] || fail "container runs as uid $puid, not the user's $uid"
[ "$nets" = lo ] || fail "container has network interfaces: $nets"
[ "$reach" = unreachable ] || fail "container reached the network"
[ "$ro" = read-only ] || fail "root filesystem is writable"
[ "$capeff" = 0000000000000000 ] || fail "effective capabilities are not empty: $capeff"
[ "$nnp" = 1 ] || fail "NoNewPrivs is not set"
[ "$tmpfs" = ok ] || fail "tmpfs mounts lack nosuid,nodev: $tmpfs"
say "passed (image $((size / 1024 / 1024)) MiB)"
