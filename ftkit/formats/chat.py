"""Conversations (`chat_template`, `sharegpt`): rendered by `tokenizer.apply_chat_template`, masked per turn.

Trained spans are found by rendering prefixes of the conversation and diffing them: message i spans
render(messages[:i+1]) minus render(messages[:i]); for an assistant turn its header is what
render(messages[:i], add_generation_prompt=True) adds, so the prompt text before a trained turn is
exactly the generation prompt that inference renders. Inside a turn the message content is trained
(for roles_to_train), and the end-of-turn token separately, following train_on_eos.

Example (llama3 template, roles_to_train [assistant], train_on_eos turn):
    [{user: "Hi"}, {assistant: "Yo"}] -> "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\\n\\nHi<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\\n\\n" (all masked) + "Yo" (trained) + "<|eot_id|>" (trained)
"""
from __future__ import annotations

import difflib
import json

from ftkit.errors import FtkitError
from ftkit.formats.base import PromptStrategy, RowError, Segment, chat_roles
from ftkit.formats.chat_templates import DEFAULT_SYSTEM, TEMPLATES

FALLBACK = "tokenizer_default_fallback_"


def is_jinja(text: str) -> bool:
    return "{{" in text or "{%" in text


def template_option_problem(value: str) -> str | None:
    """None when `chat_template:` names something ftkit knows; else the fix text."""
    if value == "tokenizer_default" or is_jinja(value) or value.removeprefix(FALLBACK) in TEMPLATES:
        return None
    guess = difflib.get_close_matches(value, list(TEMPLATES) + ["tokenizer_default"], n=1, cutoff=0.4)
    return ((f"did you mean {guess[0]}? " if guess else "") +
            f"use tokenizer_default, one of {', '.join(TEMPLATES)}, {FALLBACK}NAME, or Jinja text")


def resolve_template(option: str | None, tokenizer) -> str:
    """The Jinja a chat_template option value names, against this tokenizer."""
    option = option or "tokenizer_default"
    if option.startswith(FALLBACK):
        option = "tokenizer_default" if tokenizer.chat_template else option[len(FALLBACK):]
    if option == "tokenizer_default":
        jinja = tokenizer.chat_template
        if not jinja:
            raise FtkitError("the tokenizer has no chat template", where="chat_template",
                             fix="set chat_template: chatml (or llama3, mistral, gemma, qwen, phi3) in the recipe")
    elif option in TEMPLATES:
        jinja = TEMPLATES[option].jinja
    else:
        jinja = option
    return jinja


def end_of_turn(jinja: str | None, tokenizer) -> str:
    """The token closing an assistant turn in this template (<|eot_id|>, <|im_end|>, ...); eos if it has none.

    A named template says it; for other Jinja text, the first known end-of-turn token the text writes.
    """
    named = next((t for t in TEMPLATES.values() if t.jinja == jinja), None)
    if named is not None:
        return named.end_of_turn or tokenizer.eos_token
    eot = next((t.end_of_turn for t in TEMPLATES.values() if t.end_of_turn and t.end_of_turn in (jinja or "")), None)
    return eot or tokenizer.eos_token


def needed_tokens(option: str | None) -> tuple[str, ...]:
    """Special tokens a named template writes (so they must be single vocabulary entries)."""
    name = (option or "").removeprefix(FALLBACK)
    return TEMPLATES[name].special_tokens if name in TEMPLATES else ()


