"""One training path for SFT and every `rl:` method: the same adapters, schedule, callbacks, resume and cache.

Preference training used to be a second copy of the pipeline that drifted: QLoRA trained 0 parameters,
saves_per_epoch became a checkpoint every step, eval_steps and early stopping were dropped, resume and
the loss watchdog were missing. These tests build (or run) every method through `train.run.build` and
compare what each TRL trainer actually got.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import OFFLINE, ROOT
from transformers import EarlyStoppingCallback, TrainerCallback

from ftkit import data, models, train
from ftkit.cookbook.preference import method_recipe
from ftkit.errors import ConfigError
from ftkit.recipe import load_recipe
from ftkit.train.callbacks import LossWatchdog
from ftkit.train.run import build
from ftkit.train.callbacks import RecipeLogger

METHODS = ["sft", "dpo", "ipo", "kto", "orpo", "simpo"]
DATA = {"sft": ("data_samples/alpaca.jsonl", "alpaca"), "kto": ("data_samples/kto.jsonl", "chat_template.prompt_pairs")}
PAIRS = ("data_samples/preference_pairs.jsonl", "chat_template.prompt_pairs")


class Seen(TrainerCallback):
    """An extra callback handed to train.run: records the logged losses it saw."""

    def __init__(self):
        self.losses = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.losses.append(logs["loss"])


def recipe_for(method: str, tmp: Path, rows: int = 24, **overrides):
    """The method's recipe on the tiny twin, `rows` rows of its sample data, the same LoRA for every method."""
    path, type_ = DATA.get(method, PAIRS)
    common = {"base_model": "tiny:llama", "output_dir": str(tmp / "out"), "dataset_prepared_path": str(tmp / "prep"),
              "datasets": [{"path": path, "type": type_, "split": f"train[:{rows}]"}], "sequence_len": 128,
              "adapter": "lora", "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "lora_target_linear": True,
              "micro_batch_size": 2, "gradient_accumulation_steps": 1, "logging_steps": 1, "eval_prompts": [],
              "warmup_steps": 0, "bf16": False, "fp16": False, "tf32": False, **overrides}
    if method == "sft":
        return load_recipe({"chat_template": "llama3", "max_steps": 4, **common})
    return method_recipe(method, {"test_datasets": [], **common})


SCHEDULE = dict(val_set_size=4, saves_per_epoch=2, eval_steps=5, early_stopping_patience=2, loss_watchdog_threshold=50.0)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """build(recipe) for (method, adapter), once per module: the trainer each method's run would train."""
    cache = {}

    def get(method, adapter):
        if (method, adapter) not in cache:
            tmp = tmp_path_factory.mktemp(f"{method}-{adapter}")
            extra = Seen()
            recipe = recipe_for(method, tmp, adapter=adapter, load_in_4bit=adapter == "qlora", **SCHEDULE)
            cache[method, adapter] = (build(recipe, callbacks=[extra]), extra)
        return cache[method, adapter]

    return get


@pytest.mark.parametrize("adapter", ["lora", "qlora"])
@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_the_same_adapter(built, method, adapter):
    """The adapter comes from models.load_model for every method: QLoRA once trained 0 parameters under rl:."""
    trainer = built(method, adapter)[0].trainer
    trainable = {n: p.numel() for n, p in trainer.model.named_parameters() if p.requires_grad}
    sft_trainable, _ = models.count_parameters(built("sft", adapter)[0].trainer.model)
    assert sum(trainable.values()) == sft_trainable > 0
    assert all(".lora_A.default." in n or ".lora_B.default." in n for n in trainable), sorted(trainable)[:4]
    if adapter == "qlora":  # a 4-bit base under the adapter, for every method
        assert any(type(m).__name__ == "Linear4bit" for m in trainer.model.modules())
    if method in ("dpo", "ipo", "kto"):  # the reference is the policy's own step-0 adapter: no second base model
        assert trainer.ref_model is None


