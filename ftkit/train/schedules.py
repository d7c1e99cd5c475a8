"""Axolotl's cosine variants transformers lacks: a cosine that holds its minimum, and a quadratic warm-up.

`cosine_min_lr_ratio` alone is transformers' cosine_with_min_lr (args.py maps it). With
`cosine_constant_lr_ratio` the cosine reaches the minimum at that fraction of the steps and holds it;
`lr_quadratic_warmup` warms up along (step / warmup)^2 and then decays along the plain cosine. The
Trainer builds its cosine LambdaLR as usual; this callback swaps the factor function before the first step
(both factors agree at step 0, so nothing has been applied with the old one).

    factor(step) = step / warmup                                   (linear warm-up)   or (step / warmup)^2
                 = min + (1 - min) * 0.5 * (1 + cos(pi * p)),  p = (min(step, c) - warmup) / (c - warmup)
    with c = int(total * cosine_constant_lr_ratio) (the total when not set), min = cosine_min_lr_ratio (0)
"""
from __future__ import annotations

import math

from transformers import TrainerCallback


def factor(step: int, warmup: int, total: int, min_ratio: float = 0.0, constant_ratio: float | None = None,
           quadratic: bool = False) -> float:
    if step < warmup:
        x = step / max(1, warmup)
        return x * x if quadratic else x
    end = int(total * constant_ratio) if constant_ratio else total
    p = (min(step, end) - warmup) / max(1, end - warmup)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, p)))


def wanted(recipe) -> bool:
    return recipe.lr_scheduler == "cosine" and bool(recipe.cosine_constant_lr_ratio or recipe.lr_quadratic_warmup)


class AxolotlCosine(TrainerCallback):
    """Replaces the cosine schedule's factor with Axolotl's variant at the start of training."""

    def __init__(self, min_ratio: float, constant_ratio: float | None, quadratic: bool):
        self.min_ratio, self.constant_ratio, self.quadratic = min_ratio, constant_ratio, quadratic

    def on_train_begin(self, args, state, control, lr_scheduler=None, optimizer=None, **kwargs):
        if lr_scheduler is None or not hasattr(lr_scheduler, "lr_lambdas"):
            return
        warmup, total = args.get_warmup_steps(state.max_steps), state.max_steps
        fn = lambda step: factor(step, warmup, total, self.min_ratio, self.constant_ratio, self.quadratic)  # noqa: E731
        lr_scheduler.lr_lambdas = [fn] * len(lr_scheduler.lr_lambdas)
        step = lr_scheduler.last_epoch
        for group, base in zip(lr_scheduler.optimizer.param_groups, lr_scheduler.base_lrs):
            group["lr"] = base * fn(step)
        lr_scheduler._last_lr = [g["lr"] for g in lr_scheduler.optimizer.param_groups]


def callbacks(recipe) -> list:
    if not wanted(recipe):
        return []
    return [AxolotlCosine(recipe.cosine_min_lr_ratio or 0.0, recipe.cosine_constant_lr_ratio, recipe.lr_quadratic_warmup)]
