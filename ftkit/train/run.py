"""`ftkit train`: supervised fine-tuning (TRL SFTTrainer) or, with `rl:`, a TRL preference trainer."""
from __future__ import annotations

from ftkit.recipe import Recipe


def run(recipe: Recipe, callbacks=()):
    """Train as the recipe says; returns the run's result (TrainResult, or PreferenceResult with `rl:`)."""
    if recipe.deepspeed:  # a missing or malformed engine config fails now, not after data preparation
        from ftkit.train.distributed import deepspeed_path

        deepspeed_path(recipe)
    if recipe.rl:  # preference tuning (DPO, IPO, KTO, ORPO, SimPO) runs TRL's preference trainers
        from ftkit.train.preference import run_preference

        return run_preference(recipe)
    from ftkit.train.sft import run_sft

    return run_sft(recipe, callbacks)
