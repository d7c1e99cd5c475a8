"""LISA (arXiv 2403.17919, as Axolotl runs it): a full fine-tune in which only `lisa_n_layers` of the
decoder layers train at a time, a fresh draw every `lisa_step_interval` steps; the embeddings, the head and
everything outside the layer list always train.

The draw for interval k (steps k·I .. k·I + I - 1) is a function of (seed, k) alone: the same recipe draws
the same layers, and a resumed run draws what the uninterrupted one would have. Layers out of the draw get
requires_grad False, so backward leaves their .grad None (the Trainer zeroes grads to None after each step)
and torch's and bitsandbytes' optimizers skip a parameter without a gradient entirely: no update, no weight
decay, no moment decay. Their Adam state waits, as it stood, for the next time they are drawn.

    4 layers, n 2, interval 3, seed 42: steps 0-2 train layers draw(42, 0), steps 3-5 draw(42, 1), ...
"""
from __future__ import annotations

from functools import reduce

from transformers import TrainerCallback

from ftkit.errors import FtkitError, Problem
from ftkit.log import log
from ftkit.recipe import Recipe


def draw(seed: int, interval: int, total: int, n: int) -> list[int]:
    """The layer indices trained during interval `interval` (sorted)."""
    import numpy as np

    return sorted(np.random.default_rng([seed, interval]).choice(total, size=n, replace=False).tolist())


def layer_list(model, attribute: str, source: str | None = None):
    """model.<attribute> (e.g. model.layers), looked up on the transformers model; an error lists the layer lists
    the model has."""
    import torch

    try:
        layers = reduce(getattr, attribute.split("."), model)
    except AttributeError:
        layers = None
    if not isinstance(layers, torch.nn.ModuleList):
        found = [name for name, m in model.named_modules() if isinstance(m, torch.nn.ModuleList)]
        raise FtkitError(Problem(f"{type(model).__name__} has no layer list at {attribute}", source, "lisa_layers_attribute",
                                 fix=f"use one of: {', '.join(found) or '(no layer list found)'}"))
    return layers


class LISACallback(TrainerCallback):
    """Freezes all but the drawn layers at the start of each interval."""

    def __init__(self, n: int, interval: int, attribute: str, seed: int, source: str | None = None):
        self.n, self.interval, self.attribute, self.seed, self.source = n, interval, attribute, seed, source
        self.layers = None
        self.trainable: list[list] = []  # per layer: its parameters that trained when the run started
        self.active: list[int] = []
        self.current = -1  # the interval whose draw is applied
        self.draws: list[tuple[int, list[int]]] = []  # (first step, layers) of every draw, for tests and logs

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if args.world_size > 1:  # DDP registers the trainable parameters once, when it wraps the model
            raise FtkitError(Problem(f"LISA changes which parameters train during the run, which {args.world_size} "
                                     "processes (DDP) cannot follow", self.source, "lisa_n_layers",
                                     fix="train LISA in one process"))
        self.layers = layer_list(model, self.attribute, self.source)
        self.trainable = [[p for p in layer.parameters() if p.requires_grad] for layer in self.layers]
        if self.n >= len(self.layers):
            log.warning(f"lisa_n_layers {self.n} >= the model's {len(self.layers)} layers: every layer trains at "
                        "every step (a plain full fine-tune)")
            self.n = len(self.layers)
        log.info(f"LISA: {self.n} of {len(self.layers)} layers train at a time, redrawn every {self.interval} steps")

    def on_step_begin(self, args, state, control, **kwargs):
        k = state.global_step // self.interval
        if k == self.current:
            return
        self.current, self.active = k, draw(self.seed, k, len(self.layers), self.n)
        for i, params in enumerate(self.trainable):
            for p in params:
                p.requires_grad_(i in self.active)
        self.draws.append((state.global_step, self.active))
        log.info(f"LISA: steps {state.global_step}-{state.global_step + self.interval - 1}: layers {self.active} train")

    def on_train_end(self, args, state, control, **kwargs):
        for params in self.trainable:  # the saved model and anything after training see every layer trainable
            for p in params:
                p.requires_grad_(True)


def applies(recipe: Recipe) -> bool:
    return bool(recipe.lisa_n_layers and recipe.lisa_step_interval)


def callbacks(recipe: Recipe, prepared) -> list:
    return [LISACallback(recipe.lisa_n_layers, recipe.lisa_step_interval, recipe.lisa_layers_attribute, recipe.seed,
                         recipe.source)]
