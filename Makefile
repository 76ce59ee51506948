# spectra-cv — `make` lists the targets. Each target that needs the Python environment builds
# it first when it is missing, so on a fresh clone `make demo` and `make test` do all the set-up.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
# torch==2.13.0: whichever build pip's index offers (from PyPI on Linux, the CUDA build; a local
# wheel where pip is configured with one). Set TORCH_INDEX (e.g. https://download.pytorch.org/whl/cpu) to choose.
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo
DEMO_EPOCHS ?= 30
DEMO_BUDGET_S ?= 60
QUALITY_DIR ?= quality
QUALITY_PRESET ?= cpu_quick
QUALITY_PARALLEL ?= 1
CLI := $(abspath $(VENV))/bin/spectra-cv
PYTEST_ARGS ?=

# Containers (docker/, compose.yaml): VARIANT=cuda for GPU hosts, VARIANT=cpu for CPU-only hosts and CI.
VARIANT ?= cuda
IMAGE ?= spectra-cv:$(VARIANT)
BASE_IMAGE_CPU ?= spectra-cv-base:bookworm
CODE_VERSION := $(shell git describe --always --dirty 2>/dev/null || echo unknown)
BUILD_ARGS_cuda :=
BUILD_ARGS_cpu := --build-arg VARIANT=cpu --build-arg BUILD_BASE=$(BASE_IMAGE_CPU) --build-arg RUNTIME_BASE=$(BASE_IMAGE_CPU) \
  --build-arg TORCH_SPEC=$(TORCH)
# wheelhouse: the CPU image's Python is the host's (3.11, bookworm); the CUDA image's is Ubuntu 24.04's 3.12.
WHEELHOUSE_ARGS_cpu := $(TORCH)
WHEELHOUSE_ARGS_cuda := --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --extra-index-url https://download.pytorch.org/whl/cu128 \
  torch==2.10.0 packaging ninja einops transformers
COMPOSE_FILES_cuda := -f compose.yaml
COMPOSE_FILES_cpu := -f compose.yaml -f compose.cpu.yaml
COMPOSE := docker compose $(COMPOSE_FILES_$(VARIANT))
# Containers run as the host user so outputs stay theirs; as root they keep the image's uid 10001.
HOST_UID := $(shell id -u)
export SPECTRA_CV_UID := $(if $(filter 0,$(HOST_UID)),10001,$(HOST_UID))
export SPECTRA_CV_GID := $(if $(filter 0,$(HOST_UID)),10001,$(shell id -g))
comma := ,
FIRST_GPU = $(firstword $(subst $(comma), ,$(GPUS)))
# The image reference recorded as provenance, only for what runs in containers.
fold cv report final ci-container: export SPECTRA_CV_IMAGE := $(IMAGE)
# Host folders mounted into the containers (compose.yaml reads the same variables).
export DATA_DIR ?= ./volumes/data
export CHECKPOINTS_DIR ?= ./volumes/checkpoints
export OUTPUTS_DIR ?= ./volumes/outputs
FOLD ?= 3
FOLDS ?= 1 2 3 4 5
PARALLEL ?=
GPUS ?= 0
# FORCE=1: retrain completed folds (a rerun otherwise skips them); each retrain works beside the
# finished result and replaces it only when it completes.
export FORCE ?=

.PHONY: help setup test test-fast test-slow fault-drill demo bench quality gpu-check lint clean build base-image wheelhouse env volumes cv fold report final \
        ci-container slurm-cv k8s ci-cluster

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): app/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet $(TORCH) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install --quiet -e 'app[test,report,k8s,tracking]'
	@echo "building the fused CPU scan kernel (C++, about a minute, once per machine; without a compiler the eager scan runs)"
	$(PY) -c "from spectra_cv.model import scan_cpu; scan_cpu.load()"
	touch $(STAMP)

setup: $(STAMP) ## Create .venv, install the app (CPU torch here, CUDA torch on a GPU host), build the CPU scan kernel

test: $(STAMP) ## Run the tests (CPU, ~4 minutes on 2 cores; what CI runs first; container checks: make test-slow)
	cd app && ../$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

test-fast: $(STAMP) ## The tests that run no fold, training or report (under a minute: the edit-test loop)
	cd app && ../$(PY) -m pytest -q -m "not slow and not e2e" $(PYTEST_ARGS)

test-slow: $(STAMP) ## The slow end-to-end checks (the GPU check's CPU dry run, multi-process fold runs, a few fault-drill cases), run by CI after the unit tests
	cd app && ../$(PY) -m pytest -q -m slow $(PYTEST_ARGS)

fault-drill: $(STAMP) ## Every command against damaged files, a read-only or full disk and kills, on tiny data (~5 min; one line per case; some cases need root)
	$(PY) scripts/fault_drill.py $(if $(DRILL_JSON),--json $(DRILL_JSON))

