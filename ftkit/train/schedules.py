"""Learning-rate shapes transformers lacks: Axolotl's cosine variants and the jagged (ReLoRA) schedule.

`cosine_min_lr_ratio` alone is transformers' cosine_with_min_lr (args.py maps it). With
`cosine_constant_lr_ratio` the cosine reaches the minimum at that fraction of the steps and holds it;
`lr_quadratic_warmup` warms up along (step / warmup)^2 and then decays along the plain cosine:

    factor(step) = step / warmup                                   (linear warm-up)   or (step / warmup)^2
                 = min + (1 - min) * 0.5 * (1 + cos(pi * p)),  p = (min(step, c) - warmup) / (c - warmup)
    with c = int(total * cosine_constant_lr_ratio) (the total when not set), min = cosine_min_lr_ratio (0)

`jagged_restart_steps` (R) multiplies the schedule by a saw-tooth, as Axolotl's jagged scheduler does: after
each restart the factor climbs from `floor` over W warm-up steps, and falls over the A anneal steps before
the next one; the first cycle is left to the schedule's own warm-up.

    jagged(step) = 1                                  step < R - A
                 = floor + (1 - floor) * t,  t = p / W (p < W),  (R - p) / A (p > R - A),  else 1;  p = step % R
    e.g. R 4, W 2, A 1, floor 0.001: steps 0-3 x1, step 4 x0.001, step 5 x0.5005, steps 6-7 x1, step 8 x0.001

The Trainer builds its LambdaLR as usual; a callback replaces the factor function before the first step
(both factors agree at step 0, or the group's lr is set anew). The factor is a function of the step only, so a
resumed run (whose scheduler restores its step) follows the same curve.
"""
from __future__ import annotations

import math

from transformers import TrainerCallback

from ftkit.log import log

JAGGED_WARMUP, JAGGED_ANNEAL, JAGGED_FLOOR = 10, 1, 0.001  # Axolotl's values when the recipe leaves them unset


def factor(step: int, warmup: int, total: int, min_ratio: float = 0.0, constant_ratio: float | None = None,
           quadratic: bool = False) -> float:
    if step < warmup:
        x = step / max(1, warmup)
        return x * x if quadratic else x
    end = int(total * constant_ratio) if constant_ratio else total
    p = (min(step, end) - warmup) / max(1, end - warmup)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, p)))


def jagged(step: int, every: int, warmup: int, anneal: int, floor: float) -> float:
    """The saw-tooth that multiplies the schedule (see the module docstring)."""
    if step < every - anneal:
        return 1.0
    p = step % every
    t = p / warmup if p < warmup else (every - p) / anneal if p > every - anneal else 1.0
    return floor + (1 - floor) * min(1.0, t)


def jagged_args(recipe) -> tuple[int, int, int, float] | None:
    """(cycle, warm-up, anneal, floor) of the recipe's jagged schedule, or None; 0/unset take Axolotl's values."""
    if not (every := recipe.restart_steps):
        return None
    return (every, recipe.jagged_restart_warmup_steps or JAGGED_WARMUP, recipe.jagged_restart_anneal_steps or JAGGED_ANNEAL,
            recipe.cosine_min_lr_ratio or JAGGED_FLOOR)


class ShapedSchedule(TrainerCallback):
    """Replaces the LambdaLR's factor at the start of training: Axolotl's cosine variant (`cosine`: its
    (min_ratio, constant_ratio, quadratic)), times the jagged saw-tooth (`jagged`: jagged_args)."""

    def __init__(self, cosine: tuple | None, jagged_: tuple | None):
        self.cosine, self.jagged = cosine, jagged_

    def on_train_begin(self, args, state, control, lr_scheduler=None, **kwargs):
        if lr_scheduler is None or not hasattr(lr_scheduler, "lr_lambdas"):
            log.warning(f"the {type(lr_scheduler).__name__} scheduler has no step factor: the learning-rate shape "
                        "is transformers' own")  # e.g. a DeepSpeed-built scheduler
            return
        warmup, total = args.get_warmup_steps(state.max_steps), state.max_steps
        fns = []
        for inner in lr_scheduler.lr_lambdas:
            if self.cosine:
                inner = lambda step, c=self.cosine: factor(step, warmup, total, *c)  # noqa: E731
            if self.jagged:
                inner = lambda step, f=inner, j=self.jagged: f(step) * jagged(step, *j)  # noqa: E731
            fns.append(inner)
        lr_scheduler.lr_lambdas = fns
        step = lr_scheduler.last_epoch  # > 0 when resumed: the restored step
        for group, base, fn in zip(lr_scheduler.optimizer.param_groups, lr_scheduler.base_lrs, fns):
            group["lr"] = base * fn(step)
        lr_scheduler._last_lr = [g["lr"] for g in lr_scheduler.optimizer.param_groups]


def callbacks(recipe) -> list:
    shaped = recipe.lr_scheduler == "cosine" and (recipe.cosine_constant_lr_ratio or recipe.lr_quadratic_warmup)
    cosine = (recipe.cosine_min_lr_ratio or 0.0, recipe.cosine_constant_lr_ratio, recipe.lr_quadratic_warmup) \
        if shaped else None
    if jag := jagged_args(recipe):
        log.info(f"jagged schedule: every {jag[0]} steps the learning rate restarts at x{jag[3]:g}, warms up over "
                 f"{jag[1]} steps and anneals over the last {jag[2]} of each cycle")
    return [ShapedSchedule(cosine, jag)] if cosine or jag else []
