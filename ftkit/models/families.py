"""The model families ftkit knows: what every part of ftkit needs to know about an architecture.

The table is data (ftkit/assets/families.yaml, one entry per family); this module reads it into typed entries.
Read by the tiny twins (toy sizes, special tokens, chat template), adapters (default LoRA targets where
peft has none), `ftkit memory` (public config.json values of well-known checkpoints, for offline
estimates), the cookbook (which twin tests a recipe or hub model) and the notebook generator.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml


@dataclass(frozen=True)
class TinySpec:
    """Everything that defines one family's twin (hashed into its cache key)."""

    config_class: str  # transformers config class name, e.g. "LlamaConfig"
    sizes: dict  # tiny dimensions, in that config's own argument names
    bos: str | None
    eos: str
    pad: str | None
    template: str | None = None  # ftkit chat template name (ftkit/assets/chat_templates.yaml)
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


_TABLE = yaml.safe_load((Path(__file__).resolve().parents[1] / "assets" / "families.yaml").read_text(encoding="utf-8"))
FAMILIES: dict[str, Family] = {
    name: Family(TinySpec(**f["twin"]), tuple(f["lora_targets"]), tuple(f["hub_hints"]),
                 tuple(RealModel(**r) for r in f["real"]))
    for name, f in _TABLE["families"].items()}
ALIASES: dict[str, str] = _TABLE["aliases"]


def family_for_model_name(name: str) -> str | None:
    """The family of a hub model name by the hints in it (`meta-llama/Llama-3.2-1B` -> llama), or None."""
    return next((f for f, fam in FAMILIES.items() for hint in fam.hub_hints if hint in name.lower()), None)


def known_config(name: str) -> RealModel | None:
    """The built-in architecture of a well-known hub checkpoint (for offline memory estimates), or None."""
    return next((real for fam in FAMILIES.values() for real in fam.real if re.search(real.pattern, name.lower())), None)


def known_labels() -> list[str]:
    return sorted(r.label for fam in FAMILIES.values() for r in fam.real)
