"""The chat template saved with a model trained on a prompt format that is not a chat template.

Servers (transformers pipelines, vLLM, TGI, llama.cpp) prompt a model through the tokenizer's chat
template. A model fine-tuned on the alpaca family (or a custom `type:` mapping, or completion text)
never saw its base's chat template: served with it, it answers off-distribution. `serving_template`
writes a Jinja template that renders a user message exactly as training rendered an instruction, so
`tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True)` gives
the same token ids as `ftkit infer` (tests/test_saved_model.py checks every alpaca-family type).

Example (alpaca, a tokenizer that starts with bos):
    [{"role": "user", "content": "Add 2 and 3."}] -> "<bos>Below is an instruction ... ### Instruction:\\n"
    "Add 2 and 3.\\n\\n### Response:\\n"; an assistant message renders as its text + eos (as trained).
Chat formats (`chat_template`, `sharegpt`) and preference data already train through the tokenizer's
template (formats/chat.py writes the recipe's into it): they keep theirs (None here).
"""
from __future__ import annotations

import json

from ftkit.formats import strategy_for
from ftkit.formats.alpaca import InstructStrategy
from ftkit.formats.chat import ChatTemplateStrategy, chat_rows
from ftkit.formats.raw import PretokenizedStrategy
from ftkit.formats.tokenize import uses_bos

SLOT = "\x00ftkit-message\x00"  # stands for the message text while the prompt is cut into before/after


def _literal(text: str) -> str:
    """A Jinja string literal holding `text` exactly (JSON escapes are Jinja's too)."""
    return json.dumps(text, ensure_ascii=False)


def _around(rendered: str) -> tuple[str, str]:
    before, sep, after = rendered.partition(SLOT)
    if not sep or SLOT in after:
        raise ValueError(f"the prompt holds the message {rendered.count(SLOT)} times, not once")
    return before, after


def serving_template(recipe, tokenizer) -> str | None:
    """Jinja that renders the recipe's training prompt, for the saved tokenizer; None = keep the tokenizer's
    (chat formats, preference data, pretokenized rows: there is no prompt text to render)."""
    if chat_rows(recipe) or not recipe.datasets:
        return None
    spec = recipe.datasets[0]
    strategy = strategy_for(spec, recipe, tokenizer)
    if isinstance(strategy, (ChatTemplateStrategy, PretokenizedStrategy)):
        return None
    name = spec.type if isinstance(spec.type, str) else "custom"
    before, after = _around(strategy.prompt_for(SLOT))
    add_bos = uses_bos(tokenizer) if strategy.add_bos is None else strategy.add_bos
    system_format = getattr(getattr(strategy, "fmt", None), "system_format", "")
    if isinstance(strategy, InstructStrategy) and system_format:
        sys_before, sys_after = _around(system_format.format(system=SLOT))
        system = f"{{{{- {_literal(sys_before)} + system + {_literal(sys_after)} -}}}}"
    else:
        refusal = f"this model was trained on the {name} prompt, which has no system message: send user messages"
        system = f"{{{{- raise_exception({_literal(refusal)}) -}}}}"
    eos = " + ".join(["eos_token"] * strategy.eos_count) if strategy.eos_count else "''"
    return "".join([
        f"{{#- ftkit: the {name} prompt this model was trained on; user -> prompt, assistant -> answer + eos -#}}\n",
        "{%- set system = messages[0]['content'] if messages and messages[0]['role'] == 'system' else '' -%}\n",
        "{%- if bos_token -%}{{- bos_token -}}{%- endif -%}\n" if add_bos else "",
        "{%- for message in messages -%}\n",
        "{%- if message['role'] == 'system' -%}\n",
        "{%- if not loop.first -%}{{- raise_exception('a system message must come first') -}}{%- endif -%}\n",
        "{%- elif message['role'] == 'user' -%}\n",
        f"{{%- if system and loop.index0 == 1 -%}}{system}{{%- endif -%}}\n",
        f"{{{{- {_literal(before)} + message['content'] + {_literal(after)} -}}}}\n",
        "{%- elif message['role'] == 'assistant' -%}\n",
        f"{{{{- message['content'] + {eos} -}}}}\n",
        "{%- else -%}\n",
        "{{- raise_exception('only system, user and assistant messages: got ' + message['role']) -}}\n",
        "{%- endif -%}\n",
        "{%- endfor -%}\n",
    ])


def apply(recipe, tokenizer) -> str:
    """Write the serving template into `tokenizer` (to be saved with the model); returns what it did, in words."""
    jinja = serving_template(recipe, tokenizer)
    if jinja is None:
        return ("the tokenizer's chat template is the one training rendered the conversations with"
                if tokenizer.chat_template else "the tokenizer has no chat template")
    name = recipe.datasets[0].type if isinstance(recipe.datasets[0].type, str) else "custom"
    replaced = tokenizer.chat_template is not None and tokenizer.chat_template != jinja
    tokenizer.chat_template = jinja
    return (f"the tokenizer's chat template renders the {name} prompt this model was trained on"
            + (" (it replaces the base model's chat template, which the model never saw in training)" if replaced else ""))
