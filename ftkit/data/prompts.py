"""GRPO rows: prompts, and the columns the reward functions read, from any dataset; drops counted.

Two ways in, as in Axolotl:
  no type               rows already hold `prompt`: a text (one user turn) or a list of {role, content} messages
  type: MODULE.FUNCTION  a transform named by import path (data/user_code.py, next to the recipe):
                        FUNCTION(cfg, dataset_idx=i) returns map_fn or (map_fn, map_kwargs); map_fn(row) (or
                        map_fn(row, tokenizer=...)) returns the new columns; map_kwargs.remove_columns drops the
                        raw ones (a list, or "__all__")
Every other column passes through: TRL hands them to each reward function as keyword arguments. Example:
    {"question": "What is 2 plus 3?", "answer": "5"}  --transform-->
    {"prompt": [{"role": "user", "content": "What is 2 plus 3?"}], "answer": "5"}
    reward(completions=[[{"role": "assistant", "content": "5"}], ...], answer=["5", ...], ...) -> [1.0, ...]
TRL renders the prompt with the chat template (the prompt inference sends) and generates the completions. A row
with an empty prompt, or one longer than sequence_len tokens, is dropped and counted.
"""
from __future__ import annotations

import inspect
from functools import partial
from pathlib import Path

from ftkit.data.files import RawData, locate_row
from ftkit.data.preference import keep_marked
from ftkit.data.user_code import load_function, module_file, search_dirs
from ftkit.errors import DataError, FtkitError, Problem
from ftkit.formats.prompt import encode_messages, user_turn
from ftkit.recipe import DatasetSpec, Recipe

REASONS = ("empty", "too_long")  # why a row is dropped, counted as stats["dropped_<reason>"]
TRANSFORM = "FUNCTION(cfg, **kwargs) returning map_fn(row) -> {'prompt': [...messages], ...}"


def code_files(recipe: Recipe) -> list[str]:
    """The transform modules the datasets name: part of the prepared-data fingerprint (editing one re-prepares)."""
    dirs = search_dirs(recipe)
    specs = [*recipe.datasets, *recipe.test_datasets]
    found = [module_file(s.type.rpartition(".")[0], dirs) for s in specs if isinstance(s.type, str) and "." in s.type]
    return [str(f) for f in found if f]


def _transform(ds, spec: DatasetSpec, recipe: Recipe, tokenizer, where: str, num_proc, fingerprint):
    """The dataset through its `type:` transform (Axolotl's GRPO dataset transform)."""
    made = load_function(spec.type, recipe, f"{where}.type", "dataset transform", TRANSFORM)(
        recipe, dataset_idx=int(where.rsplit(".", 1)[-1]))
    map_fn, kwargs = made if isinstance(made, tuple) else (made, {})
    kwargs = dict(kwargs or {})
    if "tokenizer" in inspect.signature(map_fn).parameters:
        map_fn = partial(map_fn, tokenizer=tokenizer)
    remove = kwargs.pop("remove_columns", None)
    remove = ds.column_names if remove == "__all__" else [c for c in remove or [] if c in ds.column_names]
    try:
        return ds.map(map_fn, remove_columns=remove, num_proc=num_proc, load_from_cache_file=False,
                      new_fingerprint=f"{fingerprint}-transform", desc=f"{spec.type} on {Path(spec.path).name}",
                      **kwargs)
    except Exception as e:  # the user's function failed on a row: name it, the dataset and the error
        raise FtkitError(f"the dataset transform {spec.type} failed on {spec.path}: {type(e).__name__}: {e}",
                         file=recipe.source, where=f"{where}.type",
                         fix="make map_fn return {'prompt': [...messages]} (and the columns your rewards read) "
                             "for every row of this dataset") from e


def _prompt(row: dict, files: list[str], index: int) -> list[dict]:
    """The row's prompt as messages (a text is one user turn); an error naming the file and line otherwise."""
    value = row.get("prompt")
    if isinstance(value, str):
        return user_turn(value)
    if isinstance(value, list) and all(isinstance(m, dict) and isinstance(m.get("role"), str)
                                       and isinstance(m.get("content"), str) for m in value):
        return [{"role": m["role"], "content": m["content"]} for m in value]
    file, line, n = locate_row(files, index)
    raise DataError(Problem(f"field 'prompt' must be a text or a list of {{role, content}} messages, got "
                            f"{type(value).__name__}", file, None if line else f"row {n + 1}", line,
                            "give each row a prompt, or a type: transform that builds one (recipes/llama/grpo.yml)"))


def convert(raw: RawData, spec: DatasetSpec, recipe: Recipe, tokenizer, where: str, num_proc: int | None,
            fingerprint: str) -> tuple[object, dict]:
    """One dataset as GRPO rows {prompt: messages, ...its other columns}, drops counted per reason."""
    ds = raw.rows
    if isinstance(spec.type, str):
        ds = _transform(ds, spec, recipe, tokenizer, where, num_proc, fingerprint)
    if "prompt" not in ds.column_names:
        raise DataError(Problem(f"the rows have no 'prompt' column (columns: {', '.join(ds.column_names)})",
                                raw.files[0], f"{where}.type", fix="add a type: transform that builds the prompt "
                                "(e.g. type: rewards.arithmetic_prompt, see recipes/llama/rewards.py)"))

    def one(row, idx):
        prompt = _prompt(row, raw.files, raw.first_row + idx)
        if not prompt or any(not m["content"].strip() for m in prompt):
            reason = "empty"
        else:
            reason = "too_long" if len(encode_messages(tokenizer, prompt, True)) > recipe.sequence_len else ""
        return {"prompt": prompt, "_drop": reason}

    marked = ds.map(one, with_indices=True, num_proc=num_proc, load_from_cache_file=False,
                    new_fingerprint=f"{fingerprint}-prompts", desc=f"reading {Path(spec.path).name}")
    kept, stats, counts = keep_marked(marked, len(raw.rows), REASONS, fingerprint)
    if not len(kept):
        raise DataError(Problem(f"no usable prompts: {counts['empty']} empty, {counts['too_long']} longer than "
                                f"sequence_len={recipe.sequence_len}", raw.files[0], f"{where}.path",
                                fix="check the prompts, or raise sequence_len"))
    return kept, stats


def mixed_stats(ds) -> dict:
    """Nothing beyond the counts: TRL renders the prompts when it generates."""
    return {}
