#!/usr/bin/env bash
# `make cv`: every fold in its own container, PARALLEL at a time, fold i on GPU number i mod len(GPUS).
# The coordinator service runs throughout (the folds' depends_on starts it) and writes the audit logs
# and the summary; afterwards the report is built. Exits 1 if any fold failed (the others still run).
set -uo pipefail
cd "$(dirname "$0")/.."
COMPOSE=${COMPOSE:-docker compose}
FOLDS=${FOLDS:-1 2 3 4 5}
PARALLEL=${PARALLEL:-1}
IFS=, read -r -a GPU_LIST <<<"${GPUS:-0}"
$COMPOSE up -d coordinator
jobs_file=$(mktemp)
i=0
for fold in $FOLDS; do
  echo "$fold ${GPU_LIST[$((i % ${#GPU_LIST[@]}))]}" >>"$jobs_file"
  i=$((i + 1))
done
# shellcheck disable=SC2016
xargs -P "$PARALLEL" -L 1 sh -c 'echo "[cv] fold $0 on GPU $1"; GPU=$1 '"$COMPOSE"' run --rm --no-deps fold --fold $0 \
  || { echo "[cv] fold $0 failed"; exit 1; }' <"$jobs_file"
status=$?
rm -f "$jobs_file"
$COMPOSE stop coordinator  # its last sync runs on SIGTERM
$COMPOSE run --rm --no-deps report || status=1
exit $status
