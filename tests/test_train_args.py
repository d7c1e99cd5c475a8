"""The recipe as each trainer's config (train/args.py): SFTConfig, DPOConfig (dpo, ipo), KTOConfig, ORPOConfig,
CPOConfig (simpo), GRPOConfig (grpo, gdpo) and RewardConfig, built from shipped recipes as `ftkit train` builds
them, with the key argument values read back from the config object TRL receives."""
from pathlib import Path

import pytest

from ftkit.models import Precision
from ftkit.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
LLAMA = ROOT / "recipes" / "llama"
FP32 = Precision(False, False, False)


def config(recipe, has_eval=False, n_train=0):
    """The trainer config `ftkit train` hands to TRL for this recipe."""
    from ftkit.train.args import config

    return config(recipe, FP32, has_eval, n_train)


def recipe(name, tmp_path, **overrides):
    return load_recipe(LLAMA / f"{name}.yml", {"base_model": "tiny:llama", "output_dir": str(tmp_path / "out"),
                                               **overrides})


def test_sft_lora_recipe(tmp_path):
    c = config(recipe("lora", tmp_path), has_eval=True, n_train=1000)
    assert type(c).__name__ == "SFTConfig"
    assert (c.learning_rate, c.lr_scheduler_type.value, c.warmup_steps) == (2e-4, "cosine", 10)
    assert (c.per_device_train_batch_size, c.gradient_accumulation_steps, c.num_train_epochs) == (2, 8, 1.0)
    assert (c.max_length, c.packing, c.logging_steps, c.seed, c.data_seed) == (1024, False, 5, 42, 42)
    assert (c.save_strategy.value, c.eval_strategy.value, c.max_steps) == ("no", "no", -1)
    assert (c.optim.value, c.bf16, c.fp16, c.use_cpu, c.dataloader_pin_memory) == ("adamw_torch", False, False, True,
                                                                                 False)
    assert c.activation_checkpointing is True and c.activation_checkpointing_kwargs == {"use_reentrant": False}
    assert (c.logging_nan_inf_filter, c.average_tokens_across_devices, c.ddp_find_unused_parameters) == (False, True,
                                                                                                      False)
    assert c.report_to == ["tensorboard"] and c.push_to_hub is False


def test_sft_silent_recipe_takes_axolotls_defaults(tmp_path):
    """1,000 rows, one epoch, 1 row per step: warm-up 3% (30), logging every 0.5% (5), a checkpoint per epoch."""
    r = load_recipe({"base_model": "tiny:llama", "datasets": [{"path": "data_samples/alpaca.jsonl", "type": "alpaca"}],
                     "output_dir": str(tmp_path / "out")})
    c = config(r, has_eval=False, n_train=1000)
    assert (c.warmup_steps, c.logging_steps, c.save_strategy.value, c.save_total_limit) == (30, 5, "epoch", None)
    assert (c.per_device_eval_batch_size, c.max_length, c.eval_strategy.value) == (1, r.sequence_len, "no")
    assert (c.adam_beta2, c.weight_decay, c.max_grad_norm) == (0.999, 0.0, 1.0)  # transformers' defaults stand


def test_sft_evals_saves_and_schedule_options(tmp_path):
    r = load_recipe({"base_model": "tiny:llama", "datasets": [{"path": "data_samples/alpaca.jsonl", "type": "alpaca"}],
                     "output_dir": str(tmp_path / "out"), "evals_per_epoch": 4, "saves_per_epoch": 2,
                     "early_stopping_patience": 2, "val_set_size": 0.1, "micro_batch_size": 4,
                     "gradient_accumulation_steps": 2,
                     "warmup_ratio": 0.1, "cosine_min_lr_ratio": 0.1, "adam_beta2": 0.95, "optim_args": {"a": 1},
                     "wandb_name": "run-7", "eval_batch_size": 3, "max_steps": 50})
    c = config(r, has_eval=True, n_train=800)  # 100 steps per epoch, capped at 50
    assert (c.eval_strategy.value, c.eval_steps, c.save_strategy.value, c.save_steps) == ("steps", 25, "steps", 50)
    assert (c.metric_for_best_model, c.greater_is_better) == ("eval_loss", False)
    assert (c.lr_scheduler_type.value, c.lr_scheduler_kwargs) == ("cosine_with_min_lr", {"min_lr_rate": 0.1})
    assert (c.warmup_steps, c.max_steps, c.per_device_eval_batch_size) == (5, 50, 3)  # 10% of 50
    assert (c.adam_beta2, c.optim_args, c.run_name) == (0.95, "a=1", "run-7")
    assert config(r, has_eval=False, n_train=800).eval_strategy.value == "no"  # no eval split: no evaluation


