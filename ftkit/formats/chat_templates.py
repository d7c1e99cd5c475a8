"""Named chat templates (`chat_template: chatml | llama3 | mistral | gemma | qwen | phi3`).

Each is the family's Jinja template as its tokenizer ships it, trimmed to text-only chat, plus the
special tokens it needs and its end-of-turn token (the token that must be trained, or the model never
stops). Tiny twins ship their family's template; recipes may override it by name or with Jinja text.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChatTemplate:
    name: str
    jinja: str
    special_tokens: tuple[str, ...]  # tokens the template writes that must be single vocabulary entries
    end_of_turn: str | None  # token closing an assistant turn; None = the tokenizer's eos_token


CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
QWEN = (
    "{% if messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}" + CHATML
)
LLAMA3 = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
MISTRAL = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% else %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}"
)
GEMMA = (
    "{{ bos_token }}{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)
PHI3 = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

TEMPLATES: dict[str, ChatTemplate] = {
    "chatml": ChatTemplate("chatml", CHATML, ("<|im_start|>", "<|im_end|>"), "<|im_end|>"),
    "qwen": ChatTemplate("qwen", QWEN, ("<|im_start|>", "<|im_end|>"), "<|im_end|>"),
    "llama3": ChatTemplate("llama3", LLAMA3, ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"), "<|eot_id|>"),
    "mistral": ChatTemplate("mistral", MISTRAL, ("[INST]", "[/INST]"), None),
    "gemma": ChatTemplate("gemma", GEMMA, ("<start_of_turn>", "<end_of_turn>"), "<end_of_turn>"),
    "phi3": ChatTemplate("phi3", PHI3, ("<|user|>", "<|assistant|>", "<|system|>", "<|end|>"), "<|end|>"),
}


def get_template(name: str) -> ChatTemplate:
    """A named template; raises FtkitError listing the names for an unknown one."""
    from ftkit.errors import FtkitError

    if name not in TEMPLATES:
        raise FtkitError(f"unknown chat template {name!r}", where="chat_template",
                         fix=f"use one of {', '.join(TEMPLATES)}, tokenizer_default, or a Jinja string")
    return TEMPLATES[name]