demo: $(STAMP) ## Main job on synthetic data, CPU (~8 min): data, all five folds, report
	rm -rf $(DEMO_DIR)
	$(CLI) data synth $(DEMO_DIR)/data --preset demo --seed 0
	$(CLI) data check --data-root $(DEMO_DIR)/data/spectra_for_fold --metadata-dir $(DEMO_DIR)/data/metadata
	cd $(DEMO_DIR) && $(CLI) cv --preset cpu_quick --epochs $(DEMO_EPOCHS) --time-budget-s $(DEMO_BUDGET_S)
	cd $(DEMO_DIR) && $(CLI) report
	@echo "demo report: $(DEMO_DIR)/artifacts/cross_validation/cv_report.md (audit logs: $(DEMO_DIR)/logs/Track_H_fold_##/)"

bench: $(STAMP) ## Benchmarks (JSON in bench/): a fold's stages (~2 min; DATA=<dir> adds real fold 1), scan vs reference (~3 min), training/denoising throughput (~3 min), recipe memory per spectrum (~3 min)
	mkdir -p bench
	$(PY) app/benchmarks/bench_fold_stages.py --out bench/fold_stages.json $(if $(DATA),--data "$(DATA)",--cases tiny$(comma)demo)
	$(PY) app/benchmarks/bench_scan.py --out bench/scan.json
	$(PY) app/benchmarks/bench_train.py --out bench/train.json
	$(PY) app/benchmarks/bench_memory.py --out bench/memory.json

quality: $(STAMP) ## Model vs the best linear method on the five real folds (DATA=<Track H dir>; QUALITY_PRESET, QUALITY_PARALLEL): table against the targets, JSON in bench/quality.json
	@if [ -z "$(DATA)" ]; then echo "make quality needs DATA=<dir holding spectra_for_fold/ and metadata/>" >&2; exit 2; fi
	mkdir -p bench
	$(PY) app/benchmarks/quality_real.py "$(DATA)" --run-root "$(QUALITY_DIR)" --preset $(QUALITY_PRESET) \
	  --parallel $(QUALITY_PARALLEL) --output bench/quality.json

gpu-check: ## On an NVIDIA host with torch: scan parity on CUDA, recipe throughput (≤ 8 min)
	OUT=bench/gpu scripts/gpu_check.sh

lint: $(STAMP) ## ruff and mypy on the package (config: app/pyproject.toml), byte-compile it and scripts/, check the compose files
	$(PY) -m compileall -q app/spectra_cv scripts
	cd app && ../$(PY) -m ruff check spectra_cv && ../$(PY) -m mypy
	@if docker compose version >/dev/null 2>&1; then \
	  docker compose -f compose.yaml config -q && docker compose -f compose.yaml -f compose.cpu.yaml config -q \
	  && echo "compose files valid"; else echo "docker compose not installed: compose files not checked"; fi

base-image: ## CPU base image without a registry: debootstrap bookworm + python3 → $(BASE_IMAGE_CPU)
	scripts/docker_base_image.sh $(BASE_IMAGE_CPU)

wheelhouse: ## Download the image's wheels into docker/wheelhouse/$(VARIANT)/ (air-gapped hosts, CI here)
	$(PYTHON) -m pip download --quiet --dest docker/wheelhouse/$(VARIANT) --only-binary=:all: \
	  $(WHEELHOUSE_ARGS_$(VARIANT)) -r docker/requirements.txt 2>&1 | { grep -v 'is ignored: it is neither' || true; }
	$(if $(filter cuda,$(VARIANT)),$(PYTHON) -m pip download --quiet --dest docker/wheelhouse/cuda --no-deps \
	  --no-binary :all: -r app/spectra_cv/model/cuda_kernels.txt)

env: ## Write .env: your uid/gid (and COMPOSE_FILE for VARIANT=cpu), so bare `docker compose run` runs as you
	@touch .env
	@{ grep -vE '^(SPECTRA_CV_UID|SPECTRA_CV_GID|COMPOSE_FILE)=' .env || true; \
	  echo "SPECTRA_CV_UID=$(SPECTRA_CV_UID)"; echo "SPECTRA_CV_GID=$(SPECTRA_CV_GID)"; \
	  $(if $(filter cpu,$(VARIANT)),echo "COMPOSE_FILE=compose.yaml:compose.cpu.yaml";) true; } >.env.new
	@mv .env.new .env
	@echo ".env: containers run as $(SPECTRA_CV_UID):$(SPECTRA_CV_GID)$(if $(filter cpu,$(VARIANT)), on the CPU image (compose.cpu.yaml),)"

