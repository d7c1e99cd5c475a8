"""Tiny twins: an offline, deterministic stand-in for a real base model of a given architecture.

`base_model: tiny:llama` resolves to a directory holding a byte-level BPE tokenizer trained locally
(with the family's special tokens and chat template) and a random-init model of that architecture at
toy size. Tests and the demo swap a recipe's real hub model for its twin, so the same code path runs
without a download. Built once per spec into the cache (~/.cache/ftkit/tiny, or $FTKIT_CACHE/tiny).

Adding a family = adding one `TinySpec` to FAMILIES: the config class and its tiny sizes, the
family's special tokens, and its chat template.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .chat_templates import TEMPLATES

TINY_PREFIX = "tiny:"
BUILD_VERSION = "2"  # bump when the build procedure changes, so stale caches are not reused
VOCAB_SIZE = 1024
INIT_RANGE = 0.1
CORPUS = Path(__file__).parent / "assets" / "tiny_corpus.txt"

@dataclass(frozen=True)
class TinySpec:
    """Everything that defines one family's twin (hashed into the cache key)."""

    config_class: str  # transformers config class name, e.g. "LlamaConfig"
    sizes: dict  # tiny dimensions, in that config's own argument names
    bos: str | None
    eos: str
    pad: str | None
    extra_special: tuple = ()
    chat_template: str | None = None
    add_bos: bool = True
    lora_targets: tuple = ("q_proj", "v_proj")  # the family's usual LoRA target modules
    config_extra: dict = field(default_factory=dict)


_LLAMA_SIZES = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, max_position_embeddings=2048)
_GPT2_TOKENS = dict(bos="<|endoftext|>", eos="<|endoftext|>", pad=None, add_bos=False)  # gpt2/neox vocab habit
_ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")
_ATTN_MLP = _ATTN + ("gate_proj", "up_proj", "down_proj")
_NEOX = ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h")


def _chat(name: str) -> dict:
    """The TinySpec fields a named chat template fixes: its Jinja text and the special tokens it writes."""
    t = TEMPLATES[name]
    return dict(chat_template=t.jinja, extra_special=t.special_tokens)


# One entry per architecture. Families whose real tokenizer ships no chat template (pythia, gpt-j, mpt,
# falcon base, cerebras, phi-2, rwkv) get chatml: the template Axolotl's examples add to base models.
# head_dim is set where the config's default is a fixed number (gemma: 256, qwen3: 128) that 64/4 != .
FAMILIES: dict[str, TinySpec] = {
    "llama": TinySpec(
        "LlamaConfig", _LLAMA_SIZES, bos="<|begin_of_text|>", eos="<|end_of_text|>",
        pad="<|finetune_right_pad_id|>",
        extra_special=TEMPLATES["llama3"].special_tokens,
        chat_template=TEMPLATES["llama3"].jinja,
        config_extra=dict(tie_word_embeddings=False, rope_theta=500000.0), lora_targets=_ATTN_MLP,
    ),
    "mistral": TinySpec("MistralConfig", _LLAMA_SIZES, bos="<s>", eos="</s>", pad=None, **_chat("mistral"),
                        lora_targets=_ATTN_MLP),
    "mixtral": TinySpec("MixtralConfig", {**_LLAMA_SIZES, "num_local_experts": 4, "num_experts_per_tok": 2},
                        bos="<s>", eos="</s>", pad=None, **_chat("mistral"),
                        lora_targets=_ATTN),  # experts are fused 3-D tensors in transformers 5, not Linear
    "qwen2": TinySpec("Qwen2Config", _LLAMA_SIZES, bos=None, eos="<|im_end|>", pad="<|endoftext|>",
                      add_bos=False, **_chat("qwen"), lora_targets=_ATTN_MLP),
    "qwen3": TinySpec("Qwen3Config", {**_LLAMA_SIZES, "head_dim": 16}, bos=None, eos="<|im_end|>",
                      pad="<|endoftext|>", add_bos=False, **_chat("chatml"), lora_targets=_ATTN_MLP),
    "gemma": TinySpec("GemmaConfig", {**_LLAMA_SIZES, "head_dim": 16}, bos="<bos>", eos="<eos>", pad="<pad>",
                      **_chat("gemma"), lora_targets=_ATTN_MLP),
    "gemma2": TinySpec("Gemma2Config", {**_LLAMA_SIZES, "head_dim": 16, "sliding_window": 64}, bos="<bos>",
                       eos="<eos>", pad="<pad>", **_chat("gemma"), lora_targets=_ATTN_MLP),
    "gemma3": TinySpec("Gemma3TextConfig", {**_LLAMA_SIZES, "head_dim": 16, "sliding_window": 64}, bos="<bos>",
                       eos="<eos>", pad="<pad>", **_chat("gemma"), lora_targets=_ATTN_MLP),
    "phi": TinySpec("PhiConfig", _LLAMA_SIZES, **_GPT2_TOKENS, **_chat("chatml"),
                    lora_targets=("q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2")),
    "phi3": TinySpec("Phi3Config", _LLAMA_SIZES, bos="<s>", eos="<|endoftext|>", pad=None, **_chat("phi3"),
                     lora_targets=("qkv_proj", "o_proj", "gate_up_proj", "down_proj")),
    "falcon": TinySpec("FalconConfig", dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4),
                       **_GPT2_TOKENS, **_chat("chatml"), lora_targets=_NEOX),
    "gpt_neox": TinySpec("GPTNeoXConfig", dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                               num_attention_heads=4, max_position_embeddings=2048),
                         **_GPT2_TOKENS, **_chat("chatml"), lora_targets=_NEOX),
    "gptj": TinySpec("GPTJConfig", dict(n_embd=64, n_layer=2, n_head=4, n_positions=2048, rotary_dim=8),
                     **_GPT2_TOKENS, **_chat("chatml"),
                     lora_targets=("q_proj", "k_proj", "v_proj", "out_proj", "fc_in", "fc_out")),
    "mpt": TinySpec("MptConfig", dict(d_model=64, n_heads=4, n_layers=2, expansion_ratio=2, max_seq_len=2048),
                    **_GPT2_TOKENS, **_chat("chatml"), lora_targets=("Wqkv", "out_proj", "up_proj", "down_proj")),
    "gpt2": TinySpec("GPT2Config", dict(n_embd=64, n_layer=2, n_head=4, n_positions=2048),
                     **_GPT2_TOKENS, **_chat("chatml"), lora_targets=("c_attn", "c_proj", "c_fc")),
    "rwkv": TinySpec("RwkvConfig", dict(hidden_size=64, num_hidden_layers=2, attention_hidden_size=64,
                                        intermediate_size=128, context_length=2048),
                     **_GPT2_TOKENS, **_chat("chatml"), lora_targets=("key", "value", "receptance")),
}
# Axolotl's names for some of these (its supported-models table): pythia = gpt_neox, cerebras = gpt2.
ALIASES = {"pythia": "gpt_neox", "cerebras": "gpt2", "gemma3_text": "gemma3", "qwen": "qwen2"}