@pytest.mark.parametrize("method", METHODS)
def test_schedule_and_callbacks_reach_every_trainer(built, method):
    """saves_per_epoch, eval_steps, early stopping, the watchdog and extra callbacks: what the trainer got."""
    (_, _, prepared, trainer), extra = built(method, "lora")
    assert (prepared.stats["rows_in"], len(prepared.train), len(prepared.eval)) == (24, 20, 4)
    args = trainer.args
    # 24 rows - 4 held out = 20 / 2 per batch = 10 steps per epoch; saves_per_epoch 2 -> every 5 steps
    assert (args.save_strategy, args.save_steps) == ("steps", 5)
    assert (args.eval_strategy, args.eval_steps, args.metric_for_best_model) == ("steps", 5, "eval_loss")
    kinds = {type(c) for c in trainer.callback_handler.callbacks}
    assert {LossWatchdog, EarlyStoppingCallback, RecipeLogger, Seen} <= kinds
    assert extra in trainer.callback_handler.callbacks


def test_prepared_cache_is_reused_and_keyed_by_method(tmp_path, said):
    recipe = recipe_for("dpo", tmp_path)
    tok = models.load_tokenizer(recipe)
    first = data.prepare(recipe, tok)
    said.clear()
    again = data.prepare(recipe, tok)
    assert not first.cache_hit and again.cache_hit and any("re-using prepared data" in s for s in said)
    assert again.train["chosen"] == first.train["chosen"] and again.stats == first.stats
    orpo = data.prepare(recipe.model_copy(update={"rl": "orpo", "rl_beta": None}), tok)  # same rows, other method
    assert not orpo.cache_hit and orpo.cache_dir != first.cache_dir


def test_shuffle_shards_and_row_errors_follow_the_recipe_for_preference_rows(tmp_path, tiny_tokenizer):
    import json

    rows = [{"prompt": f"Question {i}?", "chosen": f"Answer {i}.", "rejected": f"Answer {i}!"} for i in range(8)]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = {"path": str(path), "type": "chat_template.prompt_pairs"}
    recipe = recipe_for("dpo", tmp_path, datasets=[spec], shuffle_merged_datasets=False, dataset_prepared_path=None)
    in_order = data.prepare(recipe, tiny_tokenizer).train
    assert [r["prompt"][0]["content"] for r in in_order] == [f"Question {i}?" for i in range(8)]
    two = data.prepare(recipe.model_copy(update={"dataset_processes": 2}), tiny_tokenizer).train
    assert two["prompt"] == in_order["prompt"] and two["rejected"] == in_order["rejected"]  # 2 processes, same rows
    shard = data.prepare(recipe.model_copy(update={"dataset_shard_num": 4, "dataset_shard_idx": 1}), tiny_tokenizer)
    assert [r["prompt"][0]["content"] for r in shard.train] == ["Question 2?", "Question 3?"]  # contiguous
    rows[6] = {"prompt": "Question 6?", "chosen": "Answer 6."}  # line 7: no rejected answer
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    second_half = load_recipe({**recipe.dump(), "datasets": [{**spec, "shards": 2, "shards_idx": 1}]})
    with pytest.raises(Exception, match=r"pairs\.jsonl:7: field 'rejected': missing"):
        data.prepare(second_half, tiny_tokenizer)


def test_truncating_pairs_is_a_config_error_naming_option_and_method(tmp_path, tiny_tokenizer):
    recipe = recipe_for("kto", tmp_path, excess_length_strategy="truncate")
    with pytest.raises(ConfigError, match=r"excess_length_strategy: truncate is not supported with rl: kto .*"
                                          r"Fix: use excess_length_strategy: drop"):
        data.prepare(recipe, tiny_tokenizer)
    # options a method does not read are refused when the recipe loads (generated from the schema's metadata)
    with pytest.raises(ConfigError, match=r"sample_packing: is not read by rl: dpo \(only by supervised fine-tuning"):
        data.prepare(recipe_for("dpo", tmp_path, sample_packing=True), tiny_tokenizer)
    with pytest.raises(ConfigError, match=r"relora_steps: is not read by rl: ipo \(only by .*rl: orpo or rl: simpo\)"):
        data.prepare(recipe_for("ipo", tmp_path, relora_steps=4), tiny_tokenizer)
    data.prepare(recipe_for("orpo", tmp_path, relora_steps=4), tiny_tokenizer)  # no reference: ReLoRA is fine


