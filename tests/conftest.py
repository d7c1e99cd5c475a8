"""Shared fixtures: offline environment, the tiny twin, recipes in temp dirs, and a CLI runner."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "WANDB_MODE": "offline", "HF_HUB_DISABLE_TELEMETRY": "1"}
os.environ.update(OFFLINE)

QUICKSTART = ROOT / "recipes" / "quickstart.yml"


@pytest.fixture(scope="session")
def tiny_llama_dir():
    from ftkit.models.tiny import tiny_path

    return tiny_path("tiny:llama")


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_llama_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_llama_dir)


@pytest.fixture(scope="session")
def rows64(tmp_path_factory):
    """The first 64 alpaca rows as a `datasets:` list: enough for short runs, and quick to tokenize."""
    path = tmp_path_factory.mktemp("data") / "alpaca64.jsonl"
    lines = (ROOT / "data_samples" / "alpaca.jsonl").read_text().splitlines()[:64]
    path.write_text("\n".join(lines) + "\n")
    return [{"path": str(path), "type": "alpaca"}]


@pytest.fixture
def make_recipe(tmp_path):
    """make_recipe(**overrides) -> Recipe: the quickstart recipe, small and fast, writing under tmp_path."""
    from ftkit.recipe import load_recipe

    def make(source=QUICKSTART, **overrides):
        base = {"output_dir": str(tmp_path / "out"), "dataset_prepared_path": str(tmp_path / "prepared"),
                "max_steps": 4, "logging_steps": 1, "eval_prompts": [], "val_set_size": 0,
                "warmup_steps": 0}  # the recipe's 20 would outlast 4 steps at a learning rate near 0
        return load_recipe(source, {**base, **overrides})

    return make


def run_cli(*args: str, input: str | None = None, cwd: Path = ROOT, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run `python -m ftkit ARGS` from this checkout (not whatever ftkit is installed), offline."""
    env = {**os.environ, **OFFLINE, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "ftkit", *args], input=input, capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


@pytest.fixture
def said():
    """Every line ftkit announced during the test (ftkit speaks through the "ftkit" logger; see ftkit/log.py)."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    handler = Collect(logging.INFO)
    logger = logging.getLogger("ftkit")
    logger.addHandler(handler)
    yield lines
    logger.removeHandler(handler)


@pytest.fixture(scope="session")
def trained_quickstart(tmp_path_factory):
    """(recipe, TrainResult): the quickstart recipe (full fine-tune of tiny:llama, eval split, eval_prompts) for
    40 steps, shared by the saved-model, evaluate and infer tests."""
    from ftkit import train
    from ftkit.recipe import load_recipe

    tmp = tmp_path_factory.mktemp("quickstart")
    recipe = load_recipe(QUICKSTART, {"output_dir": str(tmp / "out"), "dataset_prepared_path": str(tmp / "prepared"),
                                      "max_steps": 40, "logging_steps": 5, "warmup_steps": 5, "max_new_tokens": 12})
    return recipe, train.run(recipe)
