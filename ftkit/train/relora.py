"""ReLoRA: every `relora_steps`, merge the LoRA update into the base and restart the adapter.

A transformers TrainerCallback on top of peft: at each restart, W += (alpha/r)·B·A (peft's merge),
then A is re-drawn, B is zeroed, and those parameters' Adam moments are cleared, so the next cycle
learns a fresh low-rank update. Summed over k cycles the base moves by a rank up to k·r.
After a restart the learning rate re-warms linearly over `relora_warmup_steps`.
"""
from __future__ import annotations

from transformers import TrainerCallback

from ftkit.log import log
from ftkit.recipe import Recipe


class ReLoRACallback(TrainerCallback):
    """Merge-and-restart at global steps relora_steps, 2·relora_steps, ... (not at the final step)."""

    def __init__(self, steps: int, warmup_steps: int = 0, cpu_offload: bool = False):
        self.steps, self.warmup, self.cpu_offload = steps, warmup_steps or 0, cpu_offload
        self.restarts: list[int] = []  # global steps at which a merge happened

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        # the scheduler rewrites each group's lr after every step, so scaling here never compounds
        since = state.global_step - (self.restarts[-1] if self.restarts else 0)
        if self.restarts and self.warmup and since < self.warmup and optimizer is not None:
            for group in optimizer.param_groups:
                group["lr"] *= (since + 1) / (self.warmup + 1)  # e.g. warmup 4: x0.2, 0.4, 0.6, 0.8

    def on_step_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        step = state.global_step
        if step % self.steps or step >= state.max_steps:
            return
        merged = merge_and_reinit(model, self.cpu_offload)
        reset_optimizer_state(optimizer, model)
        self.restarts.append(step)
        log.info(f"ReLoRA: step {step}: merged {merged} LoRA layers into the base and restarted them")


def merge_and_reinit(model, cpu_offload: bool = False) -> int:
    """Fold each active LoRA layer into its base weight, then re-initialise it (A random, B zero)."""
    import torch
    from peft.tuners.lora import LoraLayer

    count = 0
    with torch.no_grad():
        for module in model.modules():
            if not isinstance(module, LoraLayer):
                continue
            device = module.get_base_layer().weight.device
            if cpu_offload:
                module.to("cpu")
            for name in module.active_adapters:
                module.merge(adapter_names=[name])
                module.merged_adapters.remove(name)  # the update now belongs to the base
                module.reset_lora_parameters(name, init_lora_weights=True)
            if cpu_offload:
                module.to(device)
            count += 1
    return count


def reset_optimizer_state(optimizer, model) -> None:
    """Forget Adam's moments for the adapter parameters (they described the previous cycle)."""
    if optimizer is None:
        return
    inner = getattr(optimizer, "optimizer", optimizer)  # accelerate wraps the torch optimizer
    for name, param in model.named_parameters():
        if "lora_" in name and param in inner.state:
            inner.state[param].clear()


def save_merged(model, out) -> None:
    """A ReLoRA run's result: the base moved at every restart, so the adapter alone is not the model."""
    model.merge_and_unload().save_pretrained(str(out), safe_serialization=True)


def callbacks(recipe: Recipe) -> list:
    """The ReLoRA callback when the recipe asks for it (empty list otherwise)."""
    if not recipe.relora_steps:
        return []
    return [ReLoRACallback(recipe.relora_steps, recipe.relora_warmup_steps, recipe.relora_cpu_offload)]
