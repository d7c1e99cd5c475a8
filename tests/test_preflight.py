"""Checks before a run (ftkit/train/preflight.py): for every case, `ftkit check` and `ftkit train` agree.

A recipe check refuses is refused by train with the same `ftkit: error` line (the key, the fix), exit code 2, no
traceback, and nothing trained (no checkpoint, no step logged); a recipe check passes trains past its first step.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ftkit.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def recipe(tmp_path):
    """A tiny:llama recipe on 64 alpaca rows, 2 steps, writing under tmp_path."""
    rows = tmp_path / "rows.jsonl"
    rows.write_text("\n".join((ROOT / "data_samples" / "alpaca.jsonl").read_text().splitlines()[:64]) + "\n")
    path = tmp_path / "r.yml"
    path.write_text(yaml.safe_dump({
        "base_model": "tiny:llama", "datasets": [{"path": str(rows), "type": "alpaca"}], "sequence_len": 128,
        "micro_batch_size": 4, "max_steps": 2, "warmup_steps": 0, "logging_steps": 1, "val_set_size": 0,
        "save_strategy": "no", "output_dir": str(tmp_path / "out"), "dataset_prepared_path": str(tmp_path / "prepared")},
        sort_keys=False))
    return path


def _error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("ftkit: error: ")]
    assert len(lines) == 1, err
    return lines[0]


def trained_nothing(out: Path) -> bool:
    return not list(out.glob("checkpoint-*")) and not (out / "trainer_state.json").exists() and \
        not (out / "metrics.json").exists()


def refused(recipe: Path, capsys, key: str, fix: str, *overrides: str, data: bool = False, check_too: bool = True) -> str:
    """`check` (with --data when asked) and `train` both exit 2 with one and the same error line naming `key`
    and `fix`, without a traceback, and nothing was trained. Returns the line."""
    lines = []
    verbs = (["check", *(["--data"] if data else [])], ["train"]) if check_too else (["train"],)
    for verb in verbs:
        assert main([verb[0], str(recipe), *verb[1:], *overrides]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err, err
        lines.append(_error(err))
    assert len(set(lines)) == 1, lines
    assert f": {key}: " in lines[0] and f"Fix: {fix}" in lines[0], lines[0]
    assert trained_nothing(recipe.parent / "out")
    return lines[0]


def trains(recipe: Path, capsys, *overrides: str) -> str:
    """`check` passes and `train` runs past its first step; returns what check printed."""
    assert main(["check", str(recipe), "--data", *overrides]) == 0
    said = capsys.readouterr().out
    assert "ok: the recipe will train" in said
    assert main(["train", str(recipe), *overrides]) == 0
    metrics = json.loads((recipe.parent / "out" / "metrics.json").read_text())
    assert metrics["steps"] >= 1 and metrics["losses"], metrics
    return said


# ---------------------------------------------------------------- what train knows before loading weights

def test_a_plain_recipe_passes_check_and_trains(recipe, capsys):
    said = trains(recipe, capsys)
    assert "not checked" not in said  # with --data every check that needs no weights ran


def test_hub_push_without_the_hub(recipe, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    line = refused(recipe, capsys, "hub_model_id", "unset HF_HUB_OFFLINE", "--hub_model_id=me/model")
    assert "pushing to me/model needs the hub, but it is switched off" in line
    assert not (recipe.parent / "prepared").exists()  # refused before any row was prepared


def test_model_type_transformers_lacks(recipe, capsys):
    line = refused(recipe, capsys, "model_type", "use AutoModelForCausalLM (or did you mean LlamaForCausalLM?)",
                   "--model_type=LlamaForCausalLMX")
    assert "transformers has no model class 'LlamaForCausalLMX'" in line
    assert not (recipe.parent / "prepared").exists()


def test_model_type_that_cannot_build_this_config(recipe, capsys):
    line = refused(recipe, capsys, "model_type", "use AutoModelForCausalLM", "--model_type=AutoModelForSeq2SeqLM")
    assert "AutoModelForSeq2SeqLM cannot build this model (llama)" in line


def test_lora_targets_the_model_lacks(recipe, capsys):
    """None of the listed modules exists: built on the meta device, the adapter finds nothing to adapt."""
    line = refused(recipe, capsys, "lora_target_modules", "use its linear layers: down_proj, gate_proj, k_proj",
                   "--adapter=lora", "--lora_target_modules=[qkv_proj,dense]")
    assert "has none of the modules lora_target_modules names ('qkv_proj', 'dense')" in line
    assert not (recipe.parent / "prepared").exists()


def test_optimizer_whose_package_is_missing(recipe, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torchao" else real(name, *a))
    line = refused(recipe, capsys, "optimizer", "pip install torchao", "--optimizer=adamw_torch_4bit")
    assert "optimizer adamw_torch_4bit comes from the torchao package, which is not installed" in line


def test_no_trainable_rows(recipe, capsys):
    """Every row longer than sequence_len: check --data prepares the rows as train does, and both refuse."""
    line = refused(recipe, capsys, "datasets.0.path", "raise sequence_len to at least", "--sequence_len=8", data=True)
    assert "no usable rows: 64 of 64 are longer than sequence_len=8" in line


def test_deepspeed_zero3_with_a_4bit_model_trains(recipe, capsys):
    """ZeRO-3 takes a bitsandbytes 4-bit base here (measured: 1 and 2 CPU processes train and save the adapter),
    so check passes it and train runs it (in a child process: DeepSpeed sets up a process group)."""
    from conftest import run_cli

    overrides = ("--deepspeed=zero3.json", "--adapter=qlora", "--load_in_4bit=true")
    assert main(["check", str(recipe), "--data", *overrides]) == 0  # reads the engine file only: no process group
    train = run_cli("train", str(recipe), *overrides)
    assert train.returncode == 0, train.stderr[-3000:]
    assert "ok: the recipe will train" in capsys.readouterr().out
    assert json.loads((recipe.parent / "out" / "metrics.json").read_text())["steps"] == 2


# ---------------------------------------------------------------- no tracebacks

def test_tokenizer_type_whose_required_tokens_the_tokenizer_lacks(recipe, capsys):
    line = refused(recipe, capsys, "tokenizer_type", "remove tokenizer_type (AutoTokenizer loads the class",
                   "--tokenizer_type=BertTokenizer")
    assert "BertTokenizer cannot encode text (WordPiece error: Missing [UNK] token from the vocabulary)" in line


def test_tokenizer_type_that_cannot_read_the_files(recipe, capsys):
    line = refused(recipe, capsys, "tokenizer_type", "remove tokenizer_type", "--tokenizer_type=T5Tokenizer")
    assert "T5Tokenizer cannot read the tokenizer files (TypeError:" in line


@pytest.mark.skipif("__import__('torch').cuda.is_available()", reason="needs a machine without CUDA device 0")
def test_device_map_on_a_device_this_machine_lacks(recipe, capsys):
    line = refused(recipe, capsys, "device_map", "remove device_map", '--device_map={"": 0}')
    assert "places the model on cuda:0, but this machine has no CUDA device" in line


# ---------------------------------------------------------------- checks before a long run

def test_tokenizer_that_drops_spaces_and_newlines(recipe, capsys):
    """LlamaTokenizer on a byte-level BPE: every space and newline vanishes; refused before any row is prepared."""
    line = refused(recipe, capsys, "tokenizer_type", "remove tokenizer_type", "--tokenizer_type=LlamaTokenizer")
    assert "does not give text back: 'Hello world.\\nA second line.' decodes as 'Helloworld.Asecondline.'" in line


def test_rows_whose_text_the_tokenizer_loses(make_recipe, rows64):
    """The row check on its own: the alpaca rows' prompt and answer text, through LlamaTokenizer, loses its spaces;
    the problem names tokenizer_type and the data file."""
    from transformers import LlamaTokenizer

    from ftkit import data, models
    from ftkit.models.tiny import tiny_path
    from ftkit.train import preflight

    r = make_recipe(datasets=rows64, warmup_steps=0)
    prepared = data.prepare(r, models.load_tokenizer(r))  # prepared with the right tokenizer: the rows are fine
    report = preflight.Report(r.model_copy(update={"tokenizer_type": "LlamaTokenizer"}))
    preflight.row_checks(report, LlamaTokenizer.from_pretrained(tiny_path("tiny:llama")), prepared)
    [problem] = report.problems
    assert problem.where == "tokenizer_type" and "alpaca64.jsonl: 'Below is an instruction" in problem.problem
    assert "decodes as 'Belowisaninstruction" in problem.problem


def test_warmup_longer_than_max_steps_is_said_and_trains(recipe, capsys):
    """A smoke run of a real recipe (`--max_steps=2` under warmup_steps: 5) trains as asked; check and train say
    once how far the learning rate gets."""
    said = trains(recipe, capsys, "--warmup_steps=5")
    line = "warmup_steps: the warm-up (5 steps) is longer than the run (2 steps, max_steps): the learning rate " \
           "climbs from 0 and ends at 40% of learning_rate. Fine for a smoke run; for a real one set warmup_steps below 2"
    assert said.count(line) == 1, said
    assert capsys.readouterr().out.count(line) == 1


def test_warmup_longer_than_the_rows_make_the_run_is_said(recipe, capsys):
    """Without max_steps the run's length comes from the rows, so only `check --data` (and train, after preparing
    them) can say it: 64 rows x 1 epoch / 4 per step = 16 steps."""
    overrides = ("--max_steps=0", "--num_epochs=1", "--warmup_steps=20")
    assert main(["check", str(recipe), *overrides]) == 0
    assert "the warm-up (20 steps)" not in capsys.readouterr().out
    assert main(["check", str(recipe), "--data", *overrides]) == 0
    assert "the warm-up (20 steps) is longer than the run (16 steps, 64 rows x 1 epochs / 4 rows per step): the " \
           "learning rate climbs from 0 and ends at 80% of learning_rate" in capsys.readouterr().out


def test_loss_watchdog_threshold_below_the_loss_before_training(recipe, capsys):
    """Needs the weights: check says it did not measure it; train refuses before step 1, naming the loss."""
    assert main(["check", str(recipe), "--loss_watchdog_threshold=2"]) == 0
    assert "not checked: loss_watchdog_threshold against the loss before training" in capsys.readouterr().out
    line = refused(recipe, capsys, "loss_watchdog_threshold", "set loss_watchdog_threshold above",
                   "--loss_watchdog_threshold=2", check_too=False)
    loss = float(re.search(r"the model's loss before training is ([0-9.]+) \(first 4 rows\), above "
                           r"loss_watchdog_threshold 2:", line).group(1))
    assert 6 < loss < 8  # ln(1024 tokens) = 6.93: the untrained twin is near uniform


def test_loss_watchdog_threshold_above_the_loss_trains(recipe, capsys):
    trains(recipe, capsys, "--loss_watchdog_threshold=20")


# ---------------------------------------------------------------- W&B without a login

@pytest.fixture
def no_wandb_login(tmp_path, monkeypatch):
    """A fake HOME with no netrc, no key, no WANDB_MODE."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for key in ("WANDB_MODE", "WANDB_API_KEY", "NETRC", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL"):
        monkeypatch.delenv(key, raising=False)
    return home


