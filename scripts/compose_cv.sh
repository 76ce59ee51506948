#!/usr/bin/env bash
# `make cv`: every fold in its own container. The folds are dealt round-robin onto lanes, one lane
# per GPU in GPUS (or PARALLEL lanes, sharing the GPUs when there are more lanes than GPUs); each
# lane runs its folds one after another, so a GPU never holds two folds unless PARALLEL asks for
# more lanes than there are GPUs. The same rule as `spectra-cv cv` (spectra_cv/runs/lanes.py; a
# test holds the two plans equal: DRY_RUN=1 prints the plan and runs nothing). The coordinator service writes the audit logs and the summary throughout; the
# report is built at the end. Exits 1 if any fold failed or was refused (the others still run).
# Rerun the same command to resume: completed folds are skipped; FORCE=1 retrains them.
set -uo pipefail
cd "$(dirname "$0")/.."
COMPOSE=${COMPOSE:-docker compose}
read -r -a FOLD_LIST <<<"${FOLDS:-1 2 3 4 5}"
IFS=, read -r -a GPU_LIST <<<"${GPUS:-0}"
lanes=${PARALLEL:-${#GPU_LIST[@]}}
[ "$lanes" -ge 1 ] 2>/dev/null || { echo "[cv] PARALLEL must be a number >= 1" >&2; exit 2; }
if [ "$lanes" -gt "${#GPU_LIST[@]}" ] && [ "${#GPU_LIST[@]}" -gt 1 ]; then
  echo "[cv] warning: $lanes lanes on ${#GPU_LIST[@]} GPUs: some GPUs run two folds at once" >&2
fi
# FORCE=1 retrains every fold of this run: tell each fold which others are retrained with it, so
# their old configs are not taken for a mixed cross-validation.
if [ -n "${FORCE:-}" ]; then export RETRAINING_FOLDS="${FOLD_LIST[*]}"; fi
if [ -n "${DRY_RUN:-}" ]; then
  for ((lane = 0; lane < lanes; lane++)); do
    for ((i = lane; i < ${#FOLD_LIST[@]}; i += lanes)); do
      echo "[cv] fold ${FOLD_LIST[$i]} on GPU ${GPU_LIST[$((lane % ${#GPU_LIST[@]}))]} (lane $lane)"
    done
  done
  exit 0
fi
$COMPOSE up -d coordinator || exit 1
status_dir=$(mktemp -d)
for ((lane = 0; lane < lanes; lane++)); do
  gpu=${GPU_LIST[$((lane % ${#GPU_LIST[@]}))]}
  (
    for ((i = lane; i < ${#FOLD_LIST[@]}; i += lanes)); do
      fold=${FOLD_LIST[$i]}
      echo "[cv] fold $fold on GPU $gpu (lane $lane)"
      GPU=$gpu $COMPOSE run --rm --no-deps fold --fold "$fold"
      code=$?
      if [ "$code" = 0 ]; then
        echo "[cv] fold $fold done"
      elif [ "$code" = 3 ]; then
        echo "[cv] fold $fold refused (its message above says why; nothing of it changed)"; touch "$status_dir/refused-$fold"
      else
        echo "[cv] fold $fold failed"; touch "$status_dir/failed-$fold"
      fi
    done
  ) &
done
wait
failed=$(ls "$status_dir" | sed -n 's/^failed-//p' | tr '\n' ' ')
refused=$(ls "$status_dir" | sed -n 's/^refused-//p' | tr '\n' ' ')
rm -rf "$status_dir"
$COMPOSE stop coordinator  # its last sync runs on SIGTERM
$COMPOSE run --rm --no-deps report || failed="$failed report"
if [ -n "${refused// /}" ]; then
  echo "[cv] refused: $refused(rerun with the settings and data they ran with, or with FORCE=1 to retrain them)" >&2
fi
if [ -n "${failed// /}" ]; then
  echo "[cv] not completed: $failed(rerun the same command to resume them)" >&2
fi
if [ -n "${failed// /}${refused// /}" ]; then
  exit 1
fi
