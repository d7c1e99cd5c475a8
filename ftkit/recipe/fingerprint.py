"""Which recipe options shape what is trained: the part of a recipe that must match to resume a checkpoint or
to call an output folder "the same run", and the default output_dir derived from it.

Extending max_steps, logging or saving differently, another tracker or another output folder does not change
what a run trains; every other option does (checkpoint_files.py records them with each checkpoint,
train/outputs.py with each output folder).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

OPERATIONAL = {"output_dir", "max_steps", "num_epochs", "logging_steps", "save_steps", "saves_per_epoch",
               "save_total_limit", "save_strategy", "save_safetensors", "eval_steps", "evals_per_epoch",
               "early_stopping_patience", "resume_from_checkpoint", "auto_resume_from_checkpoints", "eval_prompts",
               "max_new_tokens", "dataset_prepared_path", "dataset_processes", "dataset_num_proc",
               "loss_watchdog_threshold", "loss_watchdog_patience", "use_comet", "eval_batch_size",
               "eval_table_size", "eval_max_new_tokens", "debug", "strict", "seed_note", "logging_first_step"}
OPERATIONAL_PREFIXES = ("wandb_", "mlflow_", "hub_", "push_", "comet_", "tensorboard")


def training_options(recipe_dump: dict) -> dict:
    """The recipe options that shape what is trained (everything but OPERATIONAL)."""
    return {k: v for k, v in recipe_dump.items() if k not in OPERATIONAL and not k.startswith(OPERATIONAL_PREFIXES)}


def digest(recipe_dump: dict) -> str:
    """8 hex digits naming the training options (stable across processes and key order)."""
    text = json.dumps(training_options(recipe_dump), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def default_output_dir(source: str | None, recipe_dump: dict) -> str:
    """Where a recipe that sets no output_dir writes: outputs/<recipe file name without .yml>, or, for a recipe
    given as a dict, outputs/run-<digest of its training options>. Never one folder shared by every recipe."""
    if source:
        return str(Path("outputs") / Path(source).stem)
    return str(Path("outputs") / f"run-{digest(recipe_dump)}")
