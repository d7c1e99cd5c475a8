"""sharegpt rows with `conversation:` (vicuna_v1.1, alpaca, llama-2, chatml, ...): rendered as FastChat's
Conversation.get_prompt wrote them, which is what Axolotl's sharegpt type trained on (2023-2024).

The templates are data (ftkit/assets/fastchat_templates.json: separator style, roles, system text and
separators, from FastChat at the commit Axolotl pinned). `_pieces` writes a conversation exactly as
get_prompt did, each piece tagged with the message it carries. Masking follows Axolotl's sharegpt: a role
header is masked; the rest of a trained turn (the whitespace after the header, the message, its separator)
is trained, then eos, unless the separator already holds eos (it is then cut just after it). Two
deliberate differences: the tokenizer's own bos replaces the literal bos text FastChat writes for llama-3
and gemma, and gemma refuses a system message as Axolotl did (FastChat dropped it silently).

Example (vicuna_v1.1, [human "Hi", gpt "Yo"]):
    "A chat between ... questions. USER: Hi ASSISTANT:" (masked) + " Yo</s>" (trained)
"""
from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from ftkit.formats.base import PromptStrategy, RowError, Segment, chat_roles

TABLE = Path(__file__).resolve().parents[1] / "assets" / "fastchat_templates.json"
DEFAULT_SYSTEM_REPLACEABLE = ("chatml", "llama3")  # Axolotl registered these with default_system_message


@cache
def templates() -> dict[str, dict]:
    return {k: v for k, v in json.loads(TABLE.read_text(encoding="utf-8")).items() if not k.startswith("_")}


def special_tokens(name: str | None) -> list[str]:
    return list(templates().get(name or "", {}).get("special_tokens", ()))


def _pieces(t: dict, system: str, msgs: list[tuple[str, str]]) -> list[tuple[str, int | None]]:
    """get_prompt's text for (role name, message) pairs, as (text, index of the message it carries or None)."""
    style, sep, sep2 = t["style"], t["sep"], t.get("sep2")
    head = t.get("system_template", "{system_message}").format(system_message=system)
    out: list[tuple[str, int | None]] = []
    for i, (role, msg) in enumerate(msgs):
        end = [sep, sep2][i % 2] if sep2 is not None else sep
        if style == "LLAMA2":  # the tag is positional; the first message follows the [INST] opening directly
            tag = t["roles"][i % 2]
            out += [(msg + " ", i)] if msg and i == 0 else [(tag + " ", None), (msg + end, i)] if msg else [(tag, None)]
            continue
        header, body = {"ADD_COLON_TWO": (role + ": ", msg + end), "FALCON_CHAT": (role + ": ", msg + end),
                         "NO_COLON_SINGLE": (role, msg + end), "ADD_NEW_LINE_SINGLE": (role + "\n", msg + end),
                         "CHATML": (role + "\n", msg + end + "\n"), "GEMMA": (f"<start_of_turn>{role}\n", msg + end),
                         "LLAMA3": (f"<|start_header_id|>{role}<|end_header_id|>\n\n", msg.strip() + "<|eot_id|>")}[style]
        if not msg:  # FastChat's generation prompt: the header alone (`role:` without the space, colon styles)
            header = header.rstrip(" ") if style in ("ADD_COLON_TWO", "FALCON_CHAT") else header
        out += [(header, None)] + ([(body, i)] if msg else [])
    opening = {"ADD_COLON_TWO": head + sep, "NO_COLON_SINGLE": head, "LLAMA3": head if system else "",
               "ADD_NEW_LINE_SINGLE": head + sep if head else "", "CHATML": head + sep + "\n" if head else "",
               "FALCON_CHAT": head + sep if system else "", "LLAMA2": head if system else "[INST] ", "GEMMA": ""}[style]
    return [(opening, None)] + out


