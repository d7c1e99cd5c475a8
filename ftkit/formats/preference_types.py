"""The names of preference dataset types: `<template>.<shape>` (plugins/pairs.py converts the rows), checked
when the recipe loads, so `ftkit check` refuses a type no loader has (Axolotl's `completion` under rl: dpo, or
`chatml.intel_prefilled`) instead of the data step."""
from __future__ import annotations

from ftkit.errors import Problem
from ftkit.formats.chat_templates import TEMPLATES

PROMPT_FIELD = {"prompt_pairs": "prompt", "intel": "question", "argilla": "instruction", "icr": "input"}
ANSWER_FIELDS = {"argilla": ("chosen_response", "rejected_response")}  # others: ("chosen", "rejected")
LIST_SHAPES = ("ultra", "argilla_chat", "default")
SHAPES = tuple(PROMPT_FIELD) + LIST_SHAPES


def split_type(name) -> tuple[str | None, str]:
    """`chatml.intel` -> ("chatml", "intel"); `chat_template.argilla` -> (None, "ultra") (Axolotl's ORPO name for
    prompt + chosen/rejected message lists); `bradley_terry.chat_template` -> (None, "icr") (its reward-model name)."""
    template, _, shape = (name if isinstance(name, str) else "").partition(".")
    if template == "chat_template" and shape == "argilla":
        shape = "ultra"
    if template == "bradley_terry" and shape == "chat_template":
        template, shape = "chat_template", "icr"
    return (None if template == "chat_template" else template), shape


def type_problem(spec, where: str) -> Problem | None:
    """The problem with one preference dataset entry's type, or None."""
    template, shape = split_type(spec.type)
    if shape in SHAPES and (template is None or template in TEMPLATES):
        return None
    return Problem(f"unsupported preference dataset type {spec.type!r}", where=f"{where}.type",
                   fix=f"write TEMPLATE.SHAPE with TEMPLATE chat_template (the recipe's) or one of {', '.join(TEMPLATES)} "
                       f"and SHAPE one of {', '.join(SHAPES)}, e.g. chat_template.intel (reward models also read "
                       "bradley_terry.chat_template)")
