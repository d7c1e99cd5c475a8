"""Supervised fine-tuning, the part that differs from the `rl:` methods: TRL's SFTConfig + SFTTrainer,
the packing collator, and eval loss as the before/after measurement. train/run.py does the rest.
"""
from __future__ import annotations

from ftkit import models
from ftkit.data import packing
from ftkit.log import log
from ftkit.recipe import Recipe
from ftkit.train.args import training_args
from ftkit.train.method import Method

HISTORY_KEYS = {"loss": "loss", "mean_token_accuracy": "accuracy"}  # TRL's log key -> TrainResult.history key


def sft_config(recipe: Recipe, precision: models.Precision, has_eval: bool, n_train: int = 0):
    """The recipe's options as TRL's SFTConfig (TrainingArguments underneath)."""
    from trl import SFTConfig

    return SFTConfig(**training_args(recipe, precision, has_eval, n_train),
                     max_length=recipe.sequence_len,
                     packing=False,  # ftkit packs in data.prepare (ftkit.data.packing); TRL gets packed rows
                     **packing.sft_args(recipe))  # pad_to_sequence_len, group_by_length


def trainer_class():
    from trl import SFTTrainer

    return SFTTrainer


def trainer_kwargs(recipe: Recipe, model, tokenizer) -> dict:
    """Packed rows need the collator that keeps attention inside each example (None: TRL's padding one)."""
    return {"data_collator": packing.collator(recipe, tokenizer, model)}


def measure(recipe: Recipe, trainer, tokenizer, prepared, before: bool) -> dict:
    """Loss on the val_set_size split (None without one)."""
    if prepared.eval is None or len(prepared.eval) == 0:
        return {"eval_loss": None}
    if before and (recipe.fsdp or recipe.deepspeed):  # both engines wrap model and optimizer together in train():
        engine = "fsdp" if recipe.fsdp else "deepspeed"  # an evaluate() first fails (DeepSpeed: "ZeRO inference ...")
        log.info(f"{engine}: no eval loss before training (the engine prepares model and optimizer together)")
        return {"eval_loss": None}
    return {"eval_loss": float(trainer.evaluate(eval_dataset=prepared.eval)["eval_loss"])}


SFT = Method("sft", sft_config, trainer_class, trainer_kwargs, measure, HISTORY_KEYS)
