"""Recipe options that say which model and tokenizer are loaded, and how (ftkit/models/load.py applies them)."""
from __future__ import annotations

from typing import Any, Optional, Union

from ftkit.recipe.base import Strict, option, problem

# attn_implementation values: the exact kernels transformers provides (same attention maths, different speed);
# `xformers` has no transformers backend and runs as sdpa (also exact). Approximate kernels are refused
# by the Axolotl catalogue (ftkit/axolotl/catalogue.yaml).
ATTENTION = ("eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention", "xformers")


class ModelOptions(Strict):
    base_model: str = option(description="Hub id or local path of the base model; `tiny:<family>` builds the offline tiny twin.")
    base_model_config: Optional[str] = option(None, description="Where config.json is read from when it is not next to the weights (default: base_model).")
    cls_model_config: Optional[str] = option(None, description="transformers config class that reads it (e.g. LlamaConfig; default: AutoConfig).")
    revision_of_model: Optional[str] = option(None, description="Hub revision (branch, tag or commit) of base_model, its config and tokenizer.")
    tokenizer_config: Optional[str] = option(None, description="Tokenizer to use instead of base_model's.")
    tokenizer_type: Optional[str] = option(None, description="transformers tokenizer class (e.g. LlamaTokenizer; default: AutoTokenizer).")
    tokenizer_use_fast: bool = option(True, description="Load the fast (Rust) tokenizer where one exists.")
    tokenizer_legacy: Optional[bool] = option(None, description="The tokenizer's `legacy` flag (SentencePiece prefix-space handling); empty = the tokenizer's own.")
    model_type: str = option("AutoModelForCausalLM", description="transformers class used to load the model (an Auto class or e.g. LlamaForCausalLM).")
    trust_remote_code: bool = option(False, description="Allow model code from the hub repo (off: only native transformers architectures).")
    special_tokens: dict[str, Union[str, list[str]]] = option(default_factory=dict, description="Set bos_token/eos_token/pad_token/unk_token, and additional_special_tokens (a list); new ones are added and embeddings resized.")
    overrides_of_model_config: dict[str, Any] = option(default_factory=dict, description="Attributes set on the model config before loading, e.g. {rope_theta: 1000000, output_router_logits: true} (Axolotl: model_config).")
    overrides_of_model_kwargs: dict[str, Any] = option(default_factory=dict, description="Extra from_pretrained arguments for the model (Axolotl: model_kwargs).")
    resize_token_embeddings_to_32x: bool = option(False, description="Round the embedding rows up to a multiple of 32 when resizing (faster matmuls; the extra rows are never input tokens).")
    mean_resizing_embeddings: bool = option(True, description="New token embeddings start at the mean of the old ones (false: random init, Axolotl's default; see README 'Coming from Axolotl').")
    shrink_embeddings: bool = option(False, description="Also resize the embeddings down when the tokenizer has fewer tokens than the model rows.")
    reinit_weights: bool = option(False, description="Start from randomly initialised weights of base_model's architecture (pre-training from scratch; seeded).")
    attn_implementation: Optional[str] = option(None, description=f"Attention kernel: {', '.join(ATTENTION)} (exact kernels: speed only; one that is not installed falls back to sdpa, announced). Default: transformers' choice (sdpa).")
    device_map: Optional[Union[str, dict[str, Any]]] = option(None, description="from_pretrained device_map (auto, sequential, or {module: device}); default: one device per process.")
    max_memory: Optional[dict[Union[int, str], str]] = option(None, description="Memory cap per device for device_map, e.g. {0: 20GiB, cpu: 60GiB}.")


SPECIAL_TOKEN_KEYS = ("bos_token", "eos_token", "pad_token", "unk_token", "additional_special_tokens")


def model_problems(r) -> list:
    """Problems of the model options (None entries for the checks that pass)."""
    unknown = sorted(set(r.special_tokens) - set(SPECIAL_TOKEN_KEYS))
    attn = r.attn_implementation
    return [
        attn is not None and attn not in ATTENTION and "/" not in attn and problem(  # org/name: a hub kernel
            "attn_implementation", f"unknown attention kernel {attn!r}", f"use one of {', '.join(ATTENTION)}"),
        unknown and problem("special_tokens", f"unknown special token key(s) {unknown}", f"use {', '.join(SPECIAL_TOKEN_KEYS)}"),
        r.max_memory and not r.device_map and problem("max_memory", "caps memory per device for device_map, which is not set",
                                                      "add device_map: auto, or remove max_memory"),
    ]
