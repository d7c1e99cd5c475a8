"""Which `datasets[].type` names exist, which options each takes, and the recipe-time checks.

A format option written for a type that does not read it is an error, unless its value asks for what the type
does anyway (the neutral values of assets/format_options.yaml: `field: text` on sharegpt, `roles_to_train:
[assistant]` on oasst, alpaca's `field_instruction: instruction`): Axolotl ignores those keys and so does ftkit,
said in a note.
"""
from __future__ import annotations

import difflib
import string
from pathlib import Path

import yaml

from ftkit.errors import Problem
from ftkit.formats.alpaca import FORMATS
from ftkit.formats.base import role_names
from ftkit.formats.chat import chat_rows, template_option_problem
from ftkit.formats.fastchat import templates as fastchat_templates
from ftkit.formats.preference_types import type_problem

TYPE_NAMES = (*FORMATS, "chat_template", "sharegpt", "completion", "input_output", "pretokenized")
# format option -> {types that read it, fastchat: read by sharegpt + conversation:, neutral: values that change nothing}
OPTIONS = yaml.safe_load((Path(__file__).parents[1] / "assets" / "format_options.yaml").read_text(encoding="utf-8"))


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


def _type_label(d) -> str:
    t = d.type
    if t == "sharegpt" and d.conversation:
        return "sharegpt with a FastChat conversation"
    return t if isinstance(t, str) else "a custom format" if t is not None else "an empty type (alpaca or tokenized rows)"


def _reads(d, option: str) -> bool:
    if d.type == "sharegpt" and d.conversation:
        return OPTIONS[option].get("fastchat", False)
    return d.type in OPTIONS[option]["types"]


def _neutral(option: str, value) -> bool:
    if option == "roles_to_train" and isinstance(value, list):
        value = [role_names(None).get(r, r) for r in value]  # [gpt] asks for the assistant turns too
    return value in OPTIONS[option].get("neutral", ())


def _misplaced(d, key: str) -> tuple[list[Problem], list[tuple[str, str]]]:
    """(problems, notes) for the format options set on a type that does not read them."""
    problems, notes = [], []
    fields = type(d).model_fields
    for option in OPTIONS:
        value = getattr(d, option)
        if value == fields[option].get_default() or _reads(d, option):
            continue
        where, label = f"{key}.{option}", _type_label(d)
        if _neutral(option, value):
            notes.append((where, f"{value!r} changes nothing for {label}, which does not read it (Axolotl ignores it "
                                 "there too)"))
        elif not OPTIONS[option]["types"]:
            problems.append(Problem("a custom-format key written at the dataset level (Axolotl ignores it there)",
                                    where=where, fix=f"put it under type: (a custom format), e.g. type: {{{option}: ...}}"))
        else:
            readers = "sharegpt without conversation, or chat_template" if d.type == "sharegpt" else \
                " or ".join(OPTIONS[option]["types"])
            problems.append(Problem(f"applies only to type {readers}, not {label}", where=where,
                                    fix="remove it or change the type"))
    return problems, notes


def _dataset_problems(d, key: str) -> list[Problem]:
    """The format options of one SFT dataset entry against its type."""
    out = []
    if d.type is not None and not isinstance(d.type, str):
        out += _user_defined_problems(d.type, f"{key}.type")
    elif d.type is not None and d.type not in TYPE_NAMES:
        return [Problem(f"unsupported dataset type {d.type!r}", where=f"{key}.type", fix=unknown_type_fix(d.type))]
    out += _misplaced(d, key)[0]
    if d.chat_template and (fix := template_option_problem(d.chat_template)):
        out.append(Problem(f"unknown chat template {d.chat_template!r}", where=f"{key}.chat_template", fix=fix))
    if d.conversation and d.type == "sharegpt" and d.conversation not in fastchat_templates():
        guess = difflib.get_close_matches(d.conversation, list(fastchat_templates()), n=1, cutoff=0.4)
        out.append(Problem(f"conversation {d.conversation!r} is not one of the FastChat templates ftkit renders",
                           where=f"{key}.conversation",
                           fix=(f"did you mean {guess[0]}? " if guess else "") + f"use one of {', '.join(fastchat_templates())}"
                               "; for a Jinja chat template use type: chat_template with chat_template: NAME"))
    mapping = d.message_property_mappings or {}
    for prop, legacy in (("role", d.message_field_role), ("content", d.message_field_content)):
        if legacy and prop in mapping and mapping[prop] != legacy:
            out.append(Problem(f"message_field_{prop} is {legacy!r} but message_property_mappings.{prop} is {mapping[prop]!r}",
                               where=f"{key}.message_property_mappings", fix="keep one"))
    return out


def format_notes(recipe) -> list[tuple[str, str]]:
    """(key, note) for dataset options that change nothing (neutral values on a type that does not read them),
    and for sharegpt rows rendered with the tokenizer's template where Axolotl's sharegpt used vicuna_v1.1."""
    if getattr(recipe, "rl", None):
        return []
    out = []
    for key, i, d in [(k, i, d) for k in ("datasets", "test_datasets") for i, d in enumerate(getattr(recipe, k))]:
        out += _misplaced(d, f"{key}.{i}")[1]
        if d.type == "sharegpt" and not d.conversation:
            out.append((f"{key}.{i}.type", "sharegpt without conversation: rendered with the tokenizer's chat "
                                              "template (Axolotl's sharegpt, through v0.4, used FastChat's vicuna_v1.1 "
                                              "here: write conversation: vicuna_v1.1 for that)"))
    return out


def recipe_problems(recipe) -> list[Problem]:
    """Dataset types, format options and chat template names (Problems with key paths)."""
    out = _shard_problems(recipe)
    if recipe.chat_template and (fix := template_option_problem(recipe.chat_template)):
        out.append(Problem(f"unknown chat template {recipe.chat_template!r}", where="chat_template", fix=fix))
    if recipe.default_system_message and recipe.chat_template and not _has_default_system(recipe.chat_template):
        out.append(Problem("the chat template has no built-in default system text to replace", where="default_system_message",
                           fix="use a template with one (qwen), or put a system message in the data"))
    if recipe.test_datasets and recipe.val_set_size and not chat_rows(recipe):  # Axolotl refuses the pair
        out.append(Problem("test_datasets is the eval set, and val_set_size would hold out a second one",
                           where="val_set_size", fix="keep one: remove val_set_size, or test_datasets"))
    if chat_rows(recipe):  # preference/RL/reward-model datasets name their own types
        if recipe.rl not in ("grpo", "gdpo"):  # GRPO reads prompts (plugins/grpo.py), the others pairs
            out += [p for key in ("datasets", "test_datasets") for i, d in enumerate(getattr(recipe, key))
                    if (p := type_problem(d, f"{key}.{i}"))]
        return out
    for key in ("datasets", "test_datasets"):
        for i, d in enumerate(getattr(recipe, key)):
            out += _dataset_problems(d, f"{key}.{i}")
    return out


def _shard_problems(recipe) -> list[Problem]:
    """A shard index past the last shard, for every method: datasets' shard() would stop data preparation with a
    traceback."""
    out = [Problem(f"is {d.shards_idx} but there are only {d.shards} shards", where=f"{key}.{i}.shards_idx",
                   fix=f"use 0 to {d.shards - 1}") for key in ("datasets", "test_datasets")
           for i, d in enumerate(getattr(recipe, key, [])) if d.shards is not None and d.shards_idx >= d.shards]
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
