"""The recipe as the trainer's config: every TrainingArguments / TRL config value `ftkit train` passes is built here.

Every method's config (SFTConfig, DPOConfig, KTOConfig, ORPOConfig, CPOConfig, GRPOConfig, RewardConfig) is
TrainingArguments underneath: `training_args` fills those fields, `config` adds the method's own. The tables
below say where each value comes from; where a recipe is silent the values are Axolotl's: warm-up = 3% of the
steps (at most 100), logging every 0.5% of the steps (1 to 10), both from Axolotl's step estimate (rows x
epochs / rows per step); a checkpoint each epoch, the newest 4 kept (by ftkit's rotation, checkpoint_files.py).

    computed                                       -> TrainingArguments
    max_steps (unset: -1)                             max_steps
    eval_batch_size (unset: micro_batch_size)         per_device_eval_batch_size
    lr_scheduler, lr_scheduler_kwargs,                lr_scheduler_type, lr_scheduler_kwargs (cosine + min ratio
      cosine_min_lr_ratio                               alone: cosine_with_min_lr); other shapes: plugins/schedules.py
    warmup_steps | warmup_ratio | Axolotl's 3%        warmup_steps (a value < 1: a ratio)
    logging_steps | Axolotl's 0.5%                    logging_steps
    data_seed (unset: seed)                           data_seed
    bf16, fp16, tf32 (models.resolve_precision)       bf16, fp16, tf32 (tf32 on CUDA only); use_cpu without CUDA
    gradient_checkpointing_kwargs                     activation_checkpointing_kwargs (use_reentrant False)
    eval_steps | evals_per_epoch, eval_strategy,      eval_strategy, eval_steps, metric_for_best_model,
      early_stopping_patience                           greater_is_better (eval_kwargs)
    save_strategy, save_steps | saves_per_epoch       save_strategy, save_steps (checkpoints.save_kwargs)
    deepspeed, fsdp, fsdp_config                      deepspeed, fsdp, fsdp_config, ddp_backend (plugins/distributed.py)
    wandb_*, mlflow_*, use_comet                      report_to (+ the integrations' variables: plugins/tracking.py)
    hub_model_id, hub_strategy, hub_revision,         push_to_hub, hub_model_id, hub_private_repo, hub_strategy,
      push_to_hub                                       hub_revision (hub_kwargs)

Per trainer (`config`):
    every method but SFT     sequence_len -> max_length; dataset_processes -> dataset_num_proc
    sft      SFTConfig       max_length; packing False (ftkit packs the rows); pad_to_sequence_len ->
                             pad_to_multiple_of;
                             curriculum_sampling / group_by_length -> train_sampling_strategy (sft_args)
    dpo, ipo DPOConfig       rl_beta -> beta (0.1); loss_type [sigmoid] / [ipo]; dpo_label_smoothing > 0 -> [robust] +
                             label_smoothing; rpo_alpha -> + [sft] with loss_weights [1, rpo_alpha]
    kto      KTOConfig       rl_beta -> beta (0.1); kto_(un)desirable_weight -> (un)desirable_weight
    orpo     ORPOConfig      orpo_alpha -> beta (0.1: ORPO's lambda)
    simpo    CPOConfig       loss_type simpo; rl_beta -> beta (2.0); simpo_gamma, cpo_alpha
    grpo     GRPOConfig      rl_beta -> beta (0: no reference); trl: block -> GRPO_PASSED under its own names;
    gdpo                     scale_rewards, mask_truncated_completions, log_completions; sync_ref_model (+ its two);
                             gdpo: multi_objective_aggregation normalize_then_sum; whole groups per eval batch
    reward   RewardConfig    center_rewards_coefficient
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path

from ftkit import hooks
from ftkit.log import log
from ftkit.models import Precision
from ftkit.recipe import Recipe
from ftkit.recipe.base import GRPO
from ftkit.recipe.method_options import TRL_GENERATIONS

# recipe option -> TrainingArguments field, passed as the recipe holds it
PASSED = {"output_dir": "output_dir", "micro_batch_size": "per_device_train_batch_size",
          "gradient_accumulation_steps": "gradient_accumulation_steps", "auto_find_batch_size": "auto_find_batch_size",
          "num_epochs": "num_train_epochs", "learning_rate": "learning_rate", "optimizer": "optim",
          "weight_decay": "weight_decay", "max_grad_norm": "max_grad_norm", "seed": "seed",
          "logging_first_step": "logging_first_step", "torch_compile": "torch_compile",
          "gradient_checkpointing": "activation_checkpointing",  # TRL's default is on: off unless asked
          "dataloader_drop_last": "dataloader_drop_last", "save_only_model": "save_only_model",
          "neftune_noise_alpha": "neftune_noise_alpha"}  # transformers' NEFTune
# recipe option -> TrainingArguments field, passed only when the recipe sets it (else transformers' default stands)
WHEN_SET = {"adam_beta1": "adam_beta1", "adam_beta2": "adam_beta2", "adam_epsilon": "adam_epsilon",
            "optim_args": "optim_args", "optim_target_modules": "optim_target_modules",
            "torch_compile_backend": "torch_compile_backend", "torch_compile_mode": "torch_compile_mode",
            "accelerator_config": "accelerator_config", "metric_for_best_model": "metric_for_best_model",
            "greater_is_better": "greater_is_better", "wandb_name": "run_name"}
# fixed for every run
FIXED = {"dataloader_pin_memory": False, "disable_tqdm": False,
         "logging_nan_inf_filter": False,  # let the loss watchdog see NaN (the default hides it)
         "ddp_find_unused_parameters": False,  # every parameter gets a gradient in a causal LM / LoRA
         # loss = sum over all trained tokens / their count across accumulation steps AND processes, so
         # 2 processes x 4 rows == 1 x 8 rows (the default; stated because it is the known bug class)
         "average_tokens_across_devices": True}
# trl: fields passed to GRPOConfig under their own name when the recipe sets them (else TRL's default)
GRPO_PASSED = ("num_generations", "generation_batch_size", "max_completion_length", "temperature", "top_p", "top_k",
               "min_p", "repetition_penalty", "generation_kwargs", "chat_template_kwargs", "num_iterations", "epsilon",
               "epsilon_high", "loss_type", "importance_sampling_level", "off_policy_mask_threshold",
               "use_bias_correction_kl", "reward_weights", "multi_objective_aggregation", "num_completions_to_print")


def total_steps(recipe: Recipe, n_train: int, world: int = 1) -> int:
    """Axolotl's estimate of the run length: ceil(rows x epochs / (micro batch x accumulation x processes)),
    capped by max_steps; 0 when the row count is not known. 1,000 rows, 2 epochs, 4 x 2 x 1 -> 250 steps."""
    if not n_train:
        return recipe.max_steps or 0
    steps = math.ceil(n_train * recipe.num_epochs /
                      (recipe.micro_batch_size * recipe.gradient_accumulation_steps * world))
    return min(steps, recipe.max_steps) if recipe.max_steps else steps


def warmup_steps(recipe: Recipe, total: int) -> int | float:
    """warmup_steps, else int(warmup_ratio x total), else min(int(0.03 x total), 100) with 1 -> 2 (Axolotl's
    rule); an unknown total passes the ratio on (TrainingArguments reads a value < 1 as a ratio)."""
    if recipe.warmup_steps is not None:
        return recipe.warmup_steps
    ratio = recipe.warmup_ratio if recipe.warmup_ratio is not None else 0.03
    if not total:
        return ratio
    steps = int(ratio * total) if recipe.warmup_ratio is not None else min(int(0.03 * total), 100)
    return 2 if steps == 1 else steps


def logging_steps(recipe: Recipe, total: int) -> int:
    """logging_steps, else max(min(int(0.005 x total), 10), 1) (Axolotl's rule; 500 steps -> every 2)."""
    if recipe.logging_steps is not None:
        return recipe.logging_steps
    return max(min(int(0.005 * total), 10), 1) if total else 1


def schedule_kwargs(recipe: Recipe) -> dict:
    """lr_scheduler_type and its kwargs; cosine_min_lr_ratio alone is transformers' cosine_with_min_lr."""
    kwargs, name = dict(recipe.lr_scheduler_kwargs), recipe.lr_scheduler
    if name == "cosine" and recipe.cosine_min_lr_ratio is not None and not recipe.cosine_constant_lr_ratio:
        name, kwargs = "cosine_with_min_lr", {**kwargs, "min_lr_rate": recipe.cosine_min_lr_ratio}
    return {"lr_scheduler_type": name, "lr_scheduler_kwargs": kwargs}


def eval_kwargs(recipe: Recipe, has_eval: bool, n_train: int, world: int = 1) -> dict:
    """eval_steps / evals_per_epoch (on the val_set_size split) and the metric early stopping watches; an
    eval_strategy other than steps stands alone."""
    from ftkit.data.steps import steps_per_epoch

    every = recipe.eval_steps
    if recipe.evals_per_epoch:
        every = max(1, steps_per_epoch(recipe, n_train, world) // recipe.evals_per_epoch)
    if has_eval and recipe.eval_strategy and recipe.eval_strategy != "steps" and not every:
        return {"eval_strategy": recipe.eval_strategy}
    if not (every and has_eval):
        return {"eval_strategy": "no"}
    out = {"eval_strategy": "steps", "eval_steps": every}
    if recipe.early_stopping_patience and recipe.metric_for_best_model is None:  # a metric the recipe names wins
        out.update(metric_for_best_model="eval_loss", greater_is_better=False)
    return out


def hub_kwargs(recipe: Recipe) -> dict:
    """The push to the hub (empty when nothing is pushed): transformers' Trainer uploads at each save and at the
    end, into a private repo, as Axolotl sets it; preflight.check_hub checks it can before training."""
    if not (recipe.hub_model_id and recipe.push_to_hub is not False):
        return {}
    out = {"push_to_hub": True, "hub_model_id": recipe.hub_model_id, "hub_private_repo": True, "hub_always_push": True}
    return {**out, **{k: getattr(recipe, k) for k in ("hub_strategy", "hub_revision") if getattr(recipe, k)}}


def report_to(recipe: Recipe) -> list[str]:
    """tensorboard in every run, into OUTPUT_DIR/runs/TIME (transformers' TensorBoardCallback reads the variable),
    and the loggers a plug-in turns on (plugins/tracking.py: W&B, MLflow, Comet, their variables set)."""
    others = sum(hooks.call(recipe, "report_to", recipe), [])
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(Path(recipe.output_dir) / "runs" / time.strftime("%Y%m%d-%H%M%S"))
    return ["tensorboard", *others]


def training_args(recipe: Recipe, precision: Precision, has_eval: bool = False, n_train: int = 0) -> dict:
    """The recipe's TrainingArguments fields, shared by every TRL config (see the tables above)."""
    import torch

    from ftkit.env import world_size
    from ftkit.train import checkpoints

    world, cuda = world_size(), torch.cuda.is_available()
    total = total_steps(recipe, n_train, world)
    out = {ta: getattr(recipe, name) for name, ta in PASSED.items()}
    out.update({ta: getattr(recipe, name) for name, ta in WHEN_SET.items() if getattr(recipe, name) is not None})
    if isinstance(out.get("optim_args"), dict):
        out["optim_args"] = ",".join(f"{k}={v}" for k, v in out["optim_args"].items())
    return dict(
        out, **FIXED, **schedule_kwargs(recipe), max_steps=recipe.max_steps or -1,
        per_device_eval_batch_size=recipe.eval_batch_size or recipe.micro_batch_size,
        warmup_steps=warmup_steps(recipe, total), logging_steps=logging_steps(recipe, total),
        data_seed=recipe.seed if recipe.data_seed is None else recipe.data_seed,
        bf16=precision.bf16, fp16=precision.fp16, tf32=precision.tf32 if cuda else None, use_cpu=not cuda,
        activation_checkpointing_kwargs={"use_reentrant": False, **(recipe.gradient_checkpointing_kwargs or {})},
        **hub_kwargs(recipe),
        **{k: v for extra in hooks.call(recipe, "training_args", recipe) for k, v in extra.items()},  # DeepSpeed, FSDP
        **checkpoints.save_kwargs(recipe, n_train, world),  # save_strategy, save_steps, save_total_limit
        **eval_kwargs(recipe, has_eval, n_train, world),  # eval_strategy, eval_steps, best metric
        **({"load_best_model_at_end": True} if recipe.load_best_model_at_end else {}),
        report_to=report_to(recipe))  # tensorboard + wandb/mlflow/comet env


def sft_args(recipe) -> dict:
    """SFTConfig arguments for packing/padding. Rows arrive packed, so TRL's own packing stays off."""
    return {"pad_to_multiple_of": recipe.sequence_len if recipe.pad_to_sequence_len else None,
            "train_sampling_strategy": "sequential" if recipe.curriculum_sampling else
            "group_by_length" if recipe.group_by_length and not recipe.sample_packing else "random",
            "eval_packing": False}


def config(recipe: Recipe, precision: Precision, has_eval: bool = False, n_train: int = 0):
    """The recipe as its method's TRL config (TrainingArguments underneath; the per-trainer table above)."""
    import trl

    method = recipe.rl or ("reward" if recipe.reward_model else "sft")
    if method in GRPO:
        return grpo_config(recipe, precision, has_eval, n_train)
    args = dict(training_args(recipe, precision, has_eval, n_train), max_length=recipe.sequence_len)
    if method == "sft":
        return trl.SFTConfig(**args, packing=False, **sft_args(recipe))  # ftkit packs in data.prepare (plug-in)
    args["dataset_num_proc"] = recipe.dataset_processes  # TRL tokenizes the rows: same processes
    if recipe.pad_to_sequence_len and method in ("dpo", "ipo", "kto", "reward"):  # TRL's collators pad to a multiple
        args["pad_to_multiple_of"] = recipe.sequence_len
    elif recipe.pad_to_sequence_len:
        log.info(f"pad_to_sequence_len: TRL's {method} collator pads each batch to its longest pair (no option to "
                 "pad further); padding never changes what is trained")
    if method == "reward":
        return trl.RewardConfig(**args, center_rewards_coefficient=recipe.center_rewards_coefficient)
    if method == "kto":
        return trl.KTOConfig(**args, beta=recipe.rl_beta or 0.1, desirable_weight=recipe.kto_desirable_weight,
                             undesirable_weight=recipe.kto_undesirable_weight)
    if method == "orpo":
        from trl.experimental.orpo import ORPOConfig

        return ORPOConfig(**args, beta=recipe.orpo_alpha or 0.1, remove_unused_columns=False)
    if method == "simpo":
        from trl.experimental.cpo import CPOConfig

        return CPOConfig(**args, loss_type="simpo", beta=recipe.rl_beta or 2.0, simpo_gamma=recipe.simpo_gamma,
                         cpo_alpha=recipe.cpo_alpha, remove_unused_columns=False)
    loss = ["ipo" if method == "ipo" else "sigmoid"]
    if recipe.dpo_label_smoothing > 0:  # TRL 1.16's sigmoid loss has no smoothing; robust DPO takes it
        log.info(f"dpo_label_smoothing={recipe.dpo_label_smoothing}: using TRL's robust DPO loss")
        loss, args["label_smoothing"] = ["robust"], recipe.dpo_label_smoothing
    if recipe.rpo_alpha:  # RPO = the preference loss + rpo_alpha x NLL of the chosen answer
        loss, args["loss_weights"] = loss + ["sft"], [1.0, recipe.rpo_alpha]
    return trl.DPOConfig(**args, beta=recipe.rl_beta or 0.1, loss_type=loss)


def grpo_config(recipe: Recipe, precision: Precision, has_eval: bool = False, n_train: int = 0):
    """The recipe as TRL's GRPOConfig: a step's batch counts completions (num_generations per prompt)."""
    from trl import GRPOConfig

    t = recipe.trl
    generations = t.num_generations or TRL_GENERATIONS
    chosen = {k: getattr(t, k) for k in GRPO_PASSED if getattr(t, k) is not None}
    if recipe.rl == "gdpo":
        chosen.setdefault("multi_objective_aggregation", "normalize_then_sum")  # GDPO: each reward normalized first
    if t.sync_ref_model:
        chosen.update(sync_ref_model=True, ref_model_mixup_alpha=t.ref_model_mixup_alpha,
                      ref_model_sync_steps=t.ref_model_sync_steps)
    if recipe.pad_to_sequence_len:
        log.info(f"pad_to_sequence_len: TRL pads each generation batch to its longest prompt and completion (no option "
                 f"to pad further under rl: {recipe.rl}); padding never changes what is trained")
    args = training_args(recipe, precision, has_eval, n_train * generations)
    args["per_device_eval_batch_size"] = recipe.eval_batch_size or generations  # whole groups per eval batch
    return GRPOConfig(**args, beta=recipe.rl_beta or 0.0, remove_unused_columns=False,  # reward functions read columns
                      scale_rewards=t.scale_rewards, mask_truncated_completions=t.mask_truncated_completions,
                      log_completions=t.log_completions, **chosen)


def sft_config(recipe: Recipe, precision: Precision, has_eval: bool = False, n_train: int = 0):
    """The SFTConfig of a supervised recipe (an evaluation, a benchmark), whatever its `rl:`."""
    return config(recipe.model_copy(update={"rl": None, "reward_model": False}), precision, has_eval, n_train)
