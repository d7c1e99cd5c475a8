"""Tokenizer and model loading: tiny twins or real checkpoints, precision, special tokens, LoRA.

Everything here is transformers/peft; ftkit only maps recipe options onto them and says what it
auto-corrected (e.g. `bf16: auto` on a CPU -> fp32).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from .config import Recipe
from .errors import FtkitError
from .tiny import is_tiny, tiny_path

log = logging.getLogger("ftkit")


def resolve_model_path(name: str) -> str:
    """`tiny:<family>` -> the built twin's directory; anything else is passed to from_pretrained."""
    return str(tiny_path(name)) if is_tiny(name) else name


def _from_pretrained(loader, name: str, what: str, **kwargs):
    """from_pretrained with the offline/missing case turned into one clear error."""
    try:
        return loader.from_pretrained(resolve_model_path(name), **kwargs)
    except (OSError, ValueError) as e:
        local = Path(name).exists()
        fix = ("check that the directory holds config.json and weights" if local else
               f"download it once with `huggingface-cli download {name}` on a machine with network, then point "
               f"base_model at the local directory, or use `tiny:llama` for an offline twin")
        raise FtkitError(f"cannot load {what} {name!r}: {str(e).splitlines()[0]}", where="base_model", fix=fix) from None


# ---------------------------------------------------------------- precision

@dataclass
class Precision:
    bf16: bool
    fp16: bool
    tf32: bool

    @property
    def dtype(self):
        import torch

        return torch.bfloat16 if self.bf16 else torch.float16 if self.fp16 else torch.float32


def resolve_precision(recipe: Recipe, announce=print) -> Precision:
    """Turn bf16/fp16/tf32 ('auto', true, false) into what this machine supports, announcing changes."""
    import torch

    cuda = torch.cuda.is_available()
    bf16_ok = cuda and torch.cuda.is_bf16_supported()
    tf32_ok = cuda and torch.cuda.get_device_capability()[0] >= 8

    def pick(name, value, ok):
        if value == "auto":
            return ok
        if value and not ok:
            announce(f"[ftkit] {name}: true is not supported on this device; using fp32 instead")
            return False
        return bool(value)

    bf16 = pick("bf16", recipe.bf16, bf16_ok)
    if bf16:
        fp16 = False
    elif recipe.fp16 in (None, "auto"):
        fp16 = cuda and not bf16_ok  # older GPUs: fp16 mixed precision instead of bf16
    else:
        fp16 = pick("fp16", recipe.fp16, cuda)
    tf32 = pick("tf32", recipe.tf32, tf32_ok)
    if recipe.bf16 == "auto" and not cuda:
        announce("[ftkit] bf16: auto -> fp32 (no CUDA device)")
    return Precision(bf16=bf16, fp16=fp16, tf32=tf32)


# ---------------------------------------------------------------- tokenizer

def load_tokenizer(recipe: Recipe, announce=print):
    """The recipe's tokenizer with its special_tokens applied; warns about the pad == eos trap."""
    from transformers import AutoTokenizer

    tok = _from_pretrained(AutoTokenizer, recipe.tokenizer_config or recipe.base_model, "tokenizer",
                           trust_remote_code=recipe.trust_remote_code)
    for key, value in (recipe.special_tokens or {}).items():
        if key not in ("bos_token", "eos_token", "pad_token", "unk_token"):
            raise FtkitError(f"unknown special token {key!r}", where=f"special_tokens.{key}",
                             fix="use bos_token, eos_token, pad_token or unk_token")
        if getattr(tok, key) != value:
            tok.add_special_tokens({key: value})
            announce(f"[ftkit] special_tokens: {key} = {value!r}")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
        announce("[ftkit] the tokenizer has no pad token: using eos as pad (labels still train eos; "
                 "set special_tokens.pad_token to a distinct token to silence this)")
    tok.padding_side = "right"
    return tok


# ---------------------------------------------------------------- model

def load_model(recipe: Recipe, tokenizer, precision: Precision | None = None, announce=print):
    """The base model in the recipe's dtype, embeddings resized for added tokens, LoRA applied if asked."""
    import transformers

    precision = precision or resolve_precision(recipe, announce=lambda *_: None)
    auto_cls = getattr(transformers, recipe.model_type, None)
    if auto_cls is None:
        raise FtkitError(f"transformers has no class {recipe.model_type!r}", where="model_type",
                         fix="use AutoModelForCausalLM")
    model = _from_pretrained(auto_cls, recipe.base_model, "model", dtype=precision.dtype,
                             trust_remote_code=recipe.trust_remote_code)
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        announce(f"[ftkit] resizing embeddings {model.get_input_embeddings().weight.shape[0]} -> {len(tokenizer)} "
                 "for added tokens")
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    if model.config.model_type == "rwkv" and model.config.use_cache:
        model.config.use_cache = False  # its CPU path writes the recurrent state in place: backward fails
        announce("[ftkit] rwkv: use_cache off for training (generation still uses the state cache)")
    if recipe.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if recipe.adapter == "lora":
        model = apply_lora(recipe, model)
    return model


def lora_targets(recipe: Recipe, model) -> list[str] | str:
    """Explicit list, 'all-linear' (every linear layer except the head), or the architecture's default."""
    if recipe.lora_target_modules:
        return list(recipe.lora_target_modules)
    if recipe.lora_target_linear:
        return "all-linear"
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULTS

    from .tiny import FAMILIES, family_of

    family = family_of(model.config)
    targets = DEFAULTS.get(model.config.model_type) or (FAMILIES[family].lora_targets if family else None)
    if not targets:
        raise FtkitError(f"no default LoRA targets known for model_type {model.config.model_type!r}",
                         where="lora_target_modules", fix="list them, or set lora_target_linear: true")
    return list(targets)


def lora_config(recipe: Recipe, model):
    from peft import LoraConfig

    return LoraConfig(r=recipe.lora_r, lora_alpha=recipe.lora_alpha, lora_dropout=recipe.lora_dropout,
                      target_modules=lora_targets(recipe, model), bias="none", task_type="CAUSAL_LM")


def apply_lora(recipe: Recipe, model):
    """Wrap the model with a fresh LoRA adapter; unknown target modules become a clear error."""
    from peft import get_peft_model

    try:
        return get_peft_model(model, lora_config(recipe, model))
    except ValueError as e:
        raise FtkitError(f"LoRA could not be applied: {str(e).splitlines()[0]}", where="lora_target_modules",
                         fix="use module names that exist in the model (print(model) lists them) or "
                             "lora_target_linear: true") from None


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
