"""The recipe schema: every option with Axolotl's name, its type, default, one description and the methods that read it.

The fields live in topic modules (model_options, data_options, adapter_options, train_options, run_options,
method_options); each field's description is its only documentation (`ftkit options` prints the reference
generated from it, together with the Axolotl options that are not fields: ftkit/axolotl/catalogue.yaml). This module
composes them into `Recipe` and holds the checks that relate fields of different topics, including the
generated one: an option set for a method that does not read it is an error naming both.
"""
from __future__ import annotations

import math
import os
from typing import Optional

from pydantic import PrivateAttr, model_validator

from ftkit.errors import Problem
from ftkit.formats.chat import chat_rows
from ftkit.recipe.adapter_options import AdapterOptions, PeftOptions, adapter_problems
from ftkit.recipe.base import (METHODS, PREFERENCE, field_methods, method_label, method_of, option, problem,
                               raise_problems)
from ftkit.recipe.data_options import (DataOptions, DatasetSpec, PretrainingDataset, PromptOptions, StreamOptions,
                                       UserDefinedFormat, stream_problems)
from ftkit.recipe.fingerprint import default_output_dir
from ftkit.recipe.method_options import RLOptions, TRLBlock
from ftkit.recipe.method_options import method_problems as rl_problems
from ftkit.recipe.model_options import ModelOptions, model_problems
from ftkit.recipe.run_options import RunOptions
from ftkit.recipe.train_options import PackingOptions, TrainOptions, name_problems, order_problems

# Folders ftkit writes or reads as a whole: `~` expanded and made absolute at load (the Trainer expands `~` by
# itself, so `output_dir: ~/runs/x` once meant ./~/runs/x to ftkit and $HOME/runs/x to the checkpoints).
FOLDERS = ("output_dir", "dataset_prepared_path", "lora_model_dir", "resume_from_checkpoint")

__all__ = ["DatasetSpec", "PretrainingDataset", "Recipe", "TRLBlock", "UserDefinedFormat"]  # the option models


class Recipe(ModelOptions, DataOptions, PromptOptions, AdapterOptions, PeftOptions, TrainOptions, RLOptions,
             RunOptions, PackingOptions, StreamOptions):
    """A validated recipe. `source` is the file it came from (for error messages); `report` says what
    load_recipe did with each key of the file (ftkit/axolotl/migrate.py), e.g. for `ftkit check`."""

    source: Optional[str] = option(None, exclude=True, ftkit_only=True, description="Internal: the file this recipe was read from.")
    _report: object = PrivateAttr(default=None)

    @property
    def report(self):
        return self._report

    @model_validator(mode="before")
    @classmethod
    def _finite(cls, data):
        """Every number finite, at any depth: YAML's `.inf`/`.nan` would train NaN weights (checked before the
        fields, so a step count or a scheduler argument is named once, by its key)."""
        raise_problems(_non_finite(data) if isinstance(data, dict) else [])
        return data

    @model_validator(mode="after")
    def _consistent(self):
        from ftkit.formats.options import recipe_problems  # dataset types and format options

        if self.reward_model and self.model_type == "AutoModelForCausalLM":  # Axolotl's default for reward models
            self.__dict__["model_type"] = "AutoModelForSequenceClassification"  # (models/load.py announces it)
        raise_problems(model_problems(self) + adapter_problems(self) + _core_problems(self) + recipe_problems(self)
                       + _run_problems(self) + method_problems(self) + name_problems(self) + rl_problems(self)
                       + order_problems(self) + stream_problems(self))
        if not self.output_dir:  # set directly: assigning would validate the whole recipe again
            self.__dict__["output_dir"] = default_output_dir(self.source, self.dump())
        for key in FOLDERS:  # resolved once, so the Trainer, ftkit and every later reader use the same folder
            if getattr(self, key):
                self.__dict__[key] = os.path.abspath(os.path.expanduser(getattr(self, key)))
        return self

    def line_of(self, key: str) -> int | None:
        """The line `key` is written on in the recipe file (None when it is not written there)."""
        return next((entry.line for entry in (self._report.lines if self._report else []) if entry.key == key), None)

    def dump(self) -> dict:
        """The resolved recipe as plain data (written next to the trained model)."""
        return self.model_dump(mode="json", exclude={"source"})


