#!/usr/bin/env bash
# CI cluster stage (after `make ci-container`, which leaves the CPU image spectra-cv:cpu built):
#
#   1. a real single-node Slurm (scripts/slurm_local.sh: slurm-wlm + munge from apt, slurmctld, slurmd)
#   2. tests/test_slurm_engine.py on it: `spectra-cv slurm submit --wait` for three folds two at a time
#      against a plain `cv` of the same config (audit logs, summary rows, report metrics); a task
#      cancelled mid-training is the only fold the next submit runs, its audit log one run; the Docker
#      container branch (`--container-runtime docker`) runs a fold in the CPU image
#   3. the Kubernetes pods of the CPU overlay run through the CPU image (scripts/ci_k8s_pods.py)
#   4. the daemons it started are stopped by pid (Slurm, munge; the Docker engine if it started it)
# ~4-6 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS=0
PY=${PY:-.venv/bin/python}
IMAGE=${IMAGE:-spectra-cv:cpu}
say() { echo "[ci-cluster $(printf '%4d' $SECONDS)s] $*"; }
fail() { echo "[ci-cluster] FAILED: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "this stage needs root (apt, munge, slurmd, a Docker engine)"

cleanup() {
  scripts/slurm_local.sh down || true
  scripts/docker_engine.sh down || true
}
trap cleanup EXIT

say "Docker engine and the CPU image"
scripts/docker_engine.sh up
docker image inspect "$IMAGE" >/dev/null 2>&1 || fail "$IMAGE is missing: run make ci-container first (it builds it)"

say "single-node Slurm"
eval "$(scripts/slurm_local.sh up)"
export SLURM_CONF
sinfo
say "sbatch/squeue on the job array, the cancelled task, the Docker branch"
mkdir -p .docker-build
if ! (cd app && SPECTRA_CV_ENGINE_TESTS=1 SPECTRA_CV_TEST_IMAGE="$IMAGE" "../$PY" -m pytest -q -p no:cacheprovider \
    -o addopts="--strict-markers -ra" tests/test_slurm_engine.py) 2>&1 | tee .docker-build/slurm-tests.log; then
  fail "the Slurm engine tests"
fi
grep -qE "^[0-9]+ passed" .docker-build/slurm-tests.log || fail "no engine test ran"
! grep -qiE "skipped" .docker-build/slurm-tests.log || fail "an engine test was skipped here (see above)"
squeue --all --noheader --format="%i %j %T" | sed 's/^/  left in the queue: /'

say "Kubernetes: the CPU overlay's pods through $IMAGE"
"$PY" scripts/ci_k8s_pods.py --image "$IMAGE" || fail "the Kubernetes pods"
say "passed"
