# spectra-cv — `make` lists the targets. Each target that needs the Python environment builds
# it first when it is missing, so on a fresh clone `make demo` and `make test` do all the set-up.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
# torch==2.13.0: on these machines pip takes the CPU wheel lying on disk; on a Linux host with
# PyPI it is the CUDA build. Set TORCH_INDEX (e.g. https://download.pytorch.org/whl/cpu) to choose.
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo
DEMO_EPOCHS ?= 30
DEMO_BUDGET_S ?= 120
CLI := $(abspath $(VENV))/bin/spectra-cv
PYTEST_ARGS ?=

.PHONY: help setup test demo bench gpu-check lint clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): app/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet $(TORCH) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install --quiet -e 'app[test,report]'
	touch $(STAMP)

setup: $(STAMP) ## Create .venv and install the app (CPU torch here, CUDA torch on a GPU host)

test: $(STAMP) ## Run the unit tests (CPU, a few minutes)
	cd app && ../$(PY) -m pytest -q $(PYTEST_ARGS)

demo: $(STAMP) ## Main job on synthetic data, CPU (~3 min): data, manifests, train fold 1, denoise, evaluate
	rm -rf $(DEMO_DIR)
	$(CLI) data synth $(DEMO_DIR)/data --preset demo --seed 0
	$(CLI) data check --data-root $(DEMO_DIR)/data/spectra_for_fold --metadata-dir $(DEMO_DIR)/data/metadata
	cd $(DEMO_DIR) && for fold in 1 2 3 4 5; do \
	  $(CLI) -q manifests --fold $$fold --input-manifest data/spectra_for_fold/manifest.csv; done
	cd $(DEMO_DIR) && $(CLI) train --preset cpu_quick --epochs $(DEMO_EPOCHS) --time_budget_s $(DEMO_BUDGET_S) \
	  --train_dir data/spectra_for_fold --val_dir data/spectra_for_fold \
	  --train_manifest manifests/fold_01/train_manifest.csv --val_manifest manifests/fold_01/val_manifest.csv \
	  --dose_features_csv data/metadata/dose_features.csv --dose_stats_json data/metadata/dose_stats.json \
	  --lambda_weights data/spectra_for_fold/lambda_stats.npz \
	  --log_dir logs/Track_H_fold_01 --checkpoint_dir checkpoints/Track_H_fold_01 \
	  --speed_log_json artifacts/cross_validation/fold_01_speed.json \
	  --audit_log logs/Track_H_fold_01/auditing_manifest.log
	cd $(DEMO_DIR) && $(CLI) denoise --manifest manifests/fold_01/test_manifest.csv \
	  --root-dir data/spectra_for_fold --checkpoint checkpoints/Track_H_fold_01/mamba_tiny_uv_best.pt \
	  --output-root denoised/folds/fold_01/test --dose-features-csv data/metadata/dose_features.csv
	cd $(DEMO_DIR) && $(CLI) evaluate --manifest manifests/fold_01/test_manifest.csv \
	  --train-manifest manifests/fold_01/train_manifest.csv --root-dir data/spectra_for_fold \
	  --denoised-root denoised/folds/fold_01/test --clean-manifest data/clean/clean_manifest.csv \
	  --output artifacts/cross_validation/fold_01_test_metrics.json
	@echo "demo outputs under $(DEMO_DIR)/ (audit log: $(DEMO_DIR)/logs/Track_H_fold_01/auditing_manifest.log)"

bench: $(STAMP) ## Benchmarks (JSON in bench/): scan vs reference (~3 min), training/denoising throughput (~3 min)
	mkdir -p bench
	$(PY) app/benchmarks/bench_scan.py --out bench/scan.json
	$(PY) app/benchmarks/bench_train.py --out bench/train.json

gpu-check: ## On an NVIDIA host with torch: scan parity on CUDA, recipe throughput (~5 min)
	OUT=bench/gpu scripts/gpu_check.sh

clean: ## Remove the environment and demo outputs
	rm -rf $(VENV) $(DEMO_DIR)
