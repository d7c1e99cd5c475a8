"""What every schema module shares: strict models, `option()` fields with their metadata, Problems from validators.

A field's metadata says which training methods read it (`methods`), so the check "option X is not read by
rl: kto" is generated from the schema (recipe/schema.py `_method_problems`) and cannot fall behind. Fields
that are ftkit's own (not Axolotl options) say so (`ftkit_only`), for `ftkit options` and `ftkit check`.
"""
from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ftkit.errors import Problem

METHODS = ("sft", "dpo", "ipo", "kto", "orpo", "simpo", "grpo", "gdpo", "reward")
SFT = ("sft",)
PREFERENCE = ("dpo", "ipo", "kto", "orpo", "simpo")  # offline preference rows (TRL renders them)
PAIRED = ("dpo", "ipo", "orpo", "simpo", "reward")  # chosen/rejected pairs (KTO reads unpaired rows)
GRPO = ("grpo", "gdpo")  # online RL: prompts in, completions generated and scored by reward functions
REWARD = ("reward",)  # `reward_model: true`: a sequence-classification head trained on chosen/rejected pairs


def _whole_or_fraction(value):
    if value >= 1 and value != int(value):
        raise ValueError("use a whole number of steps, or a fraction below 1")
    return int(value) if value >= 1 else value


Steps = Annotated[Union[int, float], AfterValidator(_whole_or_fraction)]  # a count >= 1, or a fraction of the steps


class Strict(BaseModel):
    # allow_inf_nan=False: `weight_decay: .inf` (YAML's infinity) is an error naming the key, not NaN weights
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


def option(default: Any = ..., *, methods: tuple[str, ...] = METHODS, ftkit_only: bool = False, **kwargs) -> Any:
    """A pydantic Field carrying ftkit's metadata: the methods that read it, and whether Axolotl has it."""
    assert set(methods) <= set(METHODS), methods
    return Field(default, json_schema_extra={"methods": tuple(methods), "ftkit_only": ftkit_only}, **kwargs)


def field_methods(field) -> tuple[str, ...]:
    """The methods that read a field (every method unless its metadata narrows it)."""
    return field.json_schema_extra["methods"]


def is_ftkit_only(field) -> bool:
    return field.json_schema_extra["ftkit_only"]


def method_of(recipe) -> str:
    """'sft' for supervised fine-tuning, the rl: method, or 'reward' for `reward_model: true`."""
    return getattr(recipe, "rl", None) or ("reward" if getattr(recipe, "reward_model", False) else "sft")


def method_label(method: str) -> str:
    return {"sft": "supervised fine-tuning (no rl:)", "reward": "reward_model: true"}.get(method, f"rl: {method}")


class ProblemsError(ValueError):
    """Raised by a model validator with the Problems it found; load.py takes them out of pydantic's error
    (pydantic keeps the exception in the error's ctx), so Problems are never encoded as strings."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


def raise_problems(problems: list) -> None:
    """Raise ProblemsError when a validator found anything (None entries, from `cond and Problem(...)`, skipped)."""
    found = [p for p in problems if p]
    if found:
        raise ProblemsError(found)


def problem(where: str, what: str, fix: str) -> Problem:
    """A recipe Problem at a key path (file and line are added by load.py)."""
    return Problem(what, where=where, fix=fix)
