"""Optimizer steps per epoch: the one count that saves_per_epoch, evals_per_epoch and packing's report share."""
from __future__ import annotations

import math

from ftkit.env import world_size


def steps_per_epoch(recipe, rows: int, world: int | None = None) -> int:
    """As transformers' Trainer counts them: each process takes micro_batch_size rows per micro-batch.

    2,400 rows / (16 rows x 1 process) = 150 micro-batches / 1 accumulation = 150 steps.
    `world` defaults to this run's process count (WORLD_SIZE).
    """
    world = world_size() if world is None else world
    micro_batches = math.ceil(rows / (recipe.micro_batch_size * world))
    return max(1, math.ceil(micro_batches / recipe.gradient_accumulation_steps))