# BuildKit (docker buildx) keeps pip's and apt's downloads in cache mounts; without buildx the legacy
# builder gets the Dockerfile with its --mount flags stripped (the same steps, no caches).
LEGACY_DOCKERFILE := .docker-build/Dockerfile.legacy
build: volumes ## Build the image: make build [VARIANT=cpu] (CPU needs make base-image wheelhouse first)
	@if docker buildx version >/dev/null 2>&1; then echo "BuildKit (buildx): cache mounts on"; \
	else mkdir -p $(dir $(LEGACY_DOCKERFILE)); sed -E 's/^RUN( --mount=[^ ]+)+ /RUN /' docker/Dockerfile >$(LEGACY_DOCKERFILE); \
	  echo "no docker buildx: the legacy builder, without the cache mounts ($(LEGACY_DOCKERFILE))"; fi
	$(if $(shell docker buildx version 2>/dev/null),DOCKER_BUILDKIT=1 docker buildx build --load,DOCKER_BUILDKIT=0 docker build) \
	  --network host -f $(if $(shell docker buildx version 2>/dev/null),docker/Dockerfile,$(LEGACY_DOCKERFILE)) \
	  $(BUILD_ARGS_$(VARIANT)) --build-arg IMAGE_TAG=$(IMAGE) --build-arg CODE_VERSION=$(CODE_VERSION) \
	  --build-arg CREATED=$(shell date -u +%Y-%m-%dT%H:%M:%SZ) -t $(IMAGE) .

volumes: env ## Create the mounted folders (volumes/ or DATA_DIR, CHECKPOINTS_DIR, OUTPUTS_DIR), owned by the containers' uid
	mkdir -p $(DATA_DIR) $(CHECKPOINTS_DIR) $(addprefix $(OUTPUTS_DIR)/,manifests logs denoised artifacts tracking)
	@if [ "$(HOST_UID)" = 0 ]; then chown -R $(SPECTRA_CV_UID):$(SPECTRA_CV_GID) $(CHECKPOINTS_DIR) $(OUTPUTS_DIR); fi

fold: volumes ## One fold in a container: make fold FOLD=3 [VARIANT=cpu] [GPUS=1]
	GPU=$(FIRST_GPU) $(COMPOSE) run --rm fold --fold $(FOLD)

cv: volumes ## All folds, one container each, one lane per GPU: make cv FOLDS="1 2 3 4 5" GPUS=0,1 [VARIANT=cpu PARALLEL=2]
	COMPOSE="$(COMPOSE)" FOLDS="$(FOLDS)" PARALLEL="$(PARALLEL)" GPUS="$(GPUS)" scripts/compose_cv.sh

report: volumes ## cv_report.md, cv_metrics.csv and plots from the folds' outputs
	$(COMPOSE) run --rm report

final: volumes ## Production model on all samples, then the whole corpus denoised
	GPU=$(FIRST_GPU) $(COMPOSE) run --rm final

# On a cluster (README "On a cluster"): RUN_ROOT, DATA_ROOT and METADATA_DIR on the shared filesystem.
RUN_ROOT ?= .
DATA_ROOT ?=
METADATA_DIR ?=
PRESET ?=
EPOCHS ?=
SETS ?=
SLURM_ARGS ?=
CLUSTER_RUN_ARGS = --run-root $(RUN_ROOT) $(if $(DATA_ROOT),--data-root $(DATA_ROOT)) \
  $(if $(METADATA_DIR),--metadata-dir $(METADATA_DIR)) $(if $(PRESET),--preset $(PRESET)) \
  $(if $(EPOCHS),--epochs $(EPOCHS)) $(foreach s,$(SETS),--set $(s))

slurm-cv: $(STAMP) ## Folds as a Slurm job array, then coordinator + report: make slurm-cv FOLDS="1 2 3" [PARALLEL=2 RUN_ROOT=… SLURM_ARGS="--partition gpu --wait"]
	$(CLI) slurm submit --folds $(FOLDS) $(if $(PARALLEL),--parallel $(PARALLEL)) $(if $(FORCE),--force) \
	  $(CLUSTER_RUN_ARGS) $(SLURM_ARGS)

K8S_OVERLAY ?= $(if $(filter cpu,$(VARIANT)),cpu,base)
K8S_OUT ?= .k8s/cv.yaml
K8S_ARGS ?=

k8s: $(STAMP) ## Render the Kubernetes Jobs to $(K8S_OUT): make k8s [VARIANT=cpu] [FOLDS="1 2 3"] [PARALLEL=2] [IMAGE=reg/spectra-cv:cuda]
	@mkdir -p $(dir $(K8S_OUT))
	$(CLI) k8s render --overlay $(K8S_OVERLAY) --image $(IMAGE) --folds $(FOLDS) $(if $(PARALLEL),--parallel $(PARALLEL)) \
	  $(if $(PRESET),--preset $(PRESET)) $(foreach s,$(SETS),--set $(s)) $(K8S_ARGS) --output $(K8S_OUT)

ci-cluster: $(STAMP) ## CI cluster stage (after ci-container): a real single-node Slurm, the job array vs cv, Kubernetes pods in Docker
	scripts/ci_cluster.sh

ci-container: $(STAMP) ## CI container stage: engine, CPU image, fold 3 on tiny data in compose, checks
	scripts/ci_container.sh

clean: ## Remove the environment and demo outputs
	rm -rf $(VENV) $(DEMO_DIR)
