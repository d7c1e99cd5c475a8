"""The run's prompt, resolved in one place: the format each dataset is read with, the chat template the tokenizer
carries, where generation stops, the ids a user's message becomes at inference, and the template saved for servers.

`configure_tokenizer` writes the run's template into the tokenizer when it is loaded (models/load.py). A
`Prompt(recipe, tokenizer)` is then built once per step of a run and handed down: data preparation (data/sft.py)
reads rows with `prompt.strategy(...)`, saving writes `prompt.save_template()`, inference sends `prompt.ids(...)`
and stops at `prompt.stop_ids()`. Runs whose rows TRL renders (every `rl:` method and reward models) are
`conversational`: their prompt is the tokenizer's own template, so nothing downstream branches on the method.
The recipe is read duck-typed (datasets, train_on_inputs, chat_template, ...): formats sits below recipe/.
"""
from __future__ import annotations

import json
from os.path import commonprefix
from pathlib import Path
from string import Template

from ftkit.errors import FtkitError
from ftkit.formats.alpaca import FORMATS, InstructStrategy, custom_format
from ftkit.formats.base import PromptStrategy
from ftkit.formats.chat import (FALLBACK, ChatTemplateStrategy, chat_rows, end_of_turn, is_jinja, needed_tokens,
                                resolve_template)
from ftkit.formats.chat_templates import DEFAULT_SYSTEM, TEMPLATES
from ftkit.formats.fastchat import FastChatStrategy, special_tokens
from ftkit.formats.options import unknown_type_fix
from ftkit.formats.preference_types import split_type
from ftkit.formats.raw import AutoStrategy, CompletionStrategy, InputOutputStrategy, PretokenizedStrategy
from ftkit.formats.tokenize import encode_prompt_text, uses_bos
from ftkit.log import log

SLOT = "\x00ftkit-message\x00"  # stands for the message text while a prompt is cut into before/after
SERVING = Template((Path(__file__).parents[1] / "assets" / "serving_template.jinja").read_text(encoding="utf-8"))


# ---------------------------------------------------------------- one dataset's format

def strategy_for(spec, recipe, tokenizer, where: str = "datasets.0") -> PromptStrategy:
    """The strategy for one `datasets:` entry (its type and format options) with this tokenizer."""
    t, toi = spec.type, recipe.train_on_inputs
    if t is None:  # no type: tokenized rows pass through (as in Axolotl), text rows are alpaca
        return AutoStrategy(toi, vocab_size=len(tokenizer))
    if not isinstance(t, str):
        return InstructStrategy("user-defined type", toi, custom_format(t))
    if t in FORMATS:
        return InstructStrategy(t, toi)
    if t == "sharegpt" and spec.conversation:  # a FastChat template, as Axolotl's sharegpt rendered it
        return FastChatStrategy(spec, recipe, tokenizer)
    if t in ("chat_template", "sharegpt"):
        return ChatTemplateStrategy(spec, recipe, tokenizer)
    if t == "completion":
        return CompletionStrategy(t, toi, field=spec.field, chunk=recipe.sequence_len if spec.chunk_long_rows else None)
    if t == "input_output":
        return InputOutputStrategy(t, toi)
    if t == "pretokenized":
        return PretokenizedStrategy(t, toi, vocab_size=len(tokenizer))
    raise FtkitError(f"unsupported dataset type {t!r}", file=recipe.source, where=f"{where}.type",
                     fix=unknown_type_fix(t))


# ---------------------------------------------------------------- conversations as TRL renders them

def user_turn(text: str) -> list[dict]:
    """The messages inference sends for a user's text."""
    return [{"role": "user", "content": text}]


def encode_messages(tokenizer, messages: list[dict], generation_prompt: bool) -> list[int]:
    """Token ids of messages rendered by the tokenizer's chat template (TRL's tokenization of conversational rows)."""
    return list(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                              add_generation_prompt=generation_prompt)["input_ids"])


def common_prefix(a: list[int], b: list[int]) -> int:
    return len(commonprefix([a, b]))


def trained_prompt_ids(tokenizer, prompt: list[dict], answer: str = "A") -> list[int]:
    """The prompt tokens TRL trains on: template(prompt) cut where template(prompt + answer) diverges.

    TRL tokenizes prompt and prompt+answer separately and starts the answer where they differ. With most
    tokenizers that is the end of the prompt; with one that merges the generation prompt's last token into the
    answer (e.g. '\n\n' + 'The' -> '\n', '\nThe'), TRL trains on the shorter prompt, and inference must send it.
    """
    ids = encode_messages(tokenizer, prompt, generation_prompt=True)
    return ids[:common_prefix(ids, encode_messages(tokenizer, prompt + [{"role": "assistant", "content": answer}],
                                                   generation_prompt=False))]


def rendered(tokenizer, messages: list[dict], generation_prompt: bool = False) -> str | None:
    """The text the tokenizer's own chat template writes for `messages`; None when it has no template."""
    if not tokenizer.chat_template:
        return None
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


