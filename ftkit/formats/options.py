"""Which `datasets[].type` names exist, which options each takes, and the recipe-time checks."""
from __future__ import annotations

import difflib
import string

from ftkit.errors import Problem
from ftkit.formats.alpaca import FORMATS
from ftkit.formats.chat import CONVERSATIONS, chat_rows, template_option_problem

CHAT_TYPES = ("chat_template", "sharegpt")
RAW_TYPES = ("completion", "input_output", "pretokenized")
TYPE_NAMES = tuple(FORMATS) + CHAT_TYPES + RAW_TYPES
# format options -> the types they apply to (a value other than the default for another type is an error)
OPTION_TYPES = {
    "field": ("completion",),
    "chunk_long_rows": ("completion",),
    **{k: CHAT_TYPES for k in ("field_messages", "message_field_role", "message_field_content", "roles",
                               "roles_to_train", "train_on_eos", "train_on_eot", "message_property_mappings",
                               "message_field_training", "drop_system_message", "field_tools")},
    "chat_template": ("chat_template",),
    **{k: ("sharegpt",) for k in ("conversation", "field_human", "field_model")},
}


def is_type(name) -> bool:
    """A supported `type:` name (the alpaca family includes Axolotl's alpaca:STYLE prompt styles)."""
    return name in TYPE_NAMES


def unknown_type_fix(name: str) -> str:
    guess = difflib.get_close_matches(str(name), TYPE_NAMES, n=1, cutoff=0.3)
    return ((f"did you mean {guess[0]}? " if guess else "") +
            "supported types are listed in data_samples/README.md, or give type: as a mapping (a custom format)")


def _placeholders(text: str) -> set[str]:
    try:
        return {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
    except ValueError:
        return {"<unbalanced braces>"}


def _user_defined_problems(t, key: str) -> list[Problem]:
    out = []
    for name, allowed, required in (("format", {"instruction", "input"}, "instruction"),
                                    ("no_input_format", {"instruction"}, "instruction"),
                                    ("system_format", {"system"}, "system")):
        fields = _placeholders(getattr(t, name))
        if fields - allowed or required not in fields:
            out.append(Problem(f"uses {sorted(fields)} but may use only {sorted(allowed)}", where=f"{key}.{name}",
                               fix=f"write it with {{{required}}}" + (" and optionally {input}" if name == "format" else "")))
    return out


def _type_label(t) -> str:
    return t if isinstance(t, str) else "a custom format" if t is not None else "an empty type (alpaca or tokenized rows)"


def _dataset_problems(d, key: str) -> list[Problem]:
    """The format options of one SFT dataset entry against its type."""
    out = []
    if d.type is not None and not isinstance(d.type, str):
        out += _user_defined_problems(d.type, f"{key}.type")
    elif d.type is not None and not is_type(d.type):
        return [Problem(f"unsupported dataset type {d.type!r}", where=f"{key}.type", fix=unknown_type_fix(d.type))]
    fields = type(d).model_fields
    for option, types in OPTION_TYPES.items():
        if getattr(d, option) != fields[option].get_default() and d.type not in types:
            out.append(Problem(f"applies only to type {' or '.join(types)}, not {_type_label(d.type)}",
                               where=f"{key}.{option}", fix="remove it or change the type"))
    if d.chat_template and (fix := template_option_problem(d.chat_template)):
        out.append(Problem(f"unknown chat template {d.chat_template!r}", where=f"{key}.chat_template", fix=fix))
    if d.conversation and d.conversation not in CONVERSATIONS:
        guess = difflib.get_close_matches(d.conversation, CONVERSATIONS, n=1, cutoff=0.3)
        out.append(Problem(f"conversation {d.conversation!r} is not a chat template ftkit provides", where=f"{key}.conversation",
                           fix=(f"did you mean {guess[0]}? " if guess else "") + f"use one of {', '.join(CONVERSATIONS)}"))
    mapping = d.message_property_mappings or {}
    for prop, legacy in (("role", d.message_field_role), ("content", d.message_field_content)):
        if legacy and prop in mapping and mapping[prop] != legacy:
            out.append(Problem(f"message_field_{prop} is {legacy!r} but message_property_mappings.{prop} is {mapping[prop]!r}",
                               where=f"{key}.message_property_mappings", fix="keep one"))
    return out


def recipe_problems(recipe) -> list[Problem]:
    """Dataset types, format options and chat template names (Problems with key paths)."""
    out = []
    if recipe.chat_template and (fix := template_option_problem(recipe.chat_template)):
        out.append(Problem(f"unknown chat template {recipe.chat_template!r}", where="chat_template", fix=fix))
    if recipe.default_system_message and recipe.chat_template and not _has_default_system(recipe.chat_template):
        out.append(Problem("the chat template has no built-in default system text to replace", where="default_system_message",
                           fix="use a template with one (qwen), or put a system message in the data"))
    for key in ("datasets", "test_datasets"):
        for i, d in enumerate(getattr(recipe, key, [])):
            if d.shards is not None and d.shards_idx >= d.shards:
                out.append(Problem(f"is {d.shards_idx} but there are only {d.shards} shards", where=f"{key}.{i}.shards_idx",
                                   fix=f"use 0 to {d.shards - 1}"))
    if chat_rows(recipe):  # preference/RL/reward-model datasets name their own types (checked by their path)
        return out
    for i, d in enumerate(recipe.datasets):
        out += _dataset_problems(d, f"datasets.{i}")
    if recipe.dataset_shard_num is not None and recipe.dataset_shard_idx >= recipe.dataset_shard_num:
        out.append(Problem(f"is {recipe.dataset_shard_idx} but dataset_shard_num is {recipe.dataset_shard_num}",
                           where="dataset_shard_idx", fix=f"use 0 to {recipe.dataset_shard_num - 1}"))
    return out


def _has_default_system(option: str) -> bool:
    """Whether a named template (or Jinja text) writes the default system text default_system_message replaces;
    tokenizer_default is only known once the tokenizer is loaded (checked there)."""
    from ftkit.formats.chat_templates import DEFAULT_SYSTEM, TEMPLATES

    if option in TEMPLATES:
        return DEFAULT_SYSTEM in TEMPLATES[option].jinja
    return option.startswith("tokenizer_default") or DEFAULT_SYSTEM in option