class FastChatStrategy(PromptStrategy):
    """sharegpt rows {conversations: [{from, value}, ...]} -> FastChat's rendering of `conversation`.

    Role names go through the role mapping (human/user -> the template's first role, gpt/assistant/model ->
    its second, field_human/field_model and roles: add names); a first `system` message replaces the
    template's system text; a message with `weight: 0` is not trained (Axolotl's per-message switch).
    """

    add_bos = None  # as Axolotl tokenized the opening piece: with the tokenizer's bos
    eos_count = 0  # each trained turn closes with its own stop (see the module docstring)

    def __init__(self, spec, recipe, tokenizer):
        super().__init__(spec.type, recipe.train_on_inputs)
        self.conversation, self.t = spec.conversation, templates()[spec.conversation]  # the recipe checked the name
        self.eos = tokenizer.eos_token
        mapping = spec.message_property_mappings or {}
        self.field = spec.field_messages or "conversations"
        self.role_key = mapping.get("role") or spec.message_field_role
        self.content_key = mapping.get("content") or spec.message_field_content
        self.role_of, self.roles_to_train = chat_roles(spec, renamed={"input": "user", "output": "assistant"})
        self.system = self.t.get("system_message", "")
        if recipe.default_system_message and spec.conversation in DEFAULT_SYSTEM_REPLACEABLE:
            self.system = recipe.default_system_message

    def messages(self, row: dict) -> tuple[str, list[tuple[str, str, bool]]]:
        """(system text, [(user|assistant, text, trained)]) of one row."""
        msgs = row.get(self.field)
        if not isinstance(msgs, list) or not msgs:
            raise RowError(self.field, f"field {self.field!r} must be a non-empty list of messages",
                           f'write {self.field} as [{{"from": "human", "value": "..."}}, {{"from": "gpt", "value": "..."}}]')
        system, out = self.system, []
        for i, m in enumerate(msgs):
            where = f"{self.field}[{i}]"
            if not isinstance(m, dict):
                raise RowError(where, f"a message must be a mapping, got {type(m).__name__}", 'write {"from": ..., "value": ...}')
            role_key = self.role_key or ("from" if "from" in m else "role")
            content_key = self.content_key or next((k for k in ("value", "text", "content") if k in m), "value")
            name, text = m.get(role_key), m.get(content_key)
            role = self.role_of.get(name) if isinstance(name, str) else None
            if not isinstance(text, str):
                raise RowError(f"{where}.{content_key}", f"message text must be text, got {type(text).__name__}",
                               "store it as a string")
            if role == "system" and i == 0:
                system = text
            elif role not in ("user", "assistant"):
                known = ", ".join(sorted(k for k, v in self.role_of.items() if v in ("user", "assistant")))
                raise RowError(f"{where}.{role_key}", f"role {name!r} has no place in the FastChat "
                               f"{self.conversation} template (a system message may only come first)",
                               f"use {known}, or map it: roles: {{assistant: [{name}]}}")
            else:
                out.append((role, text, role in self.roles_to_train and m.get("weight", 1) != 0))
        return system, out

    def _segments(self, system: str, msgs: list[tuple[str, str, bool]]) -> list[Segment]:
        if self.t["style"] == "GEMMA" and system:
            raise RowError(self.field, "the FastChat gemma template has no system message", "drop the system message")
        names = {"user": self.t["roles"][0], "assistant": self.t["roles"][1]}
        out: list[Segment] = []
        for text, i in _pieces(self.t, system, [(names[role], text) for role, text, _ in msgs]):
            if i is None or not msgs[i][2]:
                out.append(Segment(text, False))
                continue
            prev = out.pop().text if out and not out[-1].trainable else ""  # header: the whitespace after it is trained
            out += [Segment(prev.rstrip(), False)] if prev.rstrip() else []
            out += self._trained(prev[len(prev.rstrip()):] + text, msgs[i][0] == "assistant")
        return out

    def _trained(self, text: str, answer: bool) -> list[Segment]:
        """A trained turn: an answer stops at eos (cut after it when its separator holds one, else added)."""
        if not answer or not self.eos:
            return [Segment(text, True)]
        cut = text.find(self.eos)
        if cut < 0:
            return [Segment(text + self.eos, True)]
        return [Segment(text[:cut + len(self.eos)], True), Segment(text[cut + len(self.eos):], False)]

    def segments(self, row: dict) -> list[Segment]:
        return self._segments(*self.messages(row))

    def prompt_for(self, text: str) -> str:
        segs = self._segments(self.system, [("user", text, False), ("assistant", "x", True)])
        return "".join(s.text for s in segs[:next(i for i, s in enumerate(segs) if s.trainable)])