# ---------------------------------------------------------------- the template the tokenizer carries

def _asked_templates(recipe) -> list[tuple[str, str]]:
    """(key, chat_template option) for each dataset that names a template, in dataset order: an SFT chat_template
    entry's own, or the template a preference type names (chatml.intel). The recipe check refused the rest
    (datasets[].chat_template is read by SFT alone, and only by type chat_template)."""
    out = []
    for i, d in enumerate(recipe.datasets):
        if chat_rows(recipe) and (named := split_type(d.type)[0]) in TEMPLATES:
            out.append((f"datasets.{i}.type", named))
        elif d.chat_template and d.type == "chat_template":
            out.append((f"datasets.{i}.chat_template", d.chat_template))
    return out


def _one_template(recipe, asked: list[tuple[str, str]]) -> str | None:
    """Preference rows are rendered by the tokenizer's template (TRL): every name must agree."""
    names = {o for o in [recipe.chat_template] + [o for _, o in asked] if o and o != "tokenizer_default"}
    if len(names) > 1:
        raise FtkitError(f"the dataset types and chat_template name different templates: {sorted(names)}",
                         file=recipe.source, where="chat_template",
                         fix="use one template: chat_template.SHAPE types follow the recipe's chat_template")
    return names.pop() if names else None


def _add_special_tokens(tokenizer, recipe, asked: list[tuple[str, str]]) -> None:
    """The special tokens the named templates (and sharegpt's FastChat templates) write, as single vocabulary entries."""
    vocab = tokenizer.get_vocab()
    needed = [t for o in [recipe.chat_template] + [o for _, o in asked] for t in needed_tokens(o)]
    needed += [t for d in recipe.datasets if d.type == "sharegpt" for t in special_tokens(d.conversation)]
    missing = [t for t in dict.fromkeys(needed) if t not in vocab]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
        log.info(f"chat template: added special tokens {missing} (embeddings will be resized)")


def configure_tokenizer(tokenizer, recipe) -> None:
    """The one chat-template resolver (SFT and rl:): add the special tokens named templates need and write the
    run's template into the tokenizer.

    The template is the one `chat_template:` names, else one a dataset names (its chat_template, or a
    preference type such as `chatml.intel`), else the tokenizer's own. A sharegpt `conversation:` (a FastChat
    template, formats/fastchat.py) adds the special tokens it writes and leaves the template alone. The tokenizer
    saved with the model then carries the template the data was rendered with, so any server that calls
    apply_chat_template builds the training prompt. With `rl:` every row is rendered by that one template
    (TRL), so two different names are an error and a tokenizer without a template needs `chat_template:`.
    """
    asked = _asked_templates(recipe)
    _add_special_tokens(tokenizer, recipe, asked)
    rl = chat_rows(recipe)  # rl: methods and the reward model: TRL renders every row with this template
    chosen = _one_template(recipe, asked) if rl else (
        recipe.chat_template or next((o for _, o in asked if o != "tokenizer_default"), None))
    if chosen and not (chosen == "tokenizer_default" or (chosen.startswith(FALLBACK) and tokenizer.chat_template)):
        jinja = resolve_template(chosen, tokenizer)
        if jinja != tokenizer.chat_template:
            tokenizer.chat_template = jinja
            label = chosen if not is_jinja(chosen) else "Jinja text from the recipe"
            via = "chat_template" if recipe.chat_template else "a dataset's template"
            log.info(f"{via}: the tokenizer's chat template is now {label} (saved with the model)")
    if rl and not tokenizer.chat_template:
        raise FtkitError("the tokenizer has no chat template", file=recipe.source, where="chat_template",
                         fix=f"set chat_template: to one of {', '.join(TEMPLATES)}")
    for key, option in asked:
        if not rl and recipe.chat_template and option != recipe.chat_template:
            log.warning(f"{key} ({option[:30]}) differs from the recipe's chat_template that the saved tokenizer "
                        "serves with; inference elsewhere will not match this dataset's prompts")
    if message := recipe.default_system_message:  # Axolotl: replace the built-in system text
        if DEFAULT_SYSTEM not in (tokenizer.chat_template or ""):
            raise FtkitError(f"the chat template has no default system text ({DEFAULT_SYSTEM!r}) to replace",
                             where="default_system_message", file=recipe.source,
                             fix="use a template with one (qwen), or give a system message in the data")
        tokenizer.chat_template = tokenizer.chat_template.replace(DEFAULT_SYSTEM, message)
        log.info("default_system_message: the chat template's default system text is replaced")


# ---------------------------------------------------------------- the run's prompt

def _literal(text: str) -> str:
    """A Jinja string literal holding `text` exactly (JSON escapes are Jinja's too)."""
    return json.dumps(text, ensure_ascii=False)


