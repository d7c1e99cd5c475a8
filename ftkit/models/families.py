"""The model families ftkit knows, one entry each: what every part of ftkit needs to know about an architecture.

Read by the tiny twins (toy sizes, special tokens, chat template), adapters (default LoRA targets where
peft has none), `ftkit memory` (public config.json values of well-known checkpoints, for offline
estimates), the cookbook (which twin tests a recipe or hub model) and the notebook generator
(one lesson per notebook). Adding a family is adding one `Family` here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TinySpec:
    """Everything that defines one family's twin (hashed into its cache key)."""

    config_class: str  # transformers config class name, e.g. "LlamaConfig"
    sizes: dict  # tiny dimensions, in that config's own argument names
    bos: str | None
    eos: str
    pad: str | None
    template: str | None = None  # ftkit chat template name (formats/chat_templates.py)
    add_bos: bool = True
    config_extra: dict = field(default_factory=dict)
    isolate: str | None = None  # regex of text the real tokenizer keeps as one pre-token (see tiny.build_tokenizer)


@dataclass(frozen=True)
class RealModel:
    """A public checkpoint's architecture (its config.json values): memory estimates without a download."""

    label: str
    pattern: str  # regex searched in the lower-cased hub name
    config: dict


@dataclass(frozen=True)
class Family:
    twin: TinySpec
    lora_targets: tuple  # the family's usual LoRA target modules (peft lacks a default for some)
    hub_hints: tuple = ()  # substrings of hub names that mean this family (tried in FAMILIES order)
    real: tuple = ()  # RealModel entries, most specific first


_LLAMA_SIZES = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, max_position_embeddings=2048)
_GPT2_TOKENS = dict(bos="<|endoftext|>", eos="<|endoftext|>", pad=None, add_bos=False)  # gpt2/neox vocab habit
_ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")
_ATTN_MLP = _ATTN + ("gate_proj", "up_proj", "down_proj")
_NEOX = ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h")
_LLAMA = dict(model_type="llama", hidden_act="silu", rms_norm_eps=1e-5, max_position_embeddings=4096)


def _llama(label, pattern, **sizes) -> RealModel:
    return RealModel(label, pattern, dict(_LLAMA, **sizes))


