"""Tokenizer and model loading: tiny twins or real checkpoints, precision, special tokens, LoRA.

Everything here is transformers/peft; ftkit only maps recipe options onto them and says what it
auto-corrected (e.g. `bf16: auto` on a CPU -> fp32).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ftkit.errors import FtkitError
from ftkit.log import log, quiet
from ftkit.models.tiny import is_tiny, tiny_path
from ftkit.recipe import Recipe


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


def resolve_precision(recipe: Recipe) -> Precision:
    """Turn bf16/fp16/tf32 ('auto', true, false) into what this machine supports, announcing changes."""
    import torch

    cuda = torch.cuda.is_available()
    bf16_ok = cuda and torch.cuda.is_bf16_supported()
    tf32_ok = cuda and torch.cuda.get_device_capability()[0] >= 8

    def pick(name, value, ok):
        if value == "auto":
            return ok
        if value and not ok:
            log.info(f"{name}: true is not supported on this device; using fp32 instead")
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
        log.info("bf16: auto -> fp32 (no CUDA device)")
    return Precision(bf16=bf16, fp16=fp16, tf32=tf32)


# ---------------------------------------------------------------- tokenizer

def load_tokenizer(recipe: Recipe):
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
            log.info(f"special_tokens: {key} = {value!r}")
    if recipe.tokens:
        added = tok.add_tokens(list(recipe.tokens))
        log.info(f"tokens: added {added} of {len(recipe.tokens)} tokens to the vocabulary")
    from ftkit.formats.chat import configure_tokenizer

    configure_tokenizer(tok, recipe)  # chat_template + the special tokens it needs
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
        log.info("the tokenizer has no pad token: using eos as pad (labels still train eos; "
                 "set special_tokens.pad_token to a distinct token to silence this)")
    elif tok.pad_token_id == tok.eos_token_id:
        log.warning(f"pad_token == eos_token ({tok.eos_token!r}), the known trap: collators that mask "
                 "pad positions also mask every eos, and the model never learns to stop. ftkit's labels are explicit, "
                 "so eos stays trained here; set special_tokens.pad_token to a distinct token for other tools")
    tok.padding_side = "right"
    return tok


def embedding_module_names(model) -> list[str]:
    """Names of the input embedding and output head modules (e.g. embed_tokens, lm_head) for modules_to_save."""
    targets = {id(m) for m in (model.get_input_embeddings(), model.get_output_embeddings()) if m is not None}
    return list(dict.fromkeys(name.rsplit(".", 1)[-1] for name, m in model.named_modules() if id(m) in targets))


# ---------------------------------------------------------------- model

def load_base(recipe: Recipe, tokenizer, precision: Precision | None = None):
    """The base model as the recipe loads it: dtype or 4/8-bit, embeddings resized for added tokens."""
    return _load_base(recipe, tokenizer, precision)[0]


def _load_base(recipe: Recipe, tokenizer, precision: Precision | None) -> tuple[object, list[str]]:
    """(base model, the embedding modules an adapter must train and save because their rows grew)."""
    import transformers

    if precision is None:
        with quiet():
            precision = resolve_precision(recipe)
    auto_cls = getattr(transformers, recipe.model_type, None)
    if auto_cls is None:
        raise FtkitError(f"transformers has no class {recipe.model_type!r}", where="model_type",
                         fix="use AutoModelForCausalLM")
    model = _from_pretrained(auto_cls, recipe.base_model, "model", dtype=precision.dtype,
                             trust_remote_code=recipe.trust_remote_code, **_quant_kwargs(recipe, precision))
    if recipe.load_in_4bit:
        from ftkit.models.quant import cpu_safe_4bit

        cpu_safe_4bit(model)  # bitsandbytes' CPU repacking drops gradients and rounds scales to bf16
    grown: list[str] = []
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        log.info(f"resizing embeddings {model.get_input_embeddings().weight.shape[0]} -> {len(tokenizer)} "
                 "for added tokens")
        model.resize_token_embeddings(len(tokenizer))
        grown = embedding_module_names(model)
    model.config.pad_token_id = tokenizer.pad_token_id
    if model.config.model_type == "rwkv" and model.config.use_cache:
        model.config.use_cache = False  # its CPU path writes the recurrent state in place: backward fails
        log.info("rwkv: use_cache off for training (generation still uses the state cache)")
    return model, grown


def load_model(recipe: Recipe, tokenizer, precision: Precision | None = None):
    """The base ready to train: k-bit prep for quantized bases, checkpointing, the recipe's adapter."""
    model, grown = _load_base(recipe, tokenizer, precision)
    if recipe.load_in_4bit or recipe.load_in_8bit:
        from ftkit.models import quant

        model = quant.prepare(model, recipe)  # fp32 norms, input grads
    elif recipe.gradient_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    if recipe.gradient_checkpointing:
        model.config.use_cache = False
    if recipe.adapter:
        if grown and recipe.lora_modules_to_save is None:  # new token rows must be trained and saved with the adapter
            log.info(f"lora_modules_to_save: {grown} (new token embeddings must be trained and saved "
                     "with the adapter)")
            recipe = recipe.model_copy(update={"lora_modules_to_save": grown})
        model = apply_lora(recipe, model)
    return model


def apply_lora(recipe: Recipe, model):
    """The recipe's adapter on `model` (see adapters.apply_adapter)."""
    from ftkit.models.adapters import apply_adapter

    return apply_adapter(recipe, model)


def _quant_kwargs(recipe: Recipe, precision: Precision) -> dict:
    """from_pretrained arguments for a bitsandbytes/GPTQ base (empty for a plain one)."""
    import os

    import torch

    from ftkit.models import quant

    quant.check_gptq(recipe)
    config = quant.bnb_config(recipe, precision.dtype)
    if config is None:
        return {}
    kwargs = {"quantization_config": config}
    if torch.cuda.is_available():  # bitsandbytes places weights at load: one whole copy per process
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", 0))}
    return kwargs


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
