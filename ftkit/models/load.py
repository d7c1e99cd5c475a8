"""Tokenizer and model loading: tiny twins or real checkpoints, precision, special tokens, LoRA.

Everything here is transformers/peft; ftkit only maps recipe options onto them and says what it
auto-corrected (e.g. `bf16: auto` on a CPU -> fp32). Read top to bottom: the tokenizer, then the model
(`load_model` = `load_base` + k-bit prep + the adapter), then the helpers that turn options into arguments.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from ftkit.errors import FtkitError, Problem
from ftkit.log import log, quiet
from ftkit.models.adapters import apply_adapter as apply_lora
from ftkit.models.remote_code import remote_code_notice
from ftkit.models.tiny import is_tiny, tiny_path
from ftkit.recipe import Recipe


def load_tokenizer(recipe: Recipe):
    """The recipe's tokenizer with its special_tokens applied; warns about the pad == eos trap."""
    import transformers
    from tokenizers import AddedToken

    remote_code_notice(recipe)  # trust_remote_code: the files that will run, named before anything loads
    key = "tokenizer_config" if recipe.tokenizer_config else "base_model"
    cls = getattr(transformers, recipe.tokenizer_type or "AutoTokenizer", None)
    if cls is None or not hasattr(cls, "from_pretrained"):
        raise FtkitError(f"transformers has no tokenizer class {recipe.tokenizer_type!r}", where="tokenizer_type",
                         fix="use AutoTokenizer (or a class such as LlamaTokenizer)")
    legacy = {"legacy": recipe.tokenizer_legacy} if recipe.tokenizer_legacy is not None else {}
    tok = _from_pretrained(cls, getattr(recipe, key), "tokenizer", recipe, key, use_fast=recipe.tokenizer_use_fast,
                           trust_remote_code=recipe.trust_remote_code, revision=recipe.revision_of_model, **legacy)
    verbatim = partial(AddedToken, normalized=False, lstrip=False, rstrip=False)  # as Axolotl: spaces around kept
    for key, value in recipe.special_tokens.items():  # the schema allows only the five keys below
        if key == "additional_special_tokens":  # transformers 5's name for them: extra_special_tokens
            added = tok.add_special_tokens({"extra_special_tokens": [verbatim(t) for t in value]},
                                           replace_extra_special_tokens=False)
            log.info(f"special_tokens: {added} additional special tokens added")
        elif getattr(tok, key) != value:
            tok.add_special_tokens({key: verbatim(value)})
            log.info(f"special_tokens: {key} = {value!r}")
    if recipe.tokens:
        added = tok.add_tokens([verbatim(t) for t in recipe.tokens])
        log.info(f"tokens: added {added} of {len(recipe.tokens)} tokens to the vocabulary")
    from ftkit.formats.prompt import configure_tokenizer

    configure_tokenizer(tok, recipe)  # chat_template, the special tokens it needs, default_system_message

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


# ---------------------------------------------------------------- model

def load_model(recipe: Recipe, tokenizer, precision: Precision | None = None):
    """The base ready to train: k-bit prep for quantized bases, checkpointing, the recipe's adapter (seeded).

    `seed` is applied right before the adapter is created, so two runs of one recipe start from the same
    adapter weights (Axolotl draws them unseeded). Without an adapter here (e.g. TRL adds it later) the seed
    is applied last, for the same reason.
    """
    from transformers import set_seed

    model, grown = _load_base(recipe, tokenizer, precision)
    checkpointing = {"use_reentrant": False, **(recipe.gradient_checkpointing_kwargs or {})}
    if recipe.load_in_4bit or recipe.load_in_8bit:  # peft's k-bit prep: fp32 norms, input grads, checkpointing
        from peft import prepare_model_for_kbit_training

        log.info("quantized base: TRL will keep the LoRA weights in bf16 (the QLoRA paper's choice; "
                 "DoRA magnitudes stay fp32); infer and merge-lora reload them in the same dtype")
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=recipe.gradient_checkpointing,
                                                gradient_checkpointing_kwargs=checkpointing)
    elif recipe.gradient_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=checkpointing)
    if recipe.gradient_checkpointing:
        model.config.use_cache = False
    set_seed(recipe.seed)
    if recipe.adapter:
        if grown and recipe.lora_modules_to_save is None:  # new token rows must be trained and saved with the adapter
            log.info(f"lora_modules_to_save: {grown} (new token embeddings must be trained and saved "
                     "with the adapter)")
            recipe = recipe.model_copy(update={"lora_modules_to_save": grown})
        model = apply_lora(recipe, model)
    if recipe.unfrozen_parameters:
        from ftkit.models.freeze import unfreeze_only

        unfreeze_only(model, recipe.unfrozen_parameters, keep_adapter=bool(recipe.adapter))
    return model


