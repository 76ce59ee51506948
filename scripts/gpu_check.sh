#!/usr/bin/env bash
# GPU check (issue 3), one call on an NVIDIA machine with PyTorch preinstalled, ~4–6 minutes:
# scan parity on CUDA (fp32/bf16) against the reference, recipe training and denoising
# throughput, peak memory. Writes gpu_check.json (and the log) to OUT (default bench/gpu).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${OUT:-bench/gpu}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$OUT_DIR"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT_DIR/nvidia-smi.txt"
PYTHONPATH=app PYTHONUNBUFFERED=1 "$PYTHON" app/benchmarks/gpu_check.py --out "$OUT_DIR" "$@" 2>&1 | tee "$OUT_DIR/gpu_check.log"
