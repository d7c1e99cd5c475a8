"""Checkpoints and resume (with a SIGKILL), gradient accumulation, loss watchdog, early stopping, NEFTune."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import OFFLINE, ROOT

from ftkit import train
from ftkit.errors import ConfigError


def weights(path):
    from transformers import AutoModelForCausalLM

    return dict(AutoModelForCausalLM.from_pretrained(path).named_parameters())


def test_grad_accumulation_1x8_equals_8x1(make_recipe, tmp_path, tiny_llama_dir, rows64):
    """Same 8 rows, one optimizer step: 8 micro-batches of 1 == 1 batch of 8 (loss and updated weights).

    SGD without clipping, so a wrong loss scale would show in the weights (Adam's first step hides it).
    The rows differ in length: a per-micro-batch mean (the classic bug) would weight short rows up.
    """
    common = dict(max_steps=1, sequence_len=64, optimizer="sgd", learning_rate=0.5, max_grad_norm=0,
                  lr_scheduler="constant", warmup_steps=0, datasets=rows64)
    a = train.run(make_recipe(micro_batch_size=1, gradient_accumulation_steps=8, output_dir=str(tmp_path / "a"), **common))
    b = train.run(make_recipe(micro_batch_size=8, gradient_accumulation_steps=1, output_dir=str(tmp_path / "b"), **common))
    assert a.first_loss == pytest.approx(b.first_loss, rel=1e-5)
    wa, wb, w0 = weights(tmp_path / "a"), weights(tmp_path / "b"), weights(tiny_llama_dir)
    for name in w0:
        moved = (wb[name] - w0[name]).abs().max().item()
        torch.testing.assert_close(wa[name] - w0[name], wb[name] - w0[name], atol=1e-6 + 1e-4 * moved, rtol=0)
    assert max((wb[n] - w0[n]).abs().max().item() for n in w0) > 1e-3  # the step really moved the weights


def start_cli_run(recipe, tmp_path) -> subprocess.Popen:
    path = tmp_path / "kill.yml"
    path.write_text(yaml.safe_dump(recipe.dump(), sort_keys=False))
    env = {**os.environ, **OFFLINE, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "ftkit", "train", str(path)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_sigkill_then_auto_resume_continues_the_same_loss_curve(make_recipe, tmp_path, rows64, said):
    common = dict(max_steps=10, save_steps=2, save_total_limit=2, sequence_len=64, micro_batch_size=2,
                  datasets=rows64, learning_rate=0.01)
    straight = train.run(make_recipe(output_dir=str(tmp_path / "straight"), **common))

    killed = make_recipe(output_dir=str(tmp_path / "killed"), auto_resume_from_checkpoints=True, **common)
    proc = start_cli_run(killed, tmp_path)
    first = Path(killed.output_dir) / "checkpoint-2" / "ftkit_checkpoint.json"  # ftkit's manifest, written last
    deadline = time.time() + 240
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL  # killed mid-run, not finished
    assert not (Path(killed.output_dir) / "metrics.json").exists()
    half = Path(killed.output_dir) / "checkpoint-9999"  # a save cut off before ftkit's manifest
    half.mkdir()
    (half / "config.json").write_text("{}")

    said.clear()
    resumed = train.run(killed)
    start = int(Path(resumed.runtime["resumed_from"]).name.split("-")[1])
    assert 2 <= start < 10 and start % 2 == 0
    assert any("skipping" in m and "checkpoint-9999" in m and "cut off" in m for m in said)
    after = {s: v for s, v in resumed.losses if s > start}
    assert sorted(after) == list(range(start + 1, 11))
    for step, loss in after.items():
        assert loss == pytest.approx(dict(straight.losses)[step], rel=1e-5), step


def test_resume_from_missing_checkpoint_is_a_config_error(make_recipe, tmp_path):
    from ftkit.train.checkpoints import resume_from

    recipe = make_recipe(resume_from_checkpoint=str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="resume_from_checkpoint: .*cannot be resumed: it is not a directory.*Fix: point it at"):
        resume_from(recipe)


def test_loss_watchdog_stops_a_diverging_run(make_recipe, rows64):
    # AdamW at lr 1.0 without clipping: loss 6.8 -> 21.7 -> 39.3 -> 69.6 on the tiny twin
    result = train.run(make_recipe(max_steps=12, learning_rate=1.0, lr_scheduler="constant", warmup_steps=0,
                                   max_grad_norm=0, sequence_len=64, datasets=rows64,
                                   loss_watchdog_threshold=20.0, loss_watchdog_patience=2))
    reason = result.runtime["stop_reason"]
    assert reason and reason.startswith("loss watchdog:") and "Fix: lower learning_rate (now 1.0)" in reason
    assert result.steps < 12
    bad = [v for _, v in result.losses[-2:]]
    assert all(not (v <= 20.0) for v in bad)  # the last two logged losses were above threshold (or NaN)


def test_early_stopping_when_eval_loss_stops_improving(make_recipe, rows64):
    # a diverging lr makes eval loss rise after the first steps; patience 2 evaluations
    result = train.run(make_recipe(max_steps=12, learning_rate=1.0, lr_scheduler="constant", warmup_steps=0,
                                   max_grad_norm=0, sequence_len=64, datasets=rows64, val_set_size=8,
                                   eval_steps=1, early_stopping_patience=2))
    assert result.runtime["stop_reason"].startswith("early stopping")
    assert result.steps < 12


def test_evaluation_schedule_and_neftune_reach_the_trainer(make_recipe, rows64):
    from ftkit import models

    recipe = make_recipe(datasets=rows64, val_set_size=8, evals_per_epoch=4, saves_per_epoch=2,
                         micro_batch_size=4, neftune_noise_alpha=5.0)
    from ftkit.train.args import sft_config

    args = sft_config(recipe, models.resolve_precision(recipe), has_eval=True, n_train=56)
    # 56 rows / 4 per batch = 14 steps per epoch -> eval every 14 // 4 = 3, save every 14 // 2 = 7
    assert (args.eval_strategy, args.eval_steps, args.save_steps) == ("steps", 3, 7)
    assert args.neftune_noise_alpha == 5.0


@pytest.mark.parametrize("bad, match", [
    (dict(eval_steps=5, early_stopping_patience=2), "early_stopping_patience: needs an evaluation split. Fix: set val_set_size"),
    (dict(val_set_size=8, early_stopping_patience=2), "early_stopping_patience: needs evaluations during training"),
    (dict(save_steps=5, saves_per_epoch=2), "saves_per_epoch: conflicts with save_steps"),
])
def test_schedule_mistakes_are_config_errors(make_recipe, bad, match):
    with pytest.raises(ConfigError, match=match):
        make_recipe(**bad)


def test_step_metrics_only_on_logged_steps_leave_the_training_unchanged(make_recipe, tmp_path, rows64, monkeypatch):
    """ftkit's SFTTrainer skips TRL's per-step entropy/accuracy on steps that are not logged: the losses and
    the trained weights must be those of TRL's own SFTTrainer, and every logged step still reports both."""
    import json

    from trl import SFTTrainer

    from ftkit.train import sft

    common = dict(max_steps=8, logging_steps=4, sequence_len=64, micro_batch_size=2, datasets=rows64,
                  learning_rate=0.01)
    lean = train.run(make_recipe(output_dir=str(tmp_path / "lean"), **common))
    import dataclasses

    monkeypatch.setattr(sft, "SFT", dataclasses.replace(sft.SFT, trainer_class=lambda: SFTTrainer))
    full = train.run(make_recipe(output_dir=str(tmp_path / "full"), **common))

    def logged(out):
        history = json.loads((Path(out) / "trainer_state.json").read_text())["log_history"]
        return [h for h in history if "loss" in h]

    a, b = logged(lean.output_dir), logged(full.output_dir)
    assert [h["step"] for h in a] == [h["step"] for h in b] == [4, 8]
    assert [h["loss"] for h in a] == pytest.approx([h["loss"] for h in b], rel=1e-6)
    for h in a:
        assert 0 < h["mean_token_accuracy"] <= 1 and h["entropy"] > 0
    wa, wb = weights(lean.output_dir), weights(full.output_dir)
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], atol=1e-6, rtol=0)