def load_base(recipe: Recipe, tokenizer, precision: Precision | None = None):
    """The base model as the recipe loads it: dtype or 4/8-bit, config overrides, embeddings resized for added tokens."""
    return _load_base(recipe, tokenizer, precision)[0]


def _load_base(recipe: Recipe, tokenizer, precision: Precision | None) -> tuple[object, list[str]]:
    """(base model, the embedding modules an adapter must train and save because their rows grew)."""
    import transformers

    remote_code_notice(recipe)
    if precision is None:
        with quiet():
            precision = resolve_precision(recipe)
    cls_name = recipe.model_type
    if cls_name != "AutoModelForCausalLM" and (recipe.trust_remote_code or recipe.gptq):  # Axolotl ignores it then
        log.info(f"model_type {cls_name} not used with {'trust_remote_code' if recipe.trust_remote_code else 'gptq'}: "
                 "AutoModelForCausalLM loads the class the model names, as Axolotl does")
        cls_name = "AutoModelForCausalLM"
    auto_cls = getattr(transformers, cls_name, None)
    if auto_cls is None:
        raise FtkitError(f"transformers has no class {recipe.model_type!r}", where="model_type",
                         fix="use AutoModelForCausalLM")
    kwargs = _load_kwargs(recipe, precision)
    head = contextlib.nullcontext()
    if recipe.reward_model:  # one output: the score of prompt + answer
        from trl.trainer.reward_trainer import suppress_seqcls_warning  # the expected missing head / unused lm_head

        kwargs["num_labels"], head = 1, suppress_seqcls_warning()
        log.info(f"reward_model: {recipe.model_type} with a new 1-output score head on {recipe.base_model}")
    if recipe.reinit_weights:
        transformers.set_seed(recipe.seed)
        # an Auto class builds from a config with from_config; a concrete one (model_type: LlamaForCausalLM) with
        # transformers' own _from_config, which takes no trust_remote_code (it always comes with the Auto class)
        build = getattr(auto_cls, "from_config", None) or auto_cls._from_config
        remote = {"trust_remote_code": True} if recipe.trust_remote_code else {}
        model = build(kwargs.get("config") or model_config(recipe), dtype=precision.dtype,
                      attn_implementation=kwargs.get("attn_implementation"), **remote)
        log.info("reinit_weights: the model starts from random weights (seeded), not base_model's")
    else:
        with head:
            model = _from_pretrained(auto_cls, recipe.base_model, "model", recipe, **kwargs)
    if recipe.load_in_4bit:
        from ftkit.models.quant import cpu_safe_4bit

        cpu_safe_4bit(model)  # bitsandbytes' CPU repacking drops gradients and rounds scales to bf16
    grown = _resize_embeddings(recipe, model, tokenizer)
    model.config.pad_token_id = tokenizer.pad_token_id
    if model.config.model_type == "rwkv" and model.config.use_cache:
        model.config.use_cache = False  # its CPU path writes the recurrent state in place: backward fails
        log.info("rwkv: use_cache off for training (generation still uses the state cache)")
    return model, grown


