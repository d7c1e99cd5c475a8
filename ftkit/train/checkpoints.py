"""Checkpoints: when to save, how many to keep, and which checkpoint a run resumes from.

The HF Trainer writes `checkpoint-N/` (weights, optimizer, scheduler, RNG states, data position) and
writes `trainer_state.json` last, so a checkpoint without it was cut off mid-write: auto-resume skips
it (with a warning) and takes the newest complete one. Resuming restores the data order and RNG, so
the loss curve continues where it stopped.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

from ftkit.errors import ConfigError, Problem
from ftkit.log import log
from ftkit.recipe import Recipe

COMPLETE_MARKER = "trainer_state.json"  # written last by Trainer._save_checkpoint


def steps_per_epoch(recipe: Recipe, n_train: int, world: int = 1) -> int:
    """Optimizer steps in one epoch: 2,400 rows / (16 rows x 1 process) = 150 batches / 1 accum = 150 steps."""
    batches = math.ceil(n_train / (recipe.micro_batch_size * world))
    return max(1, math.ceil(batches / recipe.gradient_accumulation_steps))


def save_kwargs(recipe: Recipe, n_train: int, world: int = 1) -> dict:
    """save_strategy / save_steps / saves_per_epoch / save_total_limit as TrainingArguments.

    As in Axolotl: an interval means steps; without one a checkpoint is written at the end of every epoch
    (and at the last step), keeping the newest save_total_limit (4).
    """
    every = recipe.save_steps
    if recipe.saves_per_epoch:
        every = max(1, steps_per_epoch(recipe, n_train, world) // recipe.saves_per_epoch)
    strategy = "steps" if every else recipe.save_strategy or "epoch"  # an interval wins, as in Axolotl
    if strategy == "no":
        return {"save_strategy": "no"}
    out = {"save_strategy": strategy, "save_total_limit": recipe.save_total_limit}
    return {**out, "save_steps": every} if strategy == "steps" else out


def is_complete(checkpoint: Path) -> bool:
    return (checkpoint / COMPLETE_MARKER).is_file()


def latest_complete(output_dir: str | Path) -> str | None:
    """The newest `checkpoint-N` in output_dir that was fully written; incomplete newer ones are skipped."""
    found = []
    for d in Path(output_dir).glob("checkpoint-*"):
        m = re.fullmatch(r"checkpoint-(\d+)", d.name)
        if m and d.is_dir():
            found.append((int(m.group(1)), d))
    for _, d in sorted(found, reverse=True):
        if is_complete(d):
            return str(d)
        log.warning(f"skipping {d}: no {COMPLETE_MARKER} (written last), so it was cut off mid-save")
    return None


def resume_from(recipe: Recipe) -> str | None:
    """The checkpoint this run continues from: the explicit one, the newest complete one, or none."""
    if recipe.resume_from_checkpoint:
        path = Path(recipe.resume_from_checkpoint)
        if not path.is_dir() or not is_complete(path):
            raise ConfigError(Problem(f"{path} is not a complete checkpoint (no {COMPLETE_MARKER})", recipe.source,
                                      "resume_from_checkpoint",
                                      fix="point it at an output_dir/checkpoint-N directory, or use "
                                          "auto_resume_from_checkpoints: true"))
        return str(path)
    if recipe.auto_resume_from_checkpoints:
        found = latest_complete(recipe.output_dir)
        log.info(f"resuming from {found}" if found else
                 f"[ftkit] auto_resume_from_checkpoints: no complete checkpoint in {recipe.output_dir}; starting fresh")
        return found
    return None