def test_wandb_project_without_a_login_logs_offline_and_says_so(recipe, capsys, no_wandb_login):
    """check says it; train says it and writes an offline W&B run (in a fresh process: wandb keeps the settings of
    its first run, e.g. the run folder, for the life of a process)."""
    from conftest import OFFLINE

    note = "wandb_project: no W&B login here (no WANDB_API_KEY, no netrc entry), so the run logs offline"
    assert main(["check", str(recipe), "--wandb_project=p"]) == 0
    said = capsys.readouterr().out
    assert note in said and "to log online, `wandb login` (or set WANDB_API_KEY)" in said
    env = {**{k: v for k, v in {**os.environ, **OFFLINE}.items() if k != "WANDB_MODE"}, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "ftkit", "train", str(recipe), "--wandb_project=p"], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and note in proc.stdout, proc.stderr[-3000:]
    assert list((recipe.parent / "out" / "wandb").glob("offline-run-*")), "train logged to an offline W&B run"


def test_wandb_online_without_a_login_is_refused(recipe, capsys, no_wandb_login):
    refused(recipe, capsys, "wandb_mode", "`wandb login` (or set WANDB_API_KEY), or set wandb_mode: offline",
            "--wandb_project=p", "--wandb_mode=online")


def test_a_netrc_login_keeps_wandb_online(make_recipe, no_wandb_login):
    from ftkit.plugins import tracking
    from ftkit.train import preflight

    (no_wandb_login / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    report = preflight.Report(make_recipe(wandb_project="p"))
    tracking.check(report)
    assert report.recipe.wandb_mode is None and not report.notes and not report.problems


# ---------------------------------------------------------------- what check could not run

def test_check_says_which_checks_it_could_not_run(recipe, capsys):
    """A hub model that is not in the hub cache: check reads no network, so it names the checks it skipped."""
    assert main(["check", str(recipe), "--base_model=someone/not-cached-model"]) == 0
    out = capsys.readouterr().out
    assert "not checked: tokenizer and model checks: someone/not-cached-model is not on this machine" in out
    assert "ok: the recipe will train" in out
