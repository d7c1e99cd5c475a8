"""Which `datasets[].type` names exist, which options each takes, and the recipe-time checks."""
from __future__ import annotations

import difflib
import string

from ftkit.formats.alpaca import FORMATS
from ftkit.formats.chat import CONVERSATIONS, template_option_problem

CHAT_TYPES = ("chat_template", "sharegpt")
RAW_TYPES = ("completion", "input_output", "pretokenized")
TYPE_NAMES = tuple(FORMATS) + CHAT_TYPES + RAW_TYPES
# format options -> the types they apply to
OPTION_TYPES = {
    "field": ("completion",),
    **{k: CHAT_TYPES for k in ("field_messages", "message_field_role", "message_field_content", "roles",
                               "roles_to_train", "train_on_eos")},
    "chat_template": ("chat_template",),
    **{k: ("sharegpt",) for k in ("conversation", "field_human", "field_model")},
}


def unknown_type_fix(name: str) -> str:
    guess = difflib.get_close_matches(str(name), TYPE_NAMES, n=1, cutoff=0.3)
    return ((f"did you mean {guess[0]}? " if guess else "") +
            "supported types are listed in data_samples/README.md, or give type: as a mapping (a custom format)")


def _placeholders(text: str) -> set[str]:
    try:
        return {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
    except ValueError:
        return {"<unbalanced braces>"}


def _user_defined_problems(t, key: str) -> list[tuple[str, str, str]]:
    out = []
    for name, allowed, required in (("format", {"instruction", "input"}, "instruction"),
                                    ("no_input_format", {"instruction"}, "instruction"),
                                    ("system_format", {"system"}, "system")):
        fields = _placeholders(getattr(t, name))
        if fields - allowed or required not in fields:
            out.append((f"{key}.{name}", f"uses {sorted(fields)} but may use only {sorted(allowed)}",
                        f"write it with {{{required}}}" + (" and optionally {input}" if name == "format" else "")))
    return out


def recipe_problems(recipe) -> list[tuple[str, str, str]]:
    """(key, problem, fix) for dataset types, format options and chat template names."""
    out = []
    if recipe.chat_template and (fix := template_option_problem(recipe.chat_template)):
        out.append(("chat_template", f"unknown chat template {recipe.chat_template!r}", fix))
    if getattr(recipe, "rl", None):  # preference/RL datasets name their own types (checked by the RL path)
        return out
    for i, d in enumerate(recipe.datasets):
        key = f"datasets.{i}"
        if not isinstance(d.type, str):
            out += _user_defined_problems(d.type, f"{key}.type")
        elif d.type not in TYPE_NAMES:
            out.append((f"{key}.type", f"unsupported dataset type {d.type!r}", unknown_type_fix(d.type)))
            continue
        for option, types in OPTION_TYPES.items():
            if getattr(d, option) is not None and d.type not in types:
                out.append((f"{key}.{option}", f"applies only to type {' or '.join(types)}, not {d.type if isinstance(d.type, str) else 'a custom format'}",
                            "remove it or change the type"))
        if d.chat_template and (fix := template_option_problem(d.chat_template)):
            out.append((f"{key}.chat_template", f"unknown chat template {d.chat_template!r}", fix))
        if d.conversation and d.conversation not in CONVERSATIONS:
            guess = difflib.get_close_matches(d.conversation, CONVERSATIONS, n=1, cutoff=0.3)
            out.append((f"{key}.conversation", f"conversation {d.conversation!r} is not a chat template ftkit provides",
                        (f"did you mean {guess[0]}? " if guess else "") + f"use one of {', '.join(CONVERSATIONS)}"))
        if d.shards is not None and d.shards_idx >= d.shards:
            out.append((f"{key}.shards_idx", f"is {d.shards_idx} but there are only {d.shards} shards",
                        f"use 0 to {d.shards - 1}"))
    if recipe.dataset_shard_num is not None and recipe.dataset_shard_idx >= recipe.dataset_shard_num:
        out.append(("dataset_shard_idx", f"is {recipe.dataset_shard_idx} but dataset_shard_num is {recipe.dataset_shard_num}",
                    f"use 0 to {recipe.dataset_shard_num - 1}"))
    return out
