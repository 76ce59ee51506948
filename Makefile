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
PYTEST_ARGS ?=

.PHONY: help setup test demo bench lint clean

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

demo: $(STAMP) ## Main job on synthetic data, CPU: generate, check, fold manifests
	$(VENV)/bin/spectra-cv data synth $(DEMO_DIR)/data --preset demo --seed 0
	$(VENV)/bin/spectra-cv data check --data-root $(DEMO_DIR)/data/spectra_for_fold --metadata-dir $(DEMO_DIR)/data/metadata
	cd $(DEMO_DIR) && for fold in 1 2 3 4 5; do \
	  ../$(VENV)/bin/spectra-cv manifests --fold $$fold --input-manifest data/spectra_for_fold/manifest.csv; done
	@echo "demo outputs: $(DEMO_DIR)/manifests"

clean: ## Remove the environment and demo outputs
	rm -rf $(VENV) $(DEMO_DIR)
