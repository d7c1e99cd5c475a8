"""Named chat templates (`chat_template: chatml | llama3 | mistral | gemma | qwen | phi3`, and Axolotl's names
`qwen_25 | qwen3 | gemma3 | phi_3`): data, in ftkit/assets/chat_templates.yaml.

Each is the family's Jinja template as its tokenizer ships it, trimmed to text-only chat, plus the special tokens it
needs and its end-of-turn token (the token that must be trained, or the model never stops). Tiny twins ship their
family's template; recipes may override it by name or with Jinja text.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import yaml


class ChatTemplate(NamedTuple):
    name: str
    jinja: str
    special_tokens: tuple[str, ...]  # tokens the template writes that must be single vocabulary entries
    end_of_turn: str | None  # token closing an assistant turn; None = the tokenizer's eos_token


DEFAULT_SYSTEM = "You are a helpful assistant."  # the text default_system_message replaces
TEMPLATES: dict[str, ChatTemplate] = {
    name: ChatTemplate(name, t["jinja"], tuple(t["special_tokens"]), t["end_of_turn"])
    for name, t in yaml.safe_load((Path(__file__).parents[1] / "assets" / "chat_templates.yaml").read_text("utf-8")).items()}