def _load_kwargs(recipe: Recipe, precision: Precision) -> dict:
    """from_pretrained arguments from the recipe: dtype, config, attention, placement, revision, bitsandbytes
    quantization, extra kwargs (only those the recipe sets). A GPTQ base that cannot load here is refused first."""
    import os

    import torch

    from ftkit.models import quant

    optional = {"revision": recipe.revision_of_model, "device_map": recipe.device_map, "max_memory": recipe.max_memory,
                "attn_implementation": attention_kernel(recipe.attn_implementation)}
    if recipe.base_model_config or recipe.overrides_of_model_config or recipe.cls_model_config:
        optional["config"] = model_config(recipe)  # only then: from_pretrained reads base_model's own otherwise
    quant.check_gptq(recipe)
    if bnb := quant.bnb_config(recipe, precision.dtype):
        optional["quantization_config"] = bnb
        if torch.cuda.is_available():  # bitsandbytes places weights at load: one whole copy per process
            optional["device_map"] = {"": int(os.environ.get("LOCAL_RANK", 0))}
    return {"dtype": precision.dtype, "trust_remote_code": recipe.trust_remote_code,
            **{k: v for k, v in optional.items() if v}, **recipe.overrides_of_model_kwargs}


def model_config(recipe: Recipe):
    """The config the model is built from: base_model_config (else base_model's), read with cls_model_config,
    overrides_of_model_config applied; read without the weights (train/preflight.py builds the model from it on
    the meta device)."""
    import transformers

    cls = getattr(transformers, recipe.cls_model_config or "AutoConfig", None)
    if cls is None:
        raise FtkitError(f"transformers has no config class {recipe.cls_model_config!r}", where="cls_model_config",
                         fix="use AutoConfig, or a class such as LlamaConfig")
    source, overrides = recipe.base_model_config, recipe.overrides_of_model_config
    config = _from_pretrained(cls, source or recipe.base_model, "model config", recipe,
                              "base_model_config" if source else "base_model",
                              trust_remote_code=recipe.trust_remote_code, revision=recipe.revision_of_model)
    for key, value in overrides.items():
        setattr(config, key, value)  # a mapping replaces the attribute whole (e.g. rope_scaling), as in Axolotl
    if overrides:
        log.info(f"overrides_of_model_config: {', '.join(f'{k}={v!r}' for k, v in overrides.items())}")
    return config


def attention_kernel(requested: str | None) -> str | None:
    """The attention implementation to load with: the requested one where it runs here, else transformers'
    default for the model (sdpa where the model has it, else eager), announced.

    All of these compute exact attention, so the fallback changes speed, never what is trained.
    """
    if requested in (None, "eager", "sdpa"):
        return requested
    import torch
    from transformers.utils import import_utils as iu

    cuda = torch.cuda.is_available()
    available = {"flash_attention_2": iu.is_flash_attn_2_available, "flash_attention_3": iu.is_flash_attn_3_available,
                 "flex_attention": iu.is_torch_flex_attn_available,
                 "xformers": lambda: False,  # transformers has no xformers kernel; sdpa computes the same attention
                 }.get(requested, iu.is_kernels_available)  # hub kernels (org/name) need the `kernels` package
    if cuda and available():
        return requested
    why = "no CUDA device" if not cuda else "its package is not installed"
    log.info(f"attn_implementation: {requested} is not available here ({why}); using sdpa (or eager where the model "
             "has no sdpa): the same attention, speed only")
    return None


