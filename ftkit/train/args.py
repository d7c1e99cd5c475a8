"""The recipe as TrainingArguments options: one mapping shared by SFTConfig and every TRL preference config."""
from __future__ import annotations

from ftkit.models import Precision
from ftkit.recipe import Recipe
from ftkit.train import runtime


def training_args(recipe: Recipe, precision: Precision, has_eval: bool = False, n_train: int = 0) -> dict:
    """The recipe's TrainingArguments options, shared by every TRL config (SFT, DPO, KTO, ORPO, CPO)."""
    import torch

    return dict(
        output_dir=recipe.output_dir,
        per_device_train_batch_size=recipe.micro_batch_size,
        per_device_eval_batch_size=recipe.micro_batch_size,
        gradient_accumulation_steps=recipe.gradient_accumulation_steps,
        num_train_epochs=recipe.num_epochs,
        max_steps=recipe.max_steps or -1,
        learning_rate=recipe.learning_rate,
        optim=recipe.optimizer,
        lr_scheduler_type=recipe.lr_scheduler,
        warmup_steps=recipe.warmup_steps,
        weight_decay=recipe.weight_decay,
        max_grad_norm=recipe.max_grad_norm,
        seed=recipe.seed,
        data_seed=recipe.seed,
        logging_steps=recipe.logging_steps,
        bf16=precision.bf16,
        fp16=precision.fp16,
        tf32=precision.tf32 if torch.cuda.is_available() else None,
        activation_checkpointing=recipe.gradient_checkpointing,  # TRL's default is on: off unless asked
        use_cpu=not torch.cuda.is_available(),
        dataloader_pin_memory=False,
        disable_tqdm=False,
        **runtime.trainer_kwargs(recipe, has_eval, n_train),  # engine, logging, saves, evals
    )
