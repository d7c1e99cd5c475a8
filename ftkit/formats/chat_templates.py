"""Named chat templates (`chat_template: chatml | llama3 | mistral | gemma | qwen | phi3`, and Axolotl's names
`qwen_25 | qwen3 | gemma3 | phi_3`).

Each is the family's Jinja template as its tokenizer ships it, trimmed to text-only chat, plus the
special tokens it needs and its end-of-turn token (the token that must be trained, or the model never
stops). Tiny twins ship their family's template; recipes may override it by name or with Jinja text.
The templates under Axolotl's names render text-only conversations exactly as Axolotl's do (written here
from their output, e.g. phi_3 opens the assistant turn at the end of each user turn).
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

DEFAULT_SYSTEM = "You are a helpful assistant."  # the text default_system_message replaces
QWEN_25 = (
    "{% if messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}"
    "{% endif %}" + CHATML
)
# Qwen3, text only: reasoning (`reasoning_content`, or a <think>...</think> prefix of the content) is written only for
# assistant turns after the last user turn; the conversation's final assistant turn always gets a (possibly empty)
# think block. `real_last_index` names that final turn when a prefix of the conversation is rendered.
QWEN3 = (
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}{%- endif %}"
    "{%- set final = real_last_index if real_last_index is defined and real_last_index is not none else messages|length - 1 %}"
    "{%- set ns = namespace(query=messages|length - 1, searching=true) %}"
    "{%- for m in messages[::-1] %}{%- set c = m['content'] if m['content'] is string else '' %}"
    "{%- if ns.searching and m['role'] == 'user' and not (c.startswith('<tool_response>') and c.endswith('</tool_response>')) %}"
    "{%- set ns.searching = false %}{%- set ns.query = messages|length - 1 - loop.index0 %}{%- endif %}{%- endfor %}"
    "{%- for m in messages %}"
    "{%- if m['role'] == 'user' or (m['role'] == 'system' and not loop.first) %}"
    "{{- '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
    "{%- elif m['role'] == 'assistant' %}"
    "{%- set content = m['content'] if m['content'] is string else '' %}"
    "{%- set reasoning = m['reasoning_content'] if m['reasoning_content'] is string else '' %}"
    "{%- if m['reasoning_content'] is not string and '</think>' in content %}"
    "{%- set reasoning = content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') %}"
    "{%- set content = content.split('</think>')[-1].lstrip('\n') %}{%- endif %}"
    "{%- if loop.index0 > ns.query and (loop.index0 == final or reasoning) %}"
    "{{- '<|im_start|>assistant\n<think>\n' + reasoning.strip('\n') + '\n</think>\n\n' + content.lstrip('\n') }}"
    "{%- else %}{{- '<|im_start|>assistant\n' + content }}{%- endif %}{{- '<|im_end|>\n' }}"
    "{%- elif m['role'] == 'tool' %}"
    "{%- if loop.first or messages[loop.index0 - 1]['role'] != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}"
    "{{- '\n<tool_response>\n' + m['content'] + '\n</tool_response>' }}"
    "{%- if loop.last or messages[loop.index0 + 1]['role'] != 'tool' %}{{- '<|im_end|>\n' }}{%- endif %}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\n\n</think>\n\n' }}"
    "{%- else %}{{- '<think>\n\n' }}{%- endif %}{%- endif %}"
)
# Gemma 3: a system message becomes the start of the first user turn; roles must alternate.
GEMMA3 = (
    "{{ bos_token }}{%- if messages[0]['role'] == 'system' -%}"
    "{%- set prefix = messages[0]['content'] + '\n\n' -%}{%- set turns = messages[1:] -%}"
    "{%- else -%}{%- set prefix = '' -%}{%- set turns = messages -%}{%- endif -%}"
    "{%- for message in turns -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{%- endif -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' + (prefix if loop.first else '') }}"
    "{{ message['content'] | trim }}{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)
# Phi-3 as Axolotl writes it: bos first, and each user turn ends by opening the assistant turn.
PHI_3 = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ '<|system|>\n' + message['content'] + '<|end|>\n' }}"
    "{% elif message['role'] == 'user' %}{{ '<|user|>\n' + message['content'] + '<|end|>\n<|assistant|>\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + '<|end|>\n' }}{% endif %}{% endfor %}"
)

TEMPLATES: dict[str, ChatTemplate] = {
    "chatml": ChatTemplate("chatml", CHATML, ("<|im_start|>", "<|im_end|>"), "<|im_end|>"),
    "qwen": ChatTemplate("qwen", QWEN, ("<|im_start|>", "<|im_end|>"), "<|im_end|>"),
    "llama3": ChatTemplate("llama3", LLAMA3, ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"), "<|eot_id|>"),
    "mistral": ChatTemplate("mistral", MISTRAL, ("[INST]", "[/INST]"), None),
    "gemma": ChatTemplate("gemma", GEMMA, ("<start_of_turn>", "<end_of_turn>"), "<end_of_turn>"),
    "phi3": ChatTemplate("phi3", PHI3, ("<|user|>", "<|assistant|>", "<|system|>", "<|end|>"), "<|end|>"),
    "qwen_25": ChatTemplate("qwen_25", QWEN_25, ("<|im_start|>", "<|im_end|>"), "<|im_end|>"),
    "qwen3": ChatTemplate("qwen3", QWEN3, ("<|im_start|>", "<|im_end|>"), "<|im_end|>"),
    "gemma3": ChatTemplate("gemma3", GEMMA3, ("<start_of_turn>", "<end_of_turn>"), "<end_of_turn>"),
    "phi_3": ChatTemplate("phi_3", PHI_3, ("<|user|>", "<|assistant|>", "<|system|>", "<|end|>"), "<|end|>"),
}
