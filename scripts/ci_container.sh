#!/usr/bin/env bash
# CI container stage (after the unit tests): a real engine, the CPU image, one fold in compose on
# tiny synthetic data mounted from volumes/, then checks from the host. Stops what it started.
#
#   1. engine + Compose v2 (scripts/docker_engine.sh; installed and started when absent)
#   2. base image (debootstrap, no registry), wheelhouse (host pip), CPU image
#   3. `docker compose config` validates both compose files
#   4. `docker compose run --rm fold --fold 3` (cpu override, tiny model) with the coordinator service
#   5. host checks: audit log lines, the fold's summary row, every denoised file
#   6. the containers run as non-root, with no network, on a read-only root filesystem
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS=0
PY=${PY:-.venv/bin/python}
CLI=${CLI:-.venv/bin/spectra-cv}
export VARIANT=cpu
IMAGE=spectra-cv:cpu
export SPECTRA_CV_IMAGE=$IMAGE
COMPOSE="docker compose -f compose.yaml -f compose.cpu.yaml"
say() { echo "[ci-container $(printf '%4d' $SECONDS)s] $*"; }
fail() { echo "[ci-container] FAILED: $*" >&2; exit 1; }

scripts/docker_engine.sh up
cleanup() {
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

say "compose config"
docker compose -f compose.yaml config -q
$COMPOSE config -q

say "tiny synthetic data in volumes/data"
if [ -n "$(ls -A volumes/data | grep -v '^.gitkeep$' || true)" ] && ! grep -q '"tiny"' volumes/data/synth_config.json 2>/dev/null; then
  fail "volumes/data holds data that is not this stage's tiny synthetic set; move it away first"
fi
marker=volumes/outputs/.ci-container   # says: what volumes/ holds was written by this stage
for dir in volumes/checkpoints volumes/outputs; do
  if [ -n "$(ls -A "$dir" 2>/dev/null | grep -v '^.gitkeep$' || true)" ] && [ ! -f "$marker" ]; then
    fail "$dir holds results this stage did not write; move them away (or run CI from a clean clone)"
  fi
done
find volumes/data -mindepth 1 ! -name .gitkeep -delete
rm -rf .docker-build/tiny && "$CLI" -q data synth .docker-build/tiny --preset tiny --seed 0
cp -r .docker-build/tiny/. volumes/data/ && rm -rf .docker-build/tiny
find volumes/checkpoints volumes/outputs -mindepth 1 ! -name .gitkeep -delete
make --no-print-directory volumes VARIANT=cpu
touch "$marker"

say "docker compose run --rm fold --fold 3"
export PRESET=cpu_quick EPOCHS=2 SETS="d_model=8 n_layers=1"
$COMPOSE run --rm fold --fold 3
$COMPOSE stop coordinator   # SIGTERM: its final sync, then exit

say "host checks"
audit=volumes/outputs/logs/Track_H_fold_03/auditing_manifest.log
[ -f "$audit" ] || fail "no audit log at $audit"
for msg in "Starting fold_03" "Generating manifests" "Generated manifests: manifests/fold_03/train_manifest.csv" \
           "Launching training run" "Training completed successfully" \
           "Checkpoint ready: checkpoints/Track_H_fold_03/mamba_tiny_uv_best.pt" \
           "Starting inference for val -> denoised/folds/fold_03/val" "Completed inference for test" "Fold completed"; do
  grep -q "^[0-9T:-]* | $msg" "$audit" || fail "audit log lacks '$msg'"
done
"$PY" - <<'PYCHECK'
import sys
from pathlib import Path
import pandas as pd
out = Path("volumes/outputs")
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
assert Path("volumes/checkpoints/Track_H_fold_03/mamba_tiny_uv_best.pt").is_file()
print(f"summary row ok: test PSNR {row.iloc[0]['test_psnr_mean']:.2f} dB; all denoised files present")
PYCHECK

say "non-root, no network, read-only root filesystem"
probe=$($COMPOSE run --rm --no-deps --entrypoint python fold -c '
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
print(os.getuid(), ",".join(net), reach, ro)')
echo "  probe: $probe"
read -r uid nets reach ro <<<"$(echo "$probe" | tail -1)"
[ "$uid" != 0 ] || fail "container runs as root"
[ "$nets" = lo ] || fail "container has network interfaces: $nets"
[ "$reach" = unreachable ] || fail "container reached the network"
[ "$ro" = read-only ] || fail "root filesystem is writable"
say "passed (image $((size / 1024 / 1024)) MiB)"
