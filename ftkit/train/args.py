"""The recipe as TrainingArguments options: one mapping shared by SFTConfig and every TRL preference config.

Where a recipe is silent the values are Axolotl's: warm-up = 3% of the steps (at most 100), logging every
0.5% of the steps (1 to 10), both from Axolotl's step estimate (rows x epochs / rows per step).
"""
from __future__ import annotations

import math

from ftkit.models import Precision
from ftkit.recipe import Recipe
from ftkit.train import hub, runtime


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
    kwargs = dict(recipe.lr_scheduler_kwargs)
    name = recipe.lr_scheduler
    if name == "cosine" and recipe.cosine_min_lr_ratio is not None and not recipe.cosine_constant_lr_ratio:
        name, kwargs = "cosine_with_min_lr", {**kwargs, "min_lr_rate": recipe.cosine_min_lr_ratio}
    return {"lr_scheduler_type": name, "lr_scheduler_kwargs": kwargs}


def _optional(recipe: Recipe) -> dict:
    """TrainingArguments the recipe sets only when it names them (else transformers' defaults stand)."""
    names = {"adam_beta1": "adam_beta1", "adam_beta2": "adam_beta2", "adam_epsilon": "adam_epsilon",
             "optim_args": "optim_args", "optim_target_modules": "optim_target_modules",
             "torch_compile_backend": "torch_compile_backend", "torch_compile_mode": "torch_compile_mode",
             "accelerator_config": "accelerator_config", "metric_for_best_model": "metric_for_best_model",
             "greater_is_better": "greater_is_better", "wandb_name": "run_name"}
    out = {ta: getattr(recipe, name) for name, ta in names.items() if getattr(recipe, name) is not None}
    if isinstance(out.get("optim_args"), dict):
        out["optim_args"] = ",".join(f"{k}={v}" for k, v in out["optim_args"].items())
    return out


def training_args(recipe: Recipe, precision: Precision, has_eval: bool = False, n_train: int = 0) -> dict:
    """The recipe's TrainingArguments options, shared by every TRL config (SFT, DPO, KTO, ORPO, CPO)."""
    import torch

    from ftkit.train.distributed import world_size

    total = total_steps(recipe, n_train, world_size())
    plumbing = runtime.trainer_kwargs(recipe, has_eval, n_train)  # engine, logging, saves, evals
    if recipe.eval_strategy and has_eval and recipe.eval_strategy != "steps" and not (recipe.eval_steps or recipe.evals_per_epoch):
        plumbing["eval_strategy"] = recipe.eval_strategy
    if recipe.load_best_model_at_end:
        plumbing["load_best_model_at_end"] = True
    return dict(
        output_dir=recipe.output_dir,
        per_device_train_batch_size=recipe.micro_batch_size,
        per_device_eval_batch_size=recipe.eval_batch_size or recipe.micro_batch_size,
        gradient_accumulation_steps=recipe.gradient_accumulation_steps,
        auto_find_batch_size=recipe.auto_find_batch_size,
        num_train_epochs=recipe.num_epochs,
        max_steps=recipe.max_steps or -1,
        learning_rate=recipe.learning_rate,
        optim=recipe.optimizer,
        **schedule_kwargs(recipe),
        warmup_steps=warmup_steps(recipe, total),
        weight_decay=recipe.weight_decay,
        max_grad_norm=recipe.max_grad_norm,
        seed=recipe.seed,
        data_seed=recipe.seed if recipe.data_seed is None else recipe.data_seed,
        logging_steps=logging_steps(recipe, total),
        logging_first_step=recipe.logging_first_step,
        bf16=precision.bf16,
        fp16=precision.fp16,
        tf32=precision.tf32 if torch.cuda.is_available() else None,
        activation_checkpointing=recipe.gradient_checkpointing,  # TRL's default is on: off unless asked
        activation_checkpointing_kwargs={"use_reentrant": False, **(recipe.gradient_checkpointing_kwargs or {})},
        torch_compile=recipe.torch_compile,
        dataloader_drop_last=recipe.dataloader_drop_last,
        save_only_model=recipe.save_only_model,
        use_cpu=not torch.cuda.is_available(),
        dataloader_pin_memory=False,
        disable_tqdm=False,
        **_optional(recipe),
        **hub.trainer_kwargs(recipe),
        **plumbing,
    )