def _core_problems(r: Recipe) -> list:
    p = problem
    pairs = r.rl in PREFERENCE or r.reward_model  # GRPO prompt rows without a type are read as they are
    cosine_only = [k for k in ("cosine_min_lr_ratio", "cosine_constant_lr_ratio") if getattr(r, k) is not None]
    if r.lr_quadratic_warmup:
        cosine_only.append("lr_quadratic_warmup")
    return [
        r.val_set_size > 1 and r.val_set_size != int(r.val_set_size) and p(
            "val_set_size", f"{r.val_set_size:g} is above 1 but not a whole number: a fraction must be below 1, a row "
                            "count whole", "write a fraction below 1 (0.05 = 5% of the rows) or a row count (e.g. 100)"),
        r.bf16 is True and r.fp16 is True and p("fp16", "bf16 and fp16 are both true", "choose one precision"),
        r.bfloat16 and r.float16 and p("float16", "bfloat16 and float16 are both true", "choose one weight dtype"),
        r.warmup_steps is not None and r.warmup_ratio is not None and p(
            "warmup_ratio", "conflicts with warmup_steps", "keep one of warmup_steps / warmup_ratio"),
        *[r.lr_scheduler != "cosine" and p(k, f"shapes the cosine schedule but lr_scheduler is {r.lr_scheduler}",
                                           "set lr_scheduler: cosine, or remove it") for k in cosine_only],
        r.cosine_constant_lr_ratio is not None and r.cosine_min_lr_ratio is None and p(
            "cosine_constant_lr_ratio", "holds the minimum learning rate, but cosine_min_lr_ratio is not set",
            "add cosine_min_lr_ratio (e.g. 0.1)"),
        r.lr_quadratic_warmup and r.cosine_min_lr_ratio is not None and p(
            "lr_quadratic_warmup", "conflicts with cosine_min_lr_ratio (Axolotl drops the minimum then)", "keep one"),
        r.cosine_min_lr_ratio is not None and "min_lr_rate" in r.lr_scheduler_kwargs and p(
            "cosine_min_lr_ratio", "conflicts with lr_scheduler_kwargs.min_lr_rate", "keep one"),
        pairs and any(d.type is None for d in [*r.datasets, *r.test_datasets]) and p(
            "datasets", "a preference dataset needs a type", "add type:, e.g. chat_template.prompt_pairs (see data_samples/PREFERENCE.md)"),
        chat_rows(r) and any(d.type is not None and not isinstance(d.type, str) for d in [*r.datasets, *r.test_datasets]) and p(
            "datasets", "custom preference formats (type: as a mapping) are not implemented",
            "convert the rows to one of the shapes in data_samples/PREFERENCE.md, e.g. chat_template.prompt_pairs"),
        r.rl == "orpo" and r.rl_beta is not None and p("rl_beta", "ORPO has no reference model, so no beta",
                                                       "use orpo_alpha for the odds-ratio weight"),
    ]


def _non_finite(value, where: str = "") -> list[Problem]:
    """Infinite or NaN numbers anywhere in the raw recipe, each with its key path."""
    if isinstance(value, float) and not math.isfinite(value):
        return [problem(where, f"{value} is not a finite number", "write a finite number")]
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    return [p for k, v in items for p in _non_finite(v, f"{where}.{k}" if where else str(k))]


