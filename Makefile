# Two commands do everything on a fresh machine:  `make demo`  and  `make test`.
# Both create .venv and install the pinned stack first (once; re-run when pyproject.toml changes).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ftkit-installed
# Offline and headless: nothing may reach a model hub (the `ftkit` command alone is online, as transformers is).
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export WANDB_MODE=offline WANDB_SILENT=true HF_HUB_DISABLE_TELEMETRY=1 PYTHONUNBUFFERED=1

.PHONY: setup demo test clean
setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and pinned: anything that resolves it unpinned pulls a multi-GB CUDA build
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev,deepspeed,gradio,tracking,cloud]"  # not the jupyter metapackage: +3.5 s per kernel start
	touch $(STAMP)

demo: setup  ## fine-tune the embedded tiny default on data_samples/ and show it learned
	$(BIN)/ftkit train recipes/quickstart.yml

test: setup  ## the whole suite, notebooks included (what CI runs)
	$(BIN)/python -m pytest -q -ra tests

clean:
	rm -rf $(VENV) outputs runs last_run_prepared
