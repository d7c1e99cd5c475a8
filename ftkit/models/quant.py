"""Quantized bases: the BitsAndBytesConfig a recipe asks for, GPTQ checks, a bitsandbytes CPU fix.

Measured on this project's CPU machines (bitsandbytes 0.50.2, torch 2.13 CPU): 4-bit (nf4 and fp4,
double quant) and 8-bit (LLM.int8) load, forward, train a LoRA and merge on the CPU. One trap: on
CPUs with AVX512-BF16, a 4-bit layer run in eval mode without gradients repacks its weight for a CPU
kernel that has no backward, and every later training step then silently loses the gradient through
that layer (measured: LoRA grads off by 100%). `cpu_safe_4bit` turns that repacking off.
"""
from __future__ import annotations

from ftkit.errors import FtkitError
from ftkit.log import log
from ftkit.recipe import Recipe


def bnb_config(recipe: Recipe, dtype):
    """BitsAndBytesConfig for load_in_4bit/8bit (nf4 + double quant, compute in `dtype`), or None."""
    if not (recipe.load_in_4bit or recipe.load_in_8bit):
        return None
    from transformers import BitsAndBytesConfig

    kwargs = dict(load_in_8bit=True) if recipe.load_in_8bit else dict(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype)
    if not recipe.load_in_8bit and (recipe.fsdp or recipe.deepspeed) and dtype is not None:
        # packed 4-bit weights held in a float tensor of the run's dtype, so the engine can flatten and shard
        # them with the others (uint8 storage cannot join a float buffer); Axolotl sets the same
        kwargs["bnb_4bit_quant_storage"] = dtype
        log.info(f"4-bit weights stored as {dtype} (bnb_4bit_quant_storage) so "
                 f"{'FSDP' if recipe.fsdp else 'DeepSpeed'} can shard them with the rest")
    import inspect

    known = set(inspect.signature(BitsAndBytesConfig.__init__).parameters) - {"self", "kwargs"}
    unknown = sorted(set(recipe.bnb_config_kwargs) - known)
    if unknown:  # BitsAndBytesConfig would only log these and carry on
        raise FtkitError(f"unknown BitsAndBytesConfig arguments {unknown}", where="bnb_config_kwargs",
                         fix=f"use BitsAndBytesConfig argument names: {', '.join(sorted(known))}")
    kwargs.update(recipe.bnb_config_kwargs)
    try:
        return BitsAndBytesConfig(**kwargs)
    except (TypeError, ValueError) as e:
        raise FtkitError(f"bitsandbytes rejected these settings: {str(e).splitlines()[0]}", where="bnb_config_kwargs",
                         fix="use BitsAndBytesConfig argument names, e.g. bnb_4bit_quant_type: nf4") from None


def check_gptq(recipe: Recipe) -> None:
    """A GPTQ base is loaded by transformers itself; refuse early, with the packages, when it cannot."""
    if not recipe.gptq:
        return
    import torch
    from transformers.utils import is_gptqmodel_available, is_optimum_available

    missing = [name for name, ok in (("optimum", is_optimum_available()), ("gptqmodel", is_gptqmodel_available()))
               if not ok]
    if missing:
        raise FtkitError(f"gptq: true loads a GPTQ-quantized base through transformers, which needs "
                         f"{' and '.join(missing)} (not installed)", where="gptq",
                         fix=f"pip install {' '.join(missing)} on a GPU machine (gptqmodel needs torch >= 2.14.1, "
                             "not ftkit's pinned 2.13, and compiles its CPU kernel at first use: docs/gptq.md), "
                             "or use load_in_4bit + adapter: qlora on the unquantized base")
    if not torch.cuda.is_available() and not is_gptqmodel_available():
        raise FtkitError("GPTQ kernels need a CUDA device here", where="gptq", fix="run on a GPU machine")


def cpu_safe_4bit(model) -> None:
    """Stop bitsandbytes repacking 4-bit CPU weights for its inference-only kernel (see module doc)."""
    import bitsandbytes as bnb

    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)
              and getattr(m, "support_avx512bf16_for_cpu", False)]
    for m in layers:
        m.support_avx512bf16_for_cpu = False
    if layers and model.device.type == "cpu":
        log.info(f"bitsandbytes CPU: kept {len(layers)} 4-bit layers out of the AVX512-BF16 inference "
                 "repacking (it has no backward and would silently drop gradients after an eval pass)")