def template_name(spec: TinySpec) -> str | None:
    """The ftkit name of the twin's chat template (None when it has none)."""
    return next((n for n, t in TEMPLATES.items() if t.jinja == spec.chat_template), None)


def is_tiny(name: str) -> bool:
    return name.startswith(TINY_PREFIX)


def cache_root() -> Path:
    base = os.environ.get("FTKIT_CACHE") or Path.home() / ".cache" / "ftkit"
    return Path(base) / "tiny"


def _spec_for(name: str) -> tuple[str, TinySpec]:
    from .errors import FtkitError

    family = name[len(TINY_PREFIX):] if is_tiny(name) else name
    family = ALIASES.get(family, family)
    if family not in FAMILIES:
        import difflib

        guess = difflib.get_close_matches(family, FAMILIES, n=1)
        raise FtkitError(f"no tiny twin for family {family!r}", where="base_model",
                         fix=f"use one of: {', '.join('tiny:' + f for f in FAMILIES)}"
                         + (f" (did you mean tiny:{guess[0]}?)" if guess else ""))
    return family, FAMILIES[family]


def _key(family: str, spec: TinySpec) -> str:
    blob = json.dumps([BUILD_VERSION, family, asdict(spec), CORPUS.read_text(encoding="utf-8")], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def tiny_path(name: str) -> Path:
    """Directory of the twin (tokenizer + model); builds it on first use. `name` is 'tiny:llama' or 'llama'."""
    family, spec = _spec_for(name)
    target = cache_root() / f"{family}-{_key(family, spec)}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{family}-", dir=target.parent))
    try:
        _build(family, spec, tmp)
        try:
            os.rename(tmp, target)  # atomic: a half-built twin is never visible
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _corpus_lines() -> list[str]:
    # The corpus plus the words of the prompt templates, so prompts tokenize compactly.
    from .prompts.alpaca import TEMPLATE_WORDS

    return CORPUS.read_text(encoding="utf-8").splitlines() + TEMPLATE_WORDS + ["user assistant system"] * 20