# One entry per architecture. Families whose real tokenizer ships no chat template (pythia, gpt-j, mpt,
# falcon base, cerebras, phi-2, rwkv) get chatml: the template Axolotl's examples add to base models.
# head_dim is set where the config's default is a fixed number (gemma: 256, qwen3: 128) that 64/4 != .
# The order matters for hub_hints: mixtral before mistral ("mistralai/Mixtral-8x7B" contains both).
FAMILIES: dict[str, Family] = {
    "mixtral": Family(
        TinySpec("MixtralConfig", {**_LLAMA_SIZES, "num_local_experts": 4, "num_experts_per_tok": 2},
                 bos="<s>", eos="</s>", pad=None, template="mistral"),
        lora_targets=_ATTN,  # experts are fused 3-D tensors in transformers 5, not Linear
        hub_hints=("mixtral",),
        real=(RealModel("mixtral-8x7b", r"mixtral-8x7b", dict(
            model_type="mixtral", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
            num_attention_heads=32, num_key_value_heads=8, num_local_experts=8, num_experts_per_tok=2,
            vocab_size=32000)),)),
    "mistral": Family(
        TinySpec("MistralConfig", _LLAMA_SIZES, bos="<s>", eos="</s>", pad=None, template="mistral"),
        lora_targets=_ATTN_MLP, hub_hints=("mistral",),
        real=(RealModel("mistral-7b-v0.3", r"mistral-7b-v0\.3", dict(
                  model_type="mistral", hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
                  num_key_value_heads=8, intermediate_size=14336, vocab_size=32768, hidden_act="silu")),
              RealModel("mistral-7b", r"mistral-7b", dict(
                  model_type="mistral", hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
                  num_key_value_heads=8, intermediate_size=14336, vocab_size=32000, hidden_act="silu")))),
    "qwen3": Family(
        TinySpec("Qwen3Config", {**_LLAMA_SIZES, "head_dim": 16}, bos=None, eos="<|im_end|>", pad="<|endoftext|>",
                 add_bos=False, template="chatml"),
        lora_targets=_ATTN_MLP, hub_hints=("qwen3",),
        real=(RealModel("qwen3-8b", r"qwen3-8b", dict(
            model_type="qwen3", hidden_size=4096, intermediate_size=12288, num_hidden_layers=36,
            num_attention_heads=32, num_key_value_heads=8, head_dim=128, vocab_size=151936)),)),
    "qwen2": Family(
        TinySpec("Qwen2Config", _LLAMA_SIZES, bos=None, eos="<|im_end|>", pad="<|endoftext|>", add_bos=False,
                 template="qwen"),
        lora_targets=_ATTN_MLP, hub_hints=("qwen",),
        real=(RealModel("qwen2.5-7b", r"qwen2\.5-7b", dict(
            model_type="qwen2", hidden_size=3584, num_hidden_layers=28, num_attention_heads=28,
            num_key_value_heads=4, intermediate_size=18944, vocab_size=152064, hidden_act="silu")),)),
    "gemma3": Family(
        TinySpec("Gemma3TextConfig", {**_LLAMA_SIZES, "head_dim": 16, "sliding_window": 64}, bos="<bos>",
                 eos="<eos>", pad="<pad>", template="gemma"),
        lora_targets=_ATTN_MLP, hub_hints=("gemma-3",),
        real=(RealModel("gemma-3-1b", r"gemma-3-1b", dict(
            model_type="gemma3_text", hidden_size=1152, intermediate_size=6912, num_hidden_layers=26,
            num_attention_heads=4, num_key_value_heads=1, head_dim=256, vocab_size=262144)),)),
    "gemma2": Family(
        TinySpec("Gemma2Config", {**_LLAMA_SIZES, "head_dim": 16, "sliding_window": 64}, bos="<bos>",
                 eos="<eos>", pad="<pad>", template="gemma"),
        lora_targets=_ATTN_MLP, hub_hints=("gemma-2",),
        real=(RealModel("gemma-2-9b", r"gemma-2-9b", dict(
            model_type="gemma2", hidden_size=3584, intermediate_size=14336, num_hidden_layers=42,
            num_attention_heads=16, num_key_value_heads=8, head_dim=256, vocab_size=256000)),)),
    "gemma": Family(
        TinySpec("GemmaConfig", {**_LLAMA_SIZES, "head_dim": 16}, bos="<bos>", eos="<eos>", pad="<pad>",
                 template="gemma"),
        lora_targets=_ATTN_MLP, hub_hints=("gemma",),
        real=(RealModel("gemma-7b", r"gemma-7b", dict(
            model_type="gemma", hidden_size=3072, intermediate_size=24576, num_hidden_layers=28,
            num_attention_heads=16, num_key_value_heads=16, head_dim=256, vocab_size=256000)),)),
    "phi3": Family(
        TinySpec("Phi3Config", _LLAMA_SIZES, bos="<s>", eos="<|endoftext|>", pad=None, template="phi3"),
        lora_targets=("qkv_proj", "o_proj", "gate_up_proj", "down_proj"), hub_hints=("phi-3",),
        real=(RealModel("phi-3-mini", r"phi-3-mini", dict(
            model_type="phi3", hidden_size=3072, intermediate_size=8192, num_hidden_layers=32,
            num_attention_heads=32, vocab_size=32064)),)),
    "phi": Family(
        TinySpec("PhiConfig", _LLAMA_SIZES, **_GPT2_TOKENS, template="chatml"),
        lora_targets=("q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"), hub_hints=("phi",),
        real=(RealModel("phi-2", r"phi-2", dict(
            model_type="phi", hidden_size=2560, intermediate_size=10240, num_hidden_layers=32,
            num_attention_heads=32, vocab_size=51200)),)),
    "falcon": Family(
        TinySpec("FalconConfig", dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4), **_GPT2_TOKENS,
                 template="chatml"),
        lora_targets=_NEOX, hub_hints=("falcon",),
        real=(RealModel("falcon-7b", r"falcon-7b", dict(
            model_type="falcon", hidden_size=4544, num_hidden_layers=32, num_attention_heads=71,
            vocab_size=65024, multi_query=True)),)),
    "gpt_neox": Family(
        TinySpec("GPTNeoXConfig", dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                       num_attention_heads=4, max_position_embeddings=2048),
                 **_GPT2_TOKENS, template="chatml"),
        lora_targets=_NEOX, hub_hints=("pythia", "neox"),
        real=(RealModel("pythia-1.4b", r"pythia-1\.4b", dict(
            model_type="gpt_neox", hidden_size=2048, intermediate_size=8192, num_hidden_layers=24,
            num_attention_heads=16, vocab_size=50304)),)),
    "gptj": Family(
        TinySpec("GPTJConfig", dict(n_embd=64, n_layer=2, n_head=4, n_positions=2048, rotary_dim=8),
                 **_GPT2_TOKENS, template="chatml"),
        lora_targets=("q_proj", "k_proj", "v_proj", "out_proj", "fc_in", "fc_out"), hub_hints=("gpt-j",),
        real=(RealModel("gpt-j-6b", r"gpt-j-6b", dict(
            model_type="gptj", n_embd=4096, n_layer=28, n_head=16, rotary_dim=64, vocab_size=50400)),)),
    "mpt": Family(
        TinySpec("MptConfig", dict(d_model=64, n_heads=4, n_layers=2, expansion_ratio=2, max_seq_len=2048),
                 **_GPT2_TOKENS, template="chatml"),
        lora_targets=("Wqkv", "out_proj", "up_proj", "down_proj"), hub_hints=("mpt",),
        real=(RealModel("mpt-7b", r"mpt-7b", dict(
            model_type="mpt", d_model=4096, n_heads=32, n_layers=32, expansion_ratio=4, vocab_size=50432)),)),
    "gpt2": Family(
        TinySpec("GPT2Config", dict(n_embd=64, n_layer=2, n_head=4, n_positions=2048), **_GPT2_TOKENS,
                 template="chatml"),
        lora_targets=("c_attn", "c_proj", "c_fc"), hub_hints=("cerebras", "gpt2"),
        real=(RealModel("cerebras-gpt-1.3b", r"cerebras-gpt-1\.3b", dict(
            model_type="gpt2", n_embd=2048, n_layer=24, n_head=16, vocab_size=50257)),)),
    "rwkv": Family(
        TinySpec("RwkvConfig", dict(hidden_size=64, num_hidden_layers=2, attention_hidden_size=64,
                                    intermediate_size=128, context_length=2048), **_GPT2_TOKENS, template="chatml"),
        lora_targets=("key", "value", "receptance"), hub_hints=("rwkv",),
        real=(RealModel("rwkv-4-169m", r"rwkv-4-169m", dict(
            model_type="rwkv", hidden_size=768, num_hidden_layers=12, attention_hidden_size=768,
            intermediate_size=3072, vocab_size=50277)),)),
    "llama": Family(
        TinySpec("LlamaConfig", _LLAMA_SIZES, bos="<|begin_of_text|>", eos="<|end_of_text|>",
                 pad="<|finetune_right_pad_id|>", template="llama3", isolate=r"\A\s*[\r\n]+",
                 config_extra=dict(tie_word_embeddings=False, rope_theta=500000.0)),
        lora_targets=_ATTN_MLP, hub_hints=("llama",),
        real=(_llama("llama-3-70b", r"llama-?3(\.\d)?-70b", hidden_size=8192, num_hidden_layers=80,
                     num_attention_heads=64, num_key_value_heads=8, intermediate_size=28672, vocab_size=128256),
              _llama("llama-3.2-1b", r"llama-3\.2-1b", hidden_size=2048, num_hidden_layers=16, num_attention_heads=32,
                     num_key_value_heads=8, intermediate_size=8192, vocab_size=128256, tie_word_embeddings=True),
              _llama("llama-3-8b", r"llama-?3(\.\d)?-8b", hidden_size=4096, num_hidden_layers=32,
                     num_attention_heads=32, num_key_value_heads=8, intermediate_size=14336, vocab_size=128256),
              _llama("llama-2-70b", r"llama-2-70b", hidden_size=8192, num_hidden_layers=80, num_attention_heads=64,
                     num_key_value_heads=8, intermediate_size=28672, vocab_size=32000),
              _llama("llama-2-13b", r"llama-2-13b", hidden_size=5120, num_hidden_layers=40, num_attention_heads=40,
                     num_key_value_heads=40, intermediate_size=13824, vocab_size=32000),
              _llama("llama-2-7b", r"llama-2-7b|llama-7b", hidden_size=4096, num_hidden_layers=32,
                     num_attention_heads=32, num_key_value_heads=32, intermediate_size=11008, vocab_size=32000))),
}
# Other names of these families: Axolotl's table (pythia = gpt_neox, cerebras = gpt2) and model_type values.
ALIASES = {"pythia": "gpt_neox", "cerebras": "gpt2", "gemma3_text": "gemma3", "qwen": "qwen2"}


def family_for_model_name(name: str) -> str | None:
    """The family of a hub model name by the hints in it (`meta-llama/Llama-3.2-1B` -> llama), or None."""
    lowered = name.lower()
    return next((f for f, fam in FAMILIES.items() for hint in fam.hub_hints if hint in lowered), None)


def known_config(name: str) -> RealModel | None:
    """The built-in architecture of a well-known hub checkpoint (for offline memory estimates), or None."""
    lowered = name.lower()
    for fam in FAMILIES.values():
        for real in fam.real:
            if re.search(real.pattern, lowered):
                return real
    return None


def known_labels() -> list[str]:
    return sorted(r.label for fam in FAMILIES.values() for r in fam.real)


def family_of_config(config) -> str | None:
    """The ftkit family of a transformers config (its model_type, through ALIASES), or None."""
    model_type = getattr(config, "model_type", None)
    family = ALIASES.get(model_type, model_type)
    return family if family in FAMILIES else None