class ChatTemplateStrategy(PromptStrategy):
    """Rows holding a message list -> segments with exactly the chat template's text.

    Which tokens are trained: each trained turn's content (roles_to_train, a per-message training flag, or
    every turn with train_on_inputs), content whitespace included where the template writes it verbatim
    (chatml: "ok\\n" trains "ok\\n"); a content starting with a space is a trained segment of its own, so it is
    tokenized as the model generates it after the header. After each turn the end-of-turn token (eot_tokens,
    default the template's own, e.g. <|eot_id|>) follows train_on_eot (default: train_on_eos), and an eos the
    template writes separately follows train_on_eos: `turn` trains those after trained turns, so with
    train_on_inputs (every turn trained) every turn's end-of-turn token is trained; headers and bos never are.
    """

    add_bos = False  # templates write bos themselves (apply_chat_template does not add it either)
    eos_count = 0  # the end-of-turn tokens come from the template

    def __init__(self, spec, recipe, tokenizer):
        """`spec`: the datasets entry (chat_template, or sharegpt without `conversation:`), read duck-typed."""
        super().__init__(spec.type, False)  # train_on_inputs is applied per turn below, never to headers
        share = spec.type == "sharegpt"
        self.train_all, self.tokenizer = recipe.train_on_inputs, tokenizer
        self.properties = dict(spec.message_property_mappings or {})  # template property -> key in the data
        self.role_key = self.properties.pop("role", None) or spec.message_field_role or ("from" if share else "role")
        self.content_key = (self.properties.pop("content", None) or spec.message_field_content
                            or ("value" if share else "content"))
        self.field = spec.field_messages or ("conversations" if share else "messages")
        self.role_of, self.roles_to_train = chat_roles(spec)
        self.train_on_eos = spec.train_on_eos or "turn"
        self.train_on_eot = spec.train_on_eot or self.train_on_eos
        self.training_key = spec.message_field_training or "training"
        self.drop_system, self.field_tools = spec.drop_system_message, spec.field_tools
        self.template_kwargs = dict(recipe.chat_template_kwargs or {})
        option = "tokenizer_default" if share else (spec.chat_template or recipe.chat_template)
        self.jinja = resolve_template(option, tokenizer)
        own_eot = end_of_turn(self.jinja, tokenizer)  # before default_system_message rewrites a named template
        if recipe.default_system_message:
            self.jinja = self.jinja.replace(DEFAULT_SYSTEM, recipe.default_system_message)
        self.eots = list(recipe.eot_tokens or [own_eot])
        not_one = [t for t in (recipe.eot_tokens or []) if t not in tokenizer.get_vocab()]
        if not_one:
            raise FtkitError(f"eot_tokens {not_one} are not single tokens of the vocabulary", where="eot_tokens",
                             fix="add them with special_tokens.additional_special_tokens (or tokens:), or list the "
                                 "template's own end-of-turn token")
        eos = tokenizer.eos_token
        self.eos = eos if eos and eos not in self.eots and eos in self.jinja else None  # an eos written besides the eot

    # ------------------------------------------------------------ rows -> messages
    def messages(self, row: dict) -> list[dict]:
        msgs = row.get(self.field)
        if isinstance(msgs, str):  # a JSON-encoded message list
            try:
                msgs = json.loads(msgs)
            except ValueError:
                pass
        if self.field not in row:  # the rows keep their messages under another name: say which
            lists = [k for k, v in row.items() if isinstance(v, list) and v and isinstance(v[0], dict)]
            raise RowError(self.field, f"the row has no field {self.field!r} (its fields: {', '.join(map(str, row))})",
                           f"set field_messages: {lists[0]} in this datasets entry" if lists else
                           f"store the conversation as a list of messages under {self.field!r}, or name its field "
                           "with field_messages")
        if not isinstance(msgs, list) or not msgs:
            got = "missing" if msgs is None else f"{type(msgs).__name__} {str(msgs)[:40]!r}"
            raise RowError(self.field, f"field {self.field!r} must be a non-empty list of messages, got {got}",
                           f'write {self.field} as [{{"{self.role_key}": "user", "{self.content_key}": "..."}}, ...]')
        out = []
        for i, m in enumerate(msgs):
            where = f"{self.field}[{i}]"
            if not isinstance(m, dict):
                raise RowError(where, f"a message must be a mapping, got {type(m).__name__}",
                               f'write it as {{"{self.role_key}": ..., "{self.content_key}": ...}}')
            role, content = m.get(self.role_key), m.get(self.content_key)
            if role not in self.role_of:
                known = ", ".join(sorted(self.role_of))
                raise RowError(f"{where}.{self.role_key}", f"unknown role {role!r}",
                               f"use one of {known}, or map it: roles: {{assistant: [{role}]}}")
            if not isinstance(content, str):
                raise RowError(f"{where}.{self.content_key}",
                               f"message content must be text, got {type(content).__name__}", "store it as a string")
            role = self.role_of[role]
            flag = m.get(self.training_key)
            train = flag if isinstance(flag, bool) else (self.train_all or role in self.roles_to_train)
            extra = {prop: m[key] for prop, key in self.properties.items() if m.get(key) is not None}
            out.append({"role": role, "content": content, "train": train, "extra": extra})
        system = row.get("system")  # Axolotl: a `system` column opens the conversation when it has no system turn
        if isinstance(system, str) and system and out[0]["role"] != "system":
            out.insert(0, {"role": "system", "content": system, "train": self.train_all or "system" in self.roles_to_train,
                           "extra": {}})
        if self.drop_system and out[0]["role"] == "system":
            out = out[1:]
        return out

    def _tools_of(self, row: dict):
        key = self.field_tools or "tools"
        tools = row.get(key)
        if isinstance(tools, str):
            try:
                tools = json.loads(tools)
            except ValueError:
                raise RowError(key, "tools must be a list of tool definitions (JSON)", "store tools as a list") from None
        return tools or None

    def render(self, msgs: list[dict], gen: bool = False, **kwargs) -> str:
        """The template's text; `kwargs` (tools, real_last_index) join chat_template_kwargs."""
        if not msgs:
            return ""
        try:
            messages = [{"role": m["role"], "content": m["content"], **m.get("extra", {})} for m in msgs]
            return self.tokenizer.apply_chat_template(messages, chat_template=self.jinja, tokenize=False,
                                                      add_generation_prompt=gen, **{**self.template_kwargs, **kwargs})
        except Exception as e:  # jinja raise_exception() and template errors: report on the row
            raise RowError(self.field, f"the chat template cannot render this conversation ({e})",
                           "check the role order the template expects, or choose another chat_template") from None

    # ------------------------------------------------------------ messages -> spans
    def _content_span(self, cur: str, content: str, start: int) -> tuple[int, int] | None:
        """Where a message's content sits in the render: as written (edge whitespace included, e.g. a verbatim
        template), else stripped (templates that trim); searched from the end, so a message equal to the role
        name is not found in its own header."""
        for text in dict.fromkeys((content, content.rstrip(), content.lstrip(), content.strip())):
            if not text:
                return start, start
            c = cur.rfind(text, start)
            if c >= 0:
                return c, c + len(text)
        return None

    def _end_of_turn(self, tail: str) -> tuple[int, str, str] | None:
        """(offset, token, policy) of the first end-of-turn token after a turn (only whitespace before it)."""
        found = [(tail.find(t), t, self.train_on_eot) for t in self.eots if t and tail.find(t) >= 0]
        if self.eos and tail.find(self.eos) >= 0:
            found.append((tail.find(self.eos), self.eos, self.train_on_eos))
        found = [f for f in found if not tail[:f[0]].strip()]
        return min(found) if found else None

    def spans(self, msgs: list[dict], tools=None) -> tuple[str, list[tuple[int, int, bool]]]:
        """(full text, [(start, end, trained)]) for every message content and end-of-turn token. Every prefix is
        rendered knowing the conversation's last index (templates that treat the final turn apart, qwen3, read it)."""
        kwargs = {"real_last_index": len(msgs) - 1, **({"tools": tools} if tools else {})}
        prev, spans, eots = "", [], []
        for i, m in enumerate(msgs):
            cur = self.render(msgs[:i + 1], **kwargs)
            if not cur.startswith(prev):
                raise RowError(self.field, f"the chat template renders turns before message {i} differently once "
                               "it is added, so turn boundaries cannot be found",
                               "use a template whose rendering grows turn by turn (chatml, llama3, ...)")
            start = len(prev)
            if m["role"] == "assistant":
                gen = self.render(msgs[:i], gen=True, **kwargs)
                if cur.startswith(gen) and len(gen) > start:
                    start = len(gen)
            found = self._content_span(cur, m["content"], start)
            if found is None and not m["train"]:  # e.g. gemma3 writes the system text into the first user turn
                prev = cur
                continue
            if found is None:
                raise RowError(f"{self.field}[{i}]", "the chat template changes this message's text",
                               "use a template that writes message content verbatim")
            c, end = found
            spans.append((c, end, m["train"]))
            eot = self._end_of_turn(cur[end:])
            if eot is not None:
                e, token, policy = eot
                eots.append((end + e, end + e + len(token), m["train"], policy))
            prev = cur
        last_trained = max((k for k, (_, _, trained, _) in enumerate(eots) if trained), default=len(eots) - 1)
        for k, (s, e, trained, policy) in enumerate(eots):
            keep = {"all": True, "turn": trained, "none": False, "last": k == last_trained}[policy]
            spans.append((s, e, keep))
        return prev, sorted(spans)

    def segments(self, row: dict) -> list[Segment]:
        tools = self._tools_of(row)
        full, spans = self.spans(self.messages(row), tools)
        out, pos = [], 0
        for s, e, trained in spans:
            out += [Segment(full[pos:s], False), Segment(full[s:e], trained)]
            pos = e
        out.append(Segment(full[pos:], False))
        return out

    # ------------------------------------------------------------ inference
    def prompt_messages(self, row: dict) -> list[dict] | None:
        """Messages before the first trained assistant-side turn (what a user sends), or None."""
        msgs = self.messages(row)
        first = next((i for i, m in enumerate(msgs) if m["role"] in self.roles_to_train and m["train"]), None)
        return None if first is None else [{"role": m["role"], "content": m["content"]} for m in msgs[:first]]

    def prompt_text(self, row: dict) -> str:
        msgs = self.prompt_messages(row)
        return "" if msgs is None else self.render(msgs, gen=True)

    def prompt_for(self, text: str) -> str:
        return self.render([{"role": "user", "content": text}], gen=True)

    def served_ids(self, msgs: list[dict]) -> list[int]:
        """What a server's apply_chat_template(..., add_generation_prompt=True) feeds for these messages."""
        out = self.tokenizer.apply_chat_template(msgs, chat_template=self.jinja, add_generation_prompt=True,
                                                 tokenize=True)
        return list(out["input_ids"] if hasattr(out, "keys") else out)


def chat_rows(recipe) -> bool:
    """Rows TRL renders with the tokenizer's chat template (every rl: method and reward_model: true), not SFT
    rows that ftkit's prompt formats tokenize."""
    return bool(getattr(recipe, "rl", None) or getattr(recipe, "reward_model", False))
