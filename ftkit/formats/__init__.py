"""Prompt formats, selected by `datasets[].type`: the alpaca family (alpaca.py, table-driven), conversations
rendered by a chat template (chat.py) or a FastChat template (fastchat.py: sharegpt with `conversation:`),
and template-free formats (raw.py).

A strategy turns one data row into segments `[(text, trainable)]`; `tokenize.py` turns segments into
input_ids / labels / attention_mask, the one place masking happens. Inference builds its prompt from
the same strategy (`prompt_for`), so training and inference prompts agree by design; parity.py proves it.
"""
from __future__ import annotations

from ftkit.errors import FtkitError
from ftkit.formats.alpaca import (
    FORMATS,
    AlpacaStrategy,
    InstructStrategy,
    UserDefinedStrategy,
)
from ftkit.formats.base import DEFAULT_ROLES, PromptStrategy, RowError, Segment, row_errors
from ftkit.formats.chat import ChatTemplateStrategy
from ftkit.formats.fastchat import FastChatStrategy
from ftkit.formats.options import TYPE_NAMES, unknown_type_fix
from ftkit.formats.raw import (
    AutoStrategy,
    CompletionStrategy,
    InputOutputStrategy,
    PretokenizedStrategy,
)

STRATEGIES = TYPE_NAMES  # every supported `type:` name


def strategy_for(spec, recipe, tokenizer, where: str = "datasets.0") -> PromptStrategy:
    """The strategy for one `datasets:` entry (its type and format options) with this tokenizer."""
    t, toi = spec.type, recipe.train_on_inputs
    if t is None:  # no type: tokenized rows pass through (as in Axolotl), text rows are alpaca
        return AutoStrategy(PretokenizedStrategy("pretokenized", toi, vocab_size=len(tokenizer)), InstructStrategy("alpaca", toi))
    if not isinstance(t, str):
        return UserDefinedStrategy(t, toi)
    if t in FORMATS:
        return InstructStrategy(t, toi)
    if t in ("chat_template", "sharegpt"):
        return _chat_strategy(spec, recipe, tokenizer)
    if t == "completion":
        return CompletionStrategy(t, toi, field=spec.field,
                                  chunk=recipe.sequence_len if spec.chunk_long_rows else None)
    if t == "input_output":
        return InputOutputStrategy(t, toi)
    if t == "pretokenized":
        return PretokenizedStrategy(t, toi, vocab_size=len(tokenizer))
    raise FtkitError(f"unsupported dataset type {t!r}", file=recipe.source, where=f"{where}.type",
                     fix=unknown_type_fix(t))


def _share_roles(spec) -> dict | None:
    """roles:, with sharegpt's field_human / field_model added to the user / assistant names."""
    roles = {k: list(v) for k, v in (spec.roles or {}).items()} or None
    if spec.type == "sharegpt" and (spec.field_human or spec.field_model):
        roles = roles or {k: list(v) for k, v in DEFAULT_ROLES.items()}
        roles["user"] = roles.get("user", []) + [spec.field_human] * bool(spec.field_human)
        roles["assistant"] = roles.get("assistant", []) + [spec.field_model] * bool(spec.field_model)
    return roles


def _chat_strategy(spec, recipe, tokenizer) -> PromptStrategy:
    """chat_template, or sharegpt: a FastChat template when `conversation:` names one (as Axolotl's sharegpt
    rendered it), else the tokenizer's chat template."""
    share, toi = spec.type == "sharegpt", recipe.train_on_inputs
    mapping = dict(spec.message_property_mappings or {})
    role_key = mapping.pop("role", None) or spec.message_field_role
    content_key = mapping.pop("content", None) or spec.message_field_content
    if share and spec.conversation:
        return FastChatStrategy(spec.type, spec.conversation, tokenizer, train_on_inputs=toi,
                                field_messages=spec.field_messages or "conversations", role_key=role_key,
                                content_key=content_key, roles=_share_roles(spec),
                                roles_to_train=spec.roles_to_train or ["assistant"],
                                default_system_message=recipe.default_system_message)
    return ChatTemplateStrategy(
        spec.type, tokenizer, train_on_inputs=toi,
        field_messages=spec.field_messages or ("conversations" if share else "messages"),
        message_field_role=role_key or ("from" if share else "role"),
        message_field_content=content_key or ("value" if share else "content"),
        roles=_share_roles(spec), roles_to_train=spec.roles_to_train or ["assistant"],
        train_on_eos=spec.train_on_eos or "turn", train_on_eot=spec.train_on_eot,
        chat_template="tokenizer_default" if share else (spec.chat_template or recipe.chat_template),
        eot_tokens=recipe.eot_tokens, message_properties=mapping,
        message_field_training=spec.message_field_training or "training",
        drop_system_message=spec.drop_system_message, field_tools=spec.field_tools,
        template_kwargs=recipe.chat_template_kwargs, default_system_message=recipe.default_system_message)


def get_strategy(type_name, *, file: str | None = None, where: str | None = None, **options) -> PromptStrategy:
    """A text-format strategy by name (no tokenizer needed); an unknown type names the closest supported one."""
    if not isinstance(type_name, str) or type_name not in FORMATS:
        raise FtkitError(f"unsupported dataset type {type_name!r}", file=file, where=where,
                         fix=unknown_type_fix(type_name))
    return InstructStrategy(type_name, options.get("train_on_inputs", False))


__all__ = ["STRATEGIES", "PromptStrategy", "RowError", "Segment", "get_strategy", "row_errors", "strategy_for",
           "AlpacaStrategy", "ChatTemplateStrategy"]