def _resize_embeddings(recipe: Recipe, model, tokenizer) -> list[str]:
    """Embedding rows for added tokens (rounded up to 32 with resize_token_embeddings_to_32x), seeded; returns
    the embedding modules an adapter must train and save because their rows grew ([] when none did): the input
    embedding and output head (e.g. embed_tokens, lm_head) for modules_to_save."""
    rows = model.get_input_embeddings().weight.shape[0]
    multiple = 32 if recipe.resize_token_embeddings_to_32x else None
    target = -(-len(tokenizer) // 32) * 32 if multiple else len(tokenizer)
    if not (rows < len(tokenizer) or (recipe.shrink_embeddings and rows > target)):
        return []
    from transformers import set_seed

    set_seed(recipe.seed)  # new rows are drawn from the seeded generator: the same YAML gives the same weights
    log.info(f"resizing embeddings {rows} -> {target} for {'added' if rows < target else 'removed'} tokens")
    model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=multiple,
                                  mean_resizing=recipe.mean_resizing_embeddings)
    if rows > len(tokenizer):
        return []
    grown = (model.get_input_embeddings(), model.get_output_embeddings())  # an output head may be None
    return list(dict.fromkeys(name.rsplit(".", 1)[-1] for name, m in model.named_modules() if m in grown))


def resolve_model_path(name: str) -> str:
    """`tiny:<family>` -> the built twin's directory; anything else is passed to from_pretrained."""
    return str(tiny_path(name)) if is_tiny(name) else name


def _from_pretrained(loader, name: str, what: str, recipe: Recipe, key: str = "base_model", **kwargs):
    """from_pretrained with a folder's or the hub's failure turned into one clear error naming the recipe line."""
    file, line = recipe.source, recipe.line_of(key)
    try:
        return loader.from_pretrained(resolve_model_path(name), **kwargs)
    except FtkitError as e:  # a twin that cannot be built says why itself (there is nothing to download)
        raise FtkitError([Problem(p.problem, file, key, line, p.fix) for p in e.problems]) from None
    except (OSError, ValueError) as e:
        from ftkit.models.hub_access import hub_problem

        if Path(name).exists() or is_tiny(name) or name.startswith(("/", ".", "~")):  # a folder, not a hub name
            raise FtkitError(Problem(f"cannot load {what} from {name}: {str(e).splitlines()[0]}", file, key, line,
                                     "check that the folder exists and holds config.json and the weights")) from None
        raise FtkitError(hub_problem(name, what, e, file, key, line)) from None


# ---------------------------------------------------------------- precision

@dataclass
class Precision:
    bf16: bool  # mixed precision (autocast) in bf16
    fp16: bool  # mixed precision in fp16
    tf32: bool
    weights: str | None = None  # bfloat16 / float16: the weights themselves in that dtype (recipe bfloat16/float16)

    @property
    def dtype(self):
        import torch

        if self.weights:
            return getattr(torch, self.weights)
        return torch.bfloat16 if self.bf16 else torch.float16 if self.fp16 else torch.float32


def resolve_precision(recipe: Recipe) -> Precision:
    """Turn bf16/fp16/tf32 ('auto', true, false) into what this machine supports, announcing changes."""
    import torch

    cuda = torch.cuda.is_available()
    bf16_ok = cuda and torch.cuda.is_bf16_supported()

    def pick(name, value, ok):
        if value and value != "auto" and not ok:
            log.info(f"{name}: true is not supported on this device; using fp32 instead")
        return ok if value == "auto" else bool(value) and ok

    bf16 = pick("bf16", recipe.bf16, bf16_ok)
    if recipe.fp16 in (None, "auto"):
        fp16 = cuda and not bf16_ok  # older GPUs: fp16 mixed precision instead of bf16
    else:
        fp16 = not bf16 and pick("fp16", recipe.fp16, cuda)
    tf32 = pick("tf32", recipe.tf32, cuda and torch.cuda.get_device_capability()[0] >= 8)
    weights = "bfloat16" if recipe.bfloat16 else "float16" if recipe.float16 else None
    if recipe.bf16 == "auto" and not cuda and not weights:
        log.info("bf16: auto -> fp32 (no CUDA device)")
    if weights:
        fp16 = fp16 and weights == "float16"
        log.info(f"{weights}: weights loaded and trained in {weights}"
                 + (" (no mixed precision)" if not (bf16 or fp16) else ""))
    return Precision(bf16=bf16, fp16=fp16, tf32=tf32, weights=weights)


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad), sum(p.numel() for p in model.parameters())
