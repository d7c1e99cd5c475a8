"""CUDA kernels a recipe names (Liger's, Cut Cross-Entropy): which of them run here, applied, and said.

Each computes what transformers' modules compute (speed and memory only), and needs CUDA and its package;
without them the recipe trains with transformers' modules and ftkit's chunked LM head, announced.
  liger_rope, liger_rms_norm, liger_layer_norm, liger_glu_activation
        Liger's patching of the model's family (rope, rms_norm, layer_norm, swiglu/geglu), on the instance
  liger_fused_linear_cross_entropy, liger_cross_entropy
        nothing to add: the loss never builds the logits already (TRL's fused LM head, a Triton kernel on
        CUDA; train/lm_head.py). Liger's own replaces the model's forward, which TRL's SFTTrainer refuses.
  cut_cross_entropy
        CCE's linear_cross_entropy computes the LM head's loss on the steps that log no metrics (logged steps
        need entropy and accuracy: TRL's kernel), with exact gradients (filter_eps off).
"""
from __future__ import annotations

import importlib.util
from typing import Callable

from ftkit.log import log

LIGER = {"liger_rope": ("rope",), "liger_rms_norm": ("rms_norm",), "liger_layer_norm": ("layer_norm",),
         "liger_glu_activation": ("swiglu", "geglu")}  # recipe field -> Liger's keyword(s)
LOSS_KERNELS = ("liger_fused_linear_cross_entropy", "liger_cross_entropy")
PACKAGES = {"liger_kernel": "liger-kernel", "cut_cross_entropy": "cut-cross-entropy"}  # module -> pip name


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def plan(recipe, cuda: bool, has: Callable[[str], bool] | None = None) -> tuple[dict, bool, list[str]]:
    """(Liger's keyword arguments, or {} when none apply; whether CCE computes the loss; lines to announce)."""
    has = has or installed
    named = [k for k in (*LIGER, *LOSS_KERNELS, "cut_cross_entropy") if getattr(recipe, k, False)]
    if not named:
        return {}, False, []
    if not cuda:
        return {}, False, [f"{', '.join(named)}: CUDA kernels, not used on this machine (no CUDA device); the same "
                           "training with transformers' modules and ftkit's chunked LM head"]
    said = [f"{k}: the LM head's loss never builds the logits already (TRL's fused head, Triton on CUDA); "
            "Liger's would replace the model's forward, which TRL's trainer refuses" for k in named if k in LOSS_KERNELS]
    liger = [k for k in named if k in LIGER]
    kwargs = {}
    if liger and not has("liger_kernel"):
        said.append(f"{', '.join(liger)}: liger-kernel is not installed (pip install 'ftkit[gpu]'); transformers' modules")
    elif liger:
        kwargs = {kw: k in liger for k in LIGER for kw in LIGER[k]}
        kwargs.update(cross_entropy=False, fused_linear_cross_entropy=False)  # Liger defaults them on
        said.append(f"Liger kernels: {', '.join(liger)}")
    cce = "cut_cross_entropy" in named and has("cut_cross_entropy")
    if "cut_cross_entropy" in named:
        said.append("cut_cross_entropy: Cut Cross-Entropy computes the loss on steps that log no metrics (exact "
                    "gradients, filter_eps off)" if cce else
                    "cut_cross_entropy: cut-cross-entropy is not installed (pip install 'ftkit[gpu]'); TRL's fused head")
    return kwargs, cce, said


def apply(recipe, model, cuda: bool | None = None) -> None:
    """Patch `model` (its base under an adapter) with the Liger kernels the recipe names, and route the LM head's
    loss through CCE, where CUDA (default: whether torch sees a device) and the packages allow; say what runs."""
    import torch

    from ftkit.train import lm_head

    kwargs, cce, said = plan(recipe, torch.cuda.is_available() if cuda is None else cuda)
    for line in said:
        log.info(line)
    lm_head.Dispatch.cce = _cce_loss if cce else None
    if kwargs:
        from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN, _apply_liger_kernel_to_instance

        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        if base.config.model_type not in MODEL_TYPE_TO_APPLY_LIGER_FN:
            log.info(f"Liger has no kernels for model type {base.config.model_type!r}: transformers' modules")
            return
        _apply_liger_kernel_to_instance(model=base, **kwargs)


def _cce_loss(hidden, weight, targets, softcap):
    """log p(label) per labelled position by Cut Cross-Entropy, in the autocast dtype where one is active."""
    import torch
    from cut_cross_entropy import linear_cross_entropy

    dtype = torch.get_autocast_dtype("cuda") if torch.is_autocast_enabled("cuda") else hidden.dtype
    return -linear_cross_entropy(hidden.to(dtype), weight.to(dtype), targets, softcap=softcap, reduction="none",
                                 filter_eps=None, impl="cce")