def test_a_zero3_run_leaves_later_loads_in_the_process_plain(make_recipe, tmp_path):
    """A notebook (one process) trains with DeepSpeed ZeRO-3, then another recipe: transformers' global ZeRO-3
    switch is off again (the weights load as tensors, not ZeRO-3 placeholders on the meta device), and accelerate's
    state is reset (the next Trainer is a plain one, whose evaluation does not ask for ZeRO inference)."""
    from transformers.integrations import is_deepspeed_zero3_enabled

    from ftkit import models

    zero3 = make_recipe(deepspeed=str(ROOT / "recipes" / "deepspeed" / "zero3.json"), max_steps=1,
                        save_strategy="no", output_dir=str(tmp_path / "z3"))
    assert train.run(zero3).steps == 1
    assert not is_deepspeed_zero3_enabled()
    plain = make_recipe(output_dir=str(tmp_path / "plain"), max_steps=1, val_set_size=0.1)
    model = models.load_base(plain, models.load_tokenizer(plain))
    assert all(p.device.type == "cpu" and p.numel() > 0 for p in model.parameters())
    result = train.run(plain)  # a plain Trainer again: its evaluation is not sent to ZeRO inference
    assert result.steps == 1 and "RANK" not in os.environ  # a subprocess started now gets no stale world of one
    again = train.run(zero3.model_copy(update={"output_dir": str(tmp_path / "z3b")}))  # reuses the process group
    assert again.steps == 1


def test_each_run_starts_from_empty_bitsandbytes_overrides(make_recipe, rows64):
    """An earlier run's 32-bit override at (group 0, index 0) would apply to this run's first parameter."""
    import bitsandbytes as bnb

    manager = bnb.optim.GlobalOptimManager.get_instance()
    manager.index2config[(0, 0)] = {"optim_bits": 32}  # as the Trainer of an earlier adamw_bnb_8bit run leaves it
    train.run(make_recipe(datasets=rows64, max_steps=1, save_strategy="no"))
    assert (0, 0) not in manager.index2config
