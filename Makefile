# bpttlab: `make help` lists every target.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
EXTRAS ?= dev

EXP   ?= default
ARGS  ?=
ONLY  ?=
PROFILE ?= quick
JOBS  ?= $(shell nproc 2>/dev/null || echo 2)
HOST  ?= 127.0.0.1
UI_PORT ?= 5000
SERVER_PORT ?= 5001
BACKEND ?=

# One BLAS thread per process: sweeps parallelise over runs, not inside matmuls.
export OMP_NUM_THREADS ?= 1
export OPENBLAS_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1
export PYTHONHASHSEED ?= 0

.PHONY: help install test test-slow test-scale lint format bench run sweep smoke ui drain report report-check reproduce server server-stop clean

help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'
	@echo
	@echo "  Variables: EXP=<experiments/NAME.yaml> ARGS='<hydra overrides>' JOBS=$(JOBS) ONLY=<reproduction> PROFILE=quick|full"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install bpttlab with its dev tools (done automatically by other targets)

test: $(STAMP) ## Run the test suite (fast tests; slow ones are in test-slow)
	$(PY) -m pytest -m "not slow and not scale" -q

test-slow: $(STAMP) ## Run the slow end-to-end tests
	$(PY) -m pytest -m "slow" -q

test-scale: $(STAMP) ## Ray + tracking-server tests (installs the ray extra; PostgreSQL via apt-get if missing)
	$(PY) -m pip install --quiet -e '.[dev,ray]'
	$(PY) -m pytest -m scale -q

lint: $(STAMP) ## Lint with ruff
	$(PY) -m ruff check src tests
	$(PY) -m ruff format --check src tests

format: $(STAMP) ## Auto-format with ruff
	$(PY) -m ruff format src tests
	$(PY) -m ruff check --fix src tests

bench: $(STAMP) ## Print speed figures (engine step times vs matmul floor, sweep wall time, tracking overhead)
	$(PY) -m bpttlab.tools.bench $(ARGS)

run: $(STAMP) ## Train one run and print its summary, e.g. make run ARGS="model=lstm task.seq_len=50"
	$(PY) -m bpttlab $(ARGS)

sweep: $(STAMP) ## Run the study grid experiments/$(EXP).yaml in parallel, tracked in MLflow (EXP=default)
	$(PY) -m bpttlab --multirun experiments=$(EXP) \
	  $(if $(findstring hydra/launcher=,$(ARGS)),,hydra.launcher.n_jobs=$(JOBS)) $(ARGS)

smoke: ## Run the tiny smoke grid (experiments/smoke.yaml)
	$(MAKE) sweep EXP=smoke

ui: $(STAMP) ## Start the MLflow UI on http://$(HOST):$(UI_PORT) against the project's store, printing each study's runs-table link (Ctrl-C stops it)
	$(PY) -m bpttlab.tools.ui --host $(HOST) --port $(UI_PORT)

drain: $(STAMP) ## Let the running sweeps finish their runs in progress and start no more (the same command resumes them)
	$(PY) -m bpttlab.tools.drain $(ARGS)

report: $(STAMP) ## Build reports/ (figures, report.md, report.html) from the newest sweep in MLflow, no training
	$(PY) -m bpttlab.report $(ARGS)

CHROMIUM_INSTALL := apt-get update && apt-get install -y chromium

report-check: $(STAMP) ## Screenshot reports/report.html in headless Chromium (installs Debian's chromium via apt-get, as root or with sudo, if missing)
	@test -f reports/report.html || { echo "no reports/report.html: run make report first"; exit 1; }
	@if ! $(PY) -c 'import sys; from bpttlab.tools.screenshot import find_chromium; sys.exit(find_chromium() is None)'; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "chromium is not installed; installing it: $(CHROMIUM_INSTALL)"; \
	    export DEBIAN_FRONTEND=noninteractive; $(CHROMIUM_INSTALL) || exit 1; \
	  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null && command -v apt-get >/dev/null; then \
	    echo "chromium is not installed; installing it: sudo $(subst &&,&& sudo,$(CHROMIUM_INSTALL))"; \
	    sudo -n env DEBIAN_FRONTEND=noninteractive sh -c '$(CHROMIUM_INSTALL)' || exit 1; \
	  else \
	    echo "chromium is not installed; install it with: sudo $(subst &&,&& sudo,$(CHROMIUM_INSTALL))"; exit 1; \
	  fi; \
	fi
	$(PY) -m bpttlab.tools.screenshot reports/report.html reports/report.png

reproduce: $(STAMP) ## Re-create published results with a verdict per claim: reports/reproduce.md/.html (PROFILE=quick|full, ONLY=cliff,bound)
	$(PY) -m bpttlab.reproduce --profile $(PROFILE) --jobs $(JOBS) $(if $(ONLY),--only $(ONLY)) $(ARGS)

server: $(STAMP) ## Start an MLflow tracking server in the background on http://$(HOST):$(SERVER_PORT) (BACKEND=postgresql://... for PostgreSQL)
	@# Not echoed, and the URI passed in the environment: a password in BACKEND stays unprinted.
	@$(if $(BACKEND),MLFLOW_BACKEND_STORE_URI='$(BACKEND)') $(PY) -m bpttlab.tools.server start \
	  --host $(HOST) --port $(SERVER_PORT) $(ARGS)

server-stop: $(STAMP) ## Stop the tracking server started by `make server` and every process it started
	$(PY) -m bpttlab.tools.server stop

clean: ## Remove generated outputs (keeps the MLflow store and .venv)
	rm -rf outputs multirun .pytest_cache .ruff_cache