def build_tokenizer(spec: TinySpec):
    """A byte-level BPE (any text encodes) trained on the local corpus, wrapped for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [t for t in (spec.bos, spec.eos, spec.pad) if t] + list(spec.extra_special)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus_lines(), trainer)
    if spec.add_bos and spec.bos:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{spec.bos} $A", pair=f"{spec.bos} $A {spec.bos} $B",
            special_tokens=[(spec.bos, tok.token_to_id(spec.bos))])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=spec.bos, eos_token=spec.eos,
                                 pad_token=spec.pad, additional_special_tokens=list(spec.extra_special))
    if spec.chat_template:
        hf.chat_template = spec.chat_template
    return hf


def _build(family: str, spec: TinySpec, out: Path) -> None:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, GenerationConfig

    tok = build_tokenizer(spec)
    ids = {k: tok.convert_tokens_to_ids(v) if v else None for k, v in
           (("bos_token_id", spec.bos), ("eos_token_id", spec.eos), ("pad_token_id", spec.pad))}
    config = getattr(transformers, spec.config_class)(vocab_size=len(tok), **spec.sizes, **spec.config_extra, **ids)
    # Real checkpoints have a trained head with large logits; a toy model at the usual init (0.02) gives
    # near-uniform logits that frozen-head LoRA cannot move. 0.1 lets LoRA learn in a few dozen steps.
    if hasattr(config, "initializer_range"):
        config.initializer_range = INIT_RANGE
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config = GenerationConfig(**{k: v for k, v in ids.items() if v is not None})
    model.save_pretrained(out)
    tok.save_pretrained(out)
    (out / "TINY_TWIN.json").write_text(json.dumps({"family": family, "spec": asdict(spec)}, indent=1, default=str))


def family_of(name_or_config) -> str | None:
    """The ftkit family name for a tiny name or a transformers config's model_type."""
    if isinstance(name_or_config, str):
        return name_or_config[len(TINY_PREFIX):] if is_tiny(name_or_config) else None
    mt = ALIASES.get(getattr(name_or_config, "model_type", None), getattr(name_or_config, "model_type", None))
    return mt if mt in FAMILIES else None


def twin_for_recipe(path) -> str:
    """The tiny twin a recipe file is tested on: its `tiny:` base_model, else a `# tiny twin: tiny:<family>`
    header line, else its folder name (recipes/mistral/lora.yml -> tiny:mistral)."""
    from .errors import FtkitError

    path = Path(path)
    text = path.read_text(encoding="utf-8")
    for line in text.splitlines():
        if line.replace(" ", "").startswith("base_model:tiny:"):
            return line.split(":", 1)[1].split("#")[0].strip()
        if line.lower().startswith("# tiny twin:"):
            return line.split(":", 1)[1].strip()
    family = ALIASES.get(path.parent.name, path.parent.name)
    if family in FAMILIES:
        return TINY_PREFIX + family
    raise FtkitError(f"cannot tell which tiny twin tests {path}", file=str(path),
                     fix="put it under recipes/<family>/ or add a header line `# tiny twin: tiny:<family>`")


# Settings a recipe gets when it runs on its twin (tests, notebooks with tiny=True): the real run's
# memory savers cost time at toy size, 16-row steps and a held-out split only slow a 40-step demo.
TWIN_TRAINING = {"gradient_checkpointing": False, "gradient_accumulation_steps": 1, "micro_batch_size": 8,
                 "val_set_size": 0, "warmup_steps": 2, "logging_steps": 1, "lora_dropout": 0.0}


def twin_overrides(path) -> dict:
    """Overrides that put the recipe file at `path` on its tiny twin (see twin_for_recipe, TWIN_TRAINING)."""
    return {"base_model": twin_for_recipe(path), **TWIN_TRAINING}


# Hub names -> twin, tried in order (mixtral before mistral: "mistralai/Mixtral-8x7B" contains both).
_NAME_HINTS = [("mixtral", "mixtral"), ("mistral", "mistral"), ("qwen3", "qwen3"), ("qwen", "qwen2"),
               ("gemma-3", "gemma3"), ("gemma-2", "gemma2"), ("gemma", "gemma"), ("phi-3", "phi3"), ("phi", "phi"),
               ("falcon", "falcon"), ("pythia", "gpt_neox"), ("neox", "gpt_neox"), ("gpt-j", "gptj"),
               ("mpt", "mpt"), ("cerebras", "gpt2"), ("gpt2", "gpt2"), ("rwkv", "rwkv"), ("llama", "llama")]


def twin_for_model(name: str) -> str:
    """The twin of a hub model name (`meta-llama/Llama-3.2-1B` -> tiny:llama), by the family in its name."""
    from .errors import FtkitError

    if is_tiny(name):
        return name
    lowered = name.lower()
    for hint, family in _NAME_HINTS:
        if hint in lowered:
            return TINY_PREFIX + family
    raise FtkitError(f"cannot tell the family of {name!r}", where="base_model",
                     fix=f"pass the twin yourself, e.g. -p base_model=tiny:llama ({', '.join(FAMILIES)})")
