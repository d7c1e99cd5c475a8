"""ReLoRA (arXiv 2307.05695, as Axolotl runs it): every R steps merge the adapter into the base and restart it.

At each restart (after steps R, 2R, ..., not after the last): W += (alpha/r)·B·A for every LoRA layer, A is
re-drawn and B zeroed, and the adapter's Adam moments are pruned: the smallest `relora_prune_ratio` (0.9) of
each moment tensor by |value| are zeroed (Axolotl's rule; `random` / `reset` zero a random draw instead), so
the next cycle learns a fresh low-rank update while keeping the strongest directions of momentum. Summed over
k cycles the base moves by a rank up to k·r. The learning rate follows the jagged schedule (plugins/schedules.py).

A 4-bit base keeps a full-precision master of each adapted weight (the dequantized weight at the first
restart, on the CPU with relora_cpu_offload): the master grows by each cycle's update and the 4-bit weight
is re-quantized from it. Merging into the 4-bit weight itself would round away any update smaller than half
a quantization step, cycle after cycle (Axolotl keeps its master on disk, from the original checkpoint).

Checkpoints hold the moved base (relora_base.safetensors), which a resumed run loads back; the final
model is saved merged, in plain weights (save_weights).
"""
from __future__ import annotations

import warnings
from pathlib import Path

from transformers import TrainerCallback

from ftkit.errors import FtkitError
from ftkit.log import log
from ftkit.recipe import Recipe

BASE_FILE = "relora_base.safetensors"
MOMENTS = ("exp_avg", "exp_avg_sq", "state1", "state2")  # torch Adam; bitsandbytes' Adam (32- or 8-bit)
BNB_BLOCK = 256  # values per absmax of bitsandbytes' 8-bit optimizer states (Optimizer2State.init_state)


def lora_layers(model) -> dict:
    """{module name: LoRA layer} of a peft model."""
    from peft.tuners.lora import LoraLayer

    return {name: m for name, m in model.named_modules() if isinstance(m, LoraLayer)}


def is_4bit(layer) -> bool:
    return type(layer.get_base_layer().weight).__name__ == "Params4bit"


def set_4bit(layer, full) -> None:
    """Re-quantize a 4-bit base weight from full-precision values, with its own quantization settings."""
    import bitsandbytes as bnb

    old = layer.get_base_layer().weight
    kwargs = {k: v for k, v in old.__dict__.items() if not k.startswith("_") and k not in ("data", "quant_state")}
    kwargs.update(bnb_quantized=False, requires_grad=False)
    layer.get_base_layer().weight = bnb.nn.Params4bit(full.detach().to("cpu", old.quant_state.dtype), **kwargs).to(old.device)


def dequantized(layer):
    from peft.utils.integrations import dequantize_bnb_weight

    weight = layer.get_base_layer().weight
    return dequantize_bnb_weight(weight, state=weight.quant_state)


class ReLoRACallback(TrainerCallback):
    """Merge, re-initialise and prune at global steps R, 2R, ... (not at the final step)."""

    def __init__(self, every: int, prune_ratio: float | None = None, prune_method: str = "magnitude",
                 cpu_offload: bool = False, resume_dir: str | None = None):
        self.every, self.method, self.cpu_offload, self.resume_dir = every, prune_method, cpu_offload, resume_dir
        self.ratio = prune_ratio if prune_ratio is not None else 0.999 if prune_method == "reset" else 0.9
        self.restarts: list[int] = []  # global steps at which a merge happened

    def on_step_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        step = state.global_step
        if step % self.every or step >= state.max_steps:
            return
        merged = self.merge_and_reinit(model)
        zeroed, total = prune_moments(optimizer, [p for n, p in model.named_parameters() if "lora_" in n and p.requires_grad],
                                      self.ratio, self.method)
        self.restarts.append(step)
        log.info(f"ReLoRA: step {step}: merged {merged} LoRA layers into the base and restarted them; "
                 f"{zeroed:,} of {total:,} optimizer moments zeroed ({self.method})")

    def merge_and_reinit(self, model) -> int:
        """W += scale·B·A in every LoRA layer (into the master of a 4-bit weight), then A random, B zero."""
        import torch

        layers = lora_layers(model)
        with torch.no_grad():
            for layer in layers.values():
                for adapter in layer.active_adapters:
                    delta = layer.get_delta_weight(adapter)
                    if is_4bit(layer):
                        if getattr(layer, "relora_master", None) is None:
                            layer.relora_master = dequantized(layer).to("cpu" if self.cpu_offload else delta.device,
                                                                        torch.float32)
                        layer.relora_master += delta.to(layer.relora_master.device)
                        set_4bit(layer, layer.relora_master)
                    else:
                        layer.get_base_layer().weight.data += delta.to(layer.get_base_layer().weight.dtype)
                    layer.reset_lora_parameters(adapter, init_lora_weights=True)
        return len(layers)

    def on_save(self, args, state, control, model=None, **kwargs):
        from safetensors.torch import save_file

        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.global_step >= self.every and folder.is_dir() and state.is_world_process_zero:
            save_file({n: w.cpu().contiguous() for n, w in base_weights(model).items()}, str(folder / BASE_FILE))

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        """A resumed run: the base as it stood at the checkpoint (the adapter there trained against it)."""
        self.restore(args, state, model)

    def restore(self, args, state, model) -> None:
        import torch
        from safetensors.torch import load_file

        if state.global_step < self.every:
            return
        places = [Path(args.output_dir) / f"checkpoint-{state.global_step}", *([self.resume_dir] if self.resume_dir else [])]
        found = [Path(d) / BASE_FILE for d in places if (Path(d) / BASE_FILE).is_file()]
        if not found:
            raise FtkitError(f"resuming a ReLoRA run at step {state.global_step}, but the checkpoint holds no {BASE_FILE} "
                             "(the base merged at the restarts so far)", where="resume_from_checkpoint",
                             fix="resume from a checkpoint ftkit wrote during this ReLoRA run, or start afresh")
        saved = load_file(str(found[0]))
        with torch.no_grad():
            for name, layer in lora_layers(model).items():
                if is_4bit(layer):
                    layer.relora_master = saved[name].to("cpu" if self.cpu_offload else layer.get_base_layer().weight.device)
                    set_4bit(layer, layer.relora_master)
                else:
                    layer.get_base_layer().weight.data.copy_(saved[name])
        self.restarts = list(range(self.every, state.global_step + 1, self.every))
        log.info(f"ReLoRA: resumed with the base merged at steps {self.restarts} ({found[0]})")


