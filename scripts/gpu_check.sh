#!/usr/bin/env bash
# The GPU check (issue 11): one call on one H100/H200, ≤ 8 minutes, one JSON (OUT/gpu_check.json):
# scan parity (ours, and mamba-ssm's where it imports; fp32 and bf16), the recipe's training
# spectra/s and peak memory at batch 600 per backend (with and without block checkpointing, and
# compiled), denoising spectra/s, two --deterministic runs compared, and — with --real-data DIR
# (spectra_for_fold/ and metadata/ in the user's layout) — fold 1 of the recipe on the real data
# under a time budget, scored beside ridge. OUT defaults to bench/gpu; extra arguments go to
# app/benchmarks/gpu_check.py (--budget-s, --batch-size, --smoke-on-cpu).
#
# On a remote GPU machine that gets a copy of the working tree (the real data does not travel unless
# carried; TRACKH_DIR is your copy of the dataset in the user's layout):
#   here:   mkdir -p .gpudata && cp -r "$TRACKH_DIR" .gpudata/trackh && echo /.gpudata/ >> .git/info/exclude
#   run:    scripts/gpu_check.sh --real-data .gpudata/trackh        (carry: .gpudata)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${OUT:-bench/gpu}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$OUT_DIR"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT_DIR/nvidia-smi.txt"
fi
set -o pipefail
PYTHONPATH=app PYTHONUNBUFFERED=1 "$PYTHON" app/benchmarks/gpu_check.py --out "$OUT_DIR" "$@" 2>&1 | tee "$OUT_DIR/gpu_check.log"