def _around(text: str) -> tuple[str, str]:
    before, sep, after = text.partition(SLOT)
    if not sep or SLOT in after:
        raise ValueError(f"the prompt holds the message {text.count(SLOT)} times, not once")
    return before, after


class Prompt:
    """The prompt of one run (recipe + its configured tokenizer): made once, handed to data, saving and inference."""

    def __init__(self, recipe, tokenizer):
        self.recipe, self.tokenizer = recipe, tokenizer
        self.conversational = chat_rows(recipe)  # TRL renders these rows with the tokenizer's own template
        self._strategies: dict[str, PromptStrategy] = {}

    def strategy(self, spec=None, where: str = "datasets.0") -> PromptStrategy:
        """The format of the dataset at `where` (default: the first, which inference and serving follow)."""
        if where not in self._strategies:
            self._strategies[where] = strategy_for(spec or self.recipe.datasets[0], self.recipe, self.tokenizer, where)
        return self._strategies[where]

    @property
    def template(self) -> str | None:
        """The Jinja the run's conversations are rendered with; None where the format writes its own text."""
        return self.tokenizer.chat_template if self.conversational else getattr(self.strategy(), "jinja", None)

    @property
    def keeps_turns(self) -> bool:
        """Does the prompt hold a conversation? Chat templates do (a chat sends earlier turns along); the alpaca
        family holds one instruction, so each message is answered alone."""
        return self.conversational or isinstance(self.strategy(), ChatTemplateStrategy)

    def ids(self, prompt: str | list[dict]) -> list[int]:
        """Token ids inference feeds for a user's text, or a conversation ending with the user's turn (its last
        message alone where the format holds one instruction): exactly the tokens training put before the answer."""
        messages = user_turn(prompt) if isinstance(prompt, str) else prompt
        if self.conversational:
            return trained_prompt_ids(self.tokenizer, messages)
        s = self.strategy()
        text = s.render(messages, gen=True) if self.keeps_turns else s.prompt_for(messages[-1]["content"])
        return encode_prompt_text(text, self.tokenizer, add_bos=s.add_bos)

    def stop_ids(self) -> list[int]:
        """eos plus the template's end-of-turn token (e.g. <|eot_id|>) when it is one vocabulary entry, so generation
        stops after one turn."""
        ids, template = [self.tokenizer.eos_token_id], self.template
        eot_id = self.tokenizer.convert_tokens_to_ids(end_of_turn(template, self.tokenizer)) if template else None
        if eot_id not in (None, self.tokenizer.unk_token_id):
            ids.append(eot_id)
        return list(dict.fromkeys(ids))

    def serving_template(self) -> str | None:
        """Jinja rendering a user message exactly as training rendered an instruction, for the saved tokenizer
        (servers prompt through apply_chat_template); None = keep the tokenizer's (chat formats and preference
        data train through it already; pretokenized rows have no prompt text)."""
        if self.conversational or not self.recipe.datasets:
            return None
        strategy, spec = self.strategy(), self.recipe.datasets[0]
        if isinstance(strategy, (ChatTemplateStrategy, PretokenizedStrategy)):
            return None
        name = spec.type if isinstance(spec.type, str) else "custom"
        before, after = _around(strategy.prompt_for(SLOT))
        add_bos = uses_bos(self.tokenizer) if strategy.add_bos is None else strategy.add_bos
        # a custom format's system_prompt is inside `before` already: a served system message would repeat it
        system_format = getattr(getattr(strategy, "fmt", None), "system_format", "") if name != "custom" else ""
        if system_format:
            sys_before, sys_after = _around(system_format.format(system=SLOT))
            system = f"{{{{- {_literal(sys_before)} + system + {_literal(sys_after)} -}}}}"
        else:
            refusal = f"this model was trained on the {name} prompt, which has no system message: send user messages"
            system = f"{{{{- raise_exception({_literal(refusal)}) -}}}}"
        eos = " + ".join(["eos_token"] * strategy.eos_count) or "''"
        bos = "{%- if bos_token -%}{{- bos_token -}}{%- endif -%}\n" if add_bos else ""
        return SERVING.substitute(name=name, bos=bos, system=system, before=_literal(before), after=_literal(after),
                                  eos=eos)

    def save_template(self) -> str:
        """Write the serving template into the tokenizer (saved with the model); returns what it did, in words."""
        jinja = self.serving_template()
        if jinja is None:
            return ("the tokenizer's chat template is the one training rendered the conversations with"
                    if self.tokenizer.chat_template else "the tokenizer has no chat template")
        name = self.recipe.datasets[0].type if isinstance(self.recipe.datasets[0].type, str) else "custom"
        replaced = self.tokenizer.chat_template is not None and self.tokenizer.chat_template != jinja
        self.tokenizer.chat_template = jinja
        return (f"the tokenizer's chat template renders the {name} prompt this model was trained on"
                + (" (it replaces the base model's chat template, which the model never saw in training)"
                   if replaced else ""))