def _run_problems(r: Recipe) -> list:
    """Checkpoint / evaluation / engine / hub combinations that cannot run as written."""
    p = problem
    evals = r.eval_steps or r.evals_per_epoch or r.eval_strategy not in (None, "no")
    return [
        r.save_steps and r.saves_per_epoch and p("saves_per_epoch", "conflicts with save_steps", "keep one of save_steps / saves_per_epoch"),
        r.save_strategy == "steps" and not (r.save_steps or r.saves_per_epoch) and p(
            "save_strategy", "steps needs an interval", "add save_steps or saves_per_epoch"),
        r.eval_steps and r.evals_per_epoch and p("evals_per_epoch", "conflicts with eval_steps", "keep one of eval_steps / evals_per_epoch"),
        r.eval_strategy == "steps" and not (r.eval_steps or r.evals_per_epoch) and p(
            "eval_strategy", "steps needs an interval", "add eval_steps or evals_per_epoch"),
        r.early_stopping_patience and not (r.val_set_size or r.test_datasets) and p(
            "early_stopping_patience", "needs an evaluation split", "set val_set_size (e.g. 0.05)"),
        r.early_stopping_patience and not evals and p("early_stopping_patience", "needs evaluations during training",
                                                      "set eval_steps or evals_per_epoch"),
        r.load_best_model_at_end and not evals and p("load_best_model_at_end", "needs evaluations during training",
                                                     "set eval_steps or evals_per_epoch"),
        r.load_best_model_at_end and (r.eval_steps or r.evals_per_epoch) and not (r.save_steps or r.saves_per_epoch) and p(
            "load_best_model_at_end", "needs a checkpoint at each evaluation", "set save_steps to a multiple of eval_steps"),
        r.eval_table_size and not (r.val_set_size or r.test_datasets) and p("eval_table_size", "needs an evaluation split",
                                                                           "set val_set_size (e.g. 0.05)"),
        r.eval_table_size and r.sample_packing and r.eval_sample_packing is not False and p(
            "eval_table_size", "needs unpacked eval rows", "add eval_sample_packing: false"),
        r.deepspeed and r.fsdp and p("fsdp", "conflicts with deepspeed", "use one engine: deepspeed or fsdp"),
        r.deepspeed and r.fsdp_config and p("fsdp_config", "conflicts with deepspeed", "use one engine: deepspeed or fsdp"),
        r.resume_from_checkpoint and r.auto_resume_from_checkpoints and p("auto_resume_from_checkpoints",
                                                                          "conflicts with resume_from_checkpoint", "keep one"),
        (r.hub_strategy or r.hub_revision or r.push_to_hub) and not r.hub_model_id and p(
            "hub_strategy" if r.hub_strategy else "hub_revision" if r.hub_revision else "push_to_hub",
            "needs hub_model_id (the repo pushed to)", "add hub_model_id: user/name"),
    ]


def method_problems(r) -> list[Problem]:
    """Generated from the fields' `methods` metadata: every option whose value differs from its default
    must be read by the recipe's method (sft, or the rl: value), at the top level and in dataset entries."""
    method = method_of(r)
    out: list[Problem] = []

    def scan(obj, prefix: str) -> None:
        for name, field in type(obj).model_fields.items():
            methods = field_methods(field)
            if method in methods or methods == METHODS:
                continue
            default, value = field.get_default(call_default_factory=True), getattr(obj, name)
            if value == default or (value is False and default is None):  # a value, not "was it written" (a dumped
                continue  # recipe.yml writes every key); `false` for an option that is off by default is off too
            to = "remove it, or " + {"sft": "remove rl:" if r.rl else "remove reward_model:",
                                     "reward": "set reward_model: true"}.get(methods[0], f"set rl: {methods[0]}")
            readers = " or ".join(map(method_label, methods))
            out.append(problem(prefix + name, f"is not read by {method_label(method)} (only by {readers})", to))

    scan(r, "")
    for key in ("datasets", "test_datasets"):
        for i, d in enumerate(getattr(r, key)):
            scan(d, f"{key}.{i}.")
    return out