# A DPO run that diverges: the RPO term (NLL of the chosen answer) explodes at lr 1.0 without clipping,
# as SFT's loss does in tests/test_training_ops.py (measured: loss 7.7 -> 10.9 -> 53.4 -> 55.2).
DIVERGING = dict(adapter=None, rpo_alpha=1.0, learning_rate=1.0, max_grad_norm=0, lr_scheduler="constant",
                 max_steps=12, dataset_prepared_path=None)


def test_loss_watchdog_stops_a_diverging_dpo_run_and_extra_callbacks_see_it(tmp_path):
    seen = Seen()
    result = train.run(recipe_for("dpo", tmp_path, rows=40, loss_watchdog_threshold=20.0, loss_watchdog_patience=2,
                                  **DIVERGING), callbacks=[seen])
    reason = result.runtime["stop_reason"]
    assert reason and reason.startswith("loss watchdog:") and "Fix: lower learning_rate (now 1.0)" in reason
    assert result.steps < 12 and all(not (v <= 20.0) for _, v in result.losses[-2:])
    assert seen.losses == [v for _, v in result.losses]  # the extra callback saw every logged loss


def test_early_stopping_stops_a_dpo_run_with_an_eval_split(tmp_path):
    result = train.run(recipe_for("dpo", tmp_path, rows=40, val_set_size=4, eval_steps=1, early_stopping_patience=2,
                                  **DIVERGING))
    assert result.runtime["stop_reason"].startswith("early stopping") and result.steps < 12, result.summary()


def test_sigkill_then_auto_resume_continues_the_same_dpo_loss_curve(tmp_path, said):
    """As tests/test_training_ops.py does for SFT: kill a DPO run after a checkpoint, resume, same losses."""
    common = dict(rows=24, max_steps=6, save_steps=2, save_total_limit=2, learning_rate=0.005, dataset_prepared_path=None)
    straight = train.run(recipe_for("dpo", tmp_path / "straight", **common))
    saved = {p.name for p in Path(straight.output_dir).iterdir()}  # the trained adapter, not TRL's step-0 "ref" copy
    assert "adapter_model.safetensors" in saved and "ref" not in saved, saved
    killed = recipe_for("dpo", tmp_path / "killed", auto_resume_from_checkpoints=True, **common)
    (tmp_path / "kill.yml").write_text(yaml.safe_dump(killed.dump(), sort_keys=False))
    proc = subprocess.Popen([sys.executable, "-m", "ftkit", "train", str(tmp_path / "kill.yml")], cwd=ROOT,
                            env={**os.environ, **OFFLINE, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = Path(killed.output_dir) / "checkpoint-2" / "ftkit_checkpoint.json"  # ftkit's manifest, written last
    deadline = time.time() + 240
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL and not (Path(killed.output_dir) / "metrics.json").exists()

    said.clear()
    resumed = train.run(killed)
    start = int(Path(resumed.runtime["resumed_from"]).name.split("-")[1])
    assert 2 <= start < 6 and start % 2 == 0 and any("resuming from" in s for s in said)
    after = dict((s, v) for s, v in resumed.losses if s > start)
    assert sorted(after) == list(range(start + 1, 7))
    for step, loss in after.items():
        assert loss == pytest.approx(dict(straight.losses)[step], rel=1e-5), step
    assert resumed.series("margin")[-1] == pytest.approx(straight.series("margin")[-1], rel=1e-4)


@pytest.mark.parametrize("method", ["sft", "dpo"])
def test_qlora_with_a_fully_trained_head_trains_in_an_fp32_run(method, tmp_path):
    """TRL casts a 4-bit model's trainable weights to bf16; a module trained in full (lm_head via
    lora_modules_to_save) must come back to the run's fp32, or its matmul with fp32 activations fails."""
    result = train.run(recipe_for(method, tmp_path, rows=8, adapter="qlora", load_in_4bit=True, max_steps=1,
                                  lora_modules_to_save=["lm_head"], val_set_size=2))  # measured before and after too
    assert result.steps == 1 and result.trainable_params > 0