def _prune_(values, ratio: float, method: str):
    """Mask (True = keep) over `values`: all but the smallest `ratio` by |value|, or a random 1 - ratio."""
    import torch

    flat = values.flatten().float().abs()
    if method != "magnitude":
        return torch.rand(flat.shape, device=flat.device) > ratio
    k = int(ratio * flat.numel())
    if k == 0:
        return torch.ones_like(flat, dtype=torch.bool)
    return flat > flat.kthvalue(k).values  # ties at the threshold go too (torch.quantile refuses > 16M values)


def prune_moments(optimizer, params: list, ratio: float, method: str = "magnitude") -> tuple[int, int]:
    """Zero the pruned part of each Adam moment of `params` in place; (values now zero, values seen).

    bitsandbytes' 8-bit states hold codes into a quantization map times a per-block absmax: they are pruned by
    the values the codes stand for, and a pruned code is set to the map's zero."""
    import torch

    if optimizer is None:
        return 0, 0
    inner = getattr(optimizer, "optimizer", optimizer)  # accelerate wraps the torch optimizer
    zeroed = total = 0
    with torch.no_grad():
        for param in params:
            state = inner.state.get(param, {})
            for key in MOMENTS:
                moment = state.get(key)
                if not torch.is_tensor(moment):
                    continue
                if moment.dtype == torch.uint8:  # 8-bit: value = qmap[code] * absmax[block]
                    qmap, absmax = state[f"qmap{key[-1]}"], state[f"absmax{key[-1]}"]
                    flat = moment.view(-1)
                    values = qmap[flat.long()] * absmax.repeat_interleave(BNB_BLOCK)[:flat.numel()]
                    flat[~_prune_(values, ratio, method)] = int(qmap.abs().argmin())
                    zeroed += int((qmap[flat.long()] == 0).sum())
                else:
                    moment.mul_(_prune_(moment, ratio, method).view(moment.shape))
                    zeroed += int((moment == 0).sum())
                total += moment.numel()
    return zeroed, total


def base_weights(model) -> dict:
    """The moved base of every LoRA layer: the master of a 4-bit weight, the weight itself otherwise."""
    return {name: (layer.relora_master if getattr(layer, "relora_master", None) is not None else
                   dequantized(layer) if is_4bit(layer) else layer.get_base_layer().weight).detach()
            for name, layer in lora_layers(model).items()}


def save_weights(trainer, out) -> None:
    """A ReLoRA run's result: the base moved at every restart, so the adapter alone is not the model. Plain
    weights, W (or its master) + the last cycle's update, in the model's dtype (a 4-bit base dequantized)."""
    import torch

    model = trainer.model
    dtype = model.get_input_embeddings().weight.dtype  # what the unquantized parts were loaded in
    with torch.no_grad():
        layers = lora_layers(model)
        full = {name: weight.float().cpu() + sum(layers[name].get_delta_weight(a).float().cpu()
                                                 for a in layers[name].active_adapters)
                for name, weight in base_weights(model).items()}
        quantized = any(is_4bit(layer) for layer in layers.values())
        with warnings.catch_warnings():  # peft: "merge lora module to 4-bit linear ...": overwritten below
            warnings.simplefilter("ignore")
            plain = model.merge_and_unload()  # in place; modules_to_save and trainable token rows folded in too
        if quantized:
            plain = plain.dequantize().to(dtype)
        for name, weight in full.items():
            target = plain.get_submodule(name.removeprefix("base_model.model."))
            target.weight.data = weight.to(target.weight.device, target.weight.dtype)
    if trainer.is_world_process_zero():
        plain.save_pretrained(str(out), safe_serialization=True)


def checkpoint_loaded(trainer) -> None:
    """The moved base of a ReLoRA checkpoint loaded without training (train/checkpoints.py finish_from)."""
    for c in trainer.callback_handler.callbacks:
        if isinstance(c, ReLoRACallback):
            c.restore(trainer.args, trainer.state, trainer.model)


def applies(recipe: Recipe) -> bool:
    return recipe.relora_active


def callbacks(recipe: Recipe, prepared) -> list:
    return [ReLoRACallback(recipe.restart_steps, recipe.relora_prune_ratio, recipe.relora_prune_method or "magnitude",
                           recipe.relora_cpu_offload, recipe.resume_from_checkpoint)]