def test_dpo_recipe(tmp_path):
    c = config(recipe("dpo", tmp_path), n_train=64)
    assert type(c).__name__ == "DPOConfig"
    assert (c.beta, c.loss_type, c.max_length, c.learning_rate) == (0.1, ["sigmoid"], 128, 5e-4)
    assert (c.lr_scheduler_type.value, c.warmup_steps) == ("constant", 0)
    assert (c.max_steps, c.per_device_train_batch_size) == (40, 8)
    smoothed = config(recipe("dpo", tmp_path, dpo_label_smoothing=0.1, rpo_alpha=0.5, rl_beta=0.3,
                             pad_to_sequence_len=True))
    assert (smoothed.loss_type, smoothed.label_smoothing, smoothed.loss_weights) == (["robust", "sft"], 0.1, [1.0, 0.5])
    assert (smoothed.beta, smoothed.pad_to_multiple_of) == (0.3, 128)
    ipo = config(recipe("dpo", tmp_path, rl="ipo", rl_beta=None))
    assert (type(ipo).__name__, ipo.loss_type, ipo.beta) == ("DPOConfig", ["ipo"], 0.1)


def test_kto_orpo_and_simpo(tmp_path):
    kto = config(recipe("kto", tmp_path, kto_desirable_weight=1.5, rl_beta=0.2))
    assert type(kto).__name__ == "KTOConfig"
    assert (kto.beta, kto.desirable_weight, kto.undesirable_weight, kto.max_length) == (0.2, 1.5, 1.0, 128)
    orpo = config(recipe("orpo", tmp_path, orpo_alpha=0.25))
    assert (type(orpo).__name__, orpo.beta, orpo.max_length, orpo.remove_unused_columns) == ("ORPOConfig", 0.25, 128,
                                                                                            False)
    simpo = config(recipe("dpo", tmp_path, rl="simpo", rl_beta=None, simpo_gamma=0.7))
    assert (type(simpo).__name__, simpo.loss_type, simpo.beta, simpo.simpo_gamma) == ("CPOConfig", "simpo", 2.0, 0.7)


def test_grpo_recipe(tmp_path):
    c = config(recipe("grpo", tmp_path), n_train=32)
    assert type(c).__name__ == "GRPOConfig"
    assert (c.num_generations, c.max_completion_length, c.temperature, c.reward_weights) == (4, 6, 1.0, [1.0, 1.0])
    assert (c.beta, c.per_device_eval_batch_size, c.learning_rate, c.max_steps) == (0.0, 4, 5e-5, 40)
    assert (c.remove_unused_columns, c.scale_rewards) == (False, "group")
    gdpo = config(recipe("grpo", tmp_path, rl="gdpo", rl_beta=0.04))
    assert (gdpo.multi_objective_aggregation, gdpo.beta) == ("normalize_then_sum", 0.04)


def test_reward_recipe(tmp_path):
    c = config(recipe("reward", tmp_path, center_rewards_coefficient=0.01), n_train=64)
    assert type(c).__name__ == "RewardConfig"
    assert (c.max_length, c.center_rewards_coefficient, c.learning_rate, c.max_steps) == (64, 0.01, 1e-3, 30)
    assert (c.per_device_train_batch_size, c.lr_scheduler_type.value, c.logging_steps) == (8, "constant", 1)


@pytest.mark.parametrize("name", ["lora", "dpo", "kto", "orpo", "grpo", "reward"])
def test_every_method_shares_the_training_arguments(tmp_path, name):
    """The options every trainer reads come out the same whatever the method."""
    c = config(recipe(name, tmp_path, weight_decay=0.01, max_grad_norm=0.5, seed=7, data_seed=9,
                      logging_first_step=True, neftune_noise_alpha=5.0))
    assert (c.weight_decay, c.max_grad_norm, c.seed, c.data_seed) == (0.01, 0.5, 7, 9)
    assert (c.logging_first_step, c.neftune_noise_alpha, c.output_dir) == (True, 5.0, str(tmp_path / "out"))
