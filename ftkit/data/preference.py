"""Preference data: rows of any supported shape -> TRL's conversational preference rows, counted drops.

`datasets[].type` is `<template>.<shape>` with Axolotl's names. The template part is `chat_template`
(the recipe's `chat_template:`, else the tokenizer's own) or a template name (chatml, llama3, ...,
which becomes the run's template; formats/prompt.py `configure_tokenizer` resolves it for every method).
The shape part names the row layout:

    prompt_pairs  {"system"?, "prompt", "chosen", "rejected"}                 (plain pairs)
    intel         {"system"?, "question", "chosen", "rejected"}               (Intel/orca_dpo_pairs)
    argilla       {"system"?, "instruction", "chosen_response", "rejected_response"}
    icr           {"system"?, "input", "chosen", "rejected"}
    ultra         {"system"?, "prompt"?, "chosen": [msgs], "rejected": [msgs]} (ultrafeedback binarized)
    argilla_chat  {"chosen": [msgs], "rejected": [msgs]}                       (same turns, last answer differs)
    default       {"messages": [msgs], "chosen": msg, "rejected": msg}
With `rl: kto` a row has "completion" (text or [msgs]) and a boolean "label" instead of chosen/rejected.
(`chat_template.argilla` is Axolotl's ORPO name for the message-list shape; it reads like `ultra`.)

Every shape becomes {"prompt": [msgs], "chosen": [assistant msg], "rejected": [assistant msg]} (KTO:
{"prompt", "completion", "label"}); TRL renders these with the tokenizer's chat template, the same call
inference makes, so the trained prompt is the inference prompt (bos once, from the template; each answer is
what the template renders after the prompt, its end-of-turn token included; no eos added: docs/preference_rows.md
compares Axolotl's text rows, where TRL adds bos and eos). data/prepare.py runs `convert` per
dataset, like the SFT rows (data/sft.py), then mixes, splits and caches. Example (prompt_pairs):
    {"prompt": "Is it hot?", "chosen": "Yes.", "rejected": "NO!!!"} ->
    {"prompt": [{"role": "user", "content": "Is it hot?"}], "chosen": [{"role": "assistant", "content": "Yes."}],
     "rejected": [{"role": "assistant", "content": "NO!!!"}]}
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from ftkit.data.files import RawData, locate_row
from ftkit.errors import DataError, FtkitError, Problem
from ftkit.formats.preference_types import ANSWER_FIELDS, PROMPT_FIELD, split_type, type_problem
from ftkit.formats.prompt import common_prefix, encode_messages, trained_prompt_ids  # noqa: F401  (read by train/)
from ftkit.recipe import DatasetSpec, Recipe

REASONS = ("empty", "identical", "too_long")  # why a row is dropped, counted as stats["dropped_<reason>"]

# What the SFT rows honour and preference rows cannot: (key, refused value, why, fix). Plain data, so the
# recipe's per-method applicability check can take it over.
# Values preference training cannot honour. Options no `rl:` method reads at all (sample_packing,
# train_on_inputs, relora_steps, ...) say so in their schema metadata and are refused when the recipe loads.
NOT_WITH_RL = (
    ("excess_length_strategy", "truncate", "a row cut at sequence_len loses its end: the answers a pair compares, "
     "or the question of a prompt", "use excess_length_strategy: drop (too-long rows are dropped and counted), or "
     "raise sequence_len"),
)


def unsupported_options(recipe: Recipe) -> list[Problem]:
    """Problems for options set to a value that rl: and reward-model training cannot honour (none for SFT)."""
    method = recipe.rl or ("reward_model: true" if recipe.reward_model else None)
    if not method:
        return []
    label = f"rl: {method}" if recipe.rl else method
    return [Problem(f"{value} is not supported with {label} ({why})", recipe.source, key, fix=fix)
            for key, value, why, fix in NOT_WITH_RL if getattr(recipe, key) == value]


def parse_type(spec: DatasetSpec, file: str | None, where: str) -> tuple[str | None, str]:
    """`chatml.intel` -> ("chatml", "intel"); the recipe check refused any other name already."""
    if problem := type_problem(spec, where):
        raise FtkitError(problem.problem, file=file, where=problem.where, fix=problem.fix)
    return split_type(spec.type)


# ---------------------------------------------------------------- rows

class _Row:
    """Reads one raw row's fields, raising errors that name the file, line (or row) and field."""

    def __init__(self, row: dict, files: list[str], index: int, spec: DatasetSpec):
        self.row, self.files, self.index = row, files, index  # index: the row's position across the files
        mapping = spec.message_property_mappings or {}  # the dataset's field names (Axolotl's)
        self.role = mapping.get("role") or spec.message_field_role or "role"
        self.content = mapping.get("content") or spec.message_field_content or "content"
        self.role_of = {a: r for r, aliases in (spec.roles or {}).items() for a in aliases}
        self.field_messages = spec.field_messages or "messages"
        self.answers = (spec.field_chosen or "chosen", spec.field_rejected or "rejected")

    def fail(self, name: str, problem: str, fix: str):
        file, line, row = locate_row(self.files, self.index)
        raise DataError(Problem(f"field {name!r}: {problem}", file, None if line else f"row {row + 1}", line, fix))

    def text(self, name: str, optional: bool = False) -> str | None:
        value = self.row.get(name)
        if value is None and not optional:
            self.fail(name, "missing", f"add {name!r} to every row (see data_samples/PREFERENCE.md for each type's fields)")
        if value is not None and not isinstance(value, str):
            self.fail(name, f"must be text, got {type(value).__name__}", f"store {name} as a string")
        return value

    def messages(self, name: str) -> list[dict]:
        value = self.row.get(name)
        value = [value] if isinstance(value, dict) else value
        role, content = self.role, self.content
        ok = isinstance(value, list) and all(
            isinstance(m, dict) and isinstance(m.get(role), str) and isinstance(m.get(content), str) for m in value)
        if not ok:
            self.fail(name, f"must be a list of {{\"{role}\": ..., \"{content}\": ...}} messages",
                      f"write {name} as [{{\"{role}\": \"user\", \"{content}\": \"...\"}}, ...]")
        return [{"role": self.role_of.get(m[role], m[role]), "content": m[content]} for m in value]

    def label(self) -> bool:
        value = self.row.get("label")
        if not isinstance(value, bool):
            self.fail("label", f"must be true or false, got {value!r}", "label desirable completions true, others false")
        return value


def _system(r: _Row) -> list[dict]:
    system = r.text("system", optional=True)
    return [{"role": "system", "content": system}] if system else []


def _last_answer(r: _Row, name: str, msgs: list[dict]) -> str:
    if msgs and msgs[-1]["role"] != "assistant":
        r.fail(name, f"the last message must be the assistant's answer, got role {msgs[-1]['role']!r}",
               "end each list with {\"role\": \"assistant\", \"content\": ...}")
    return msgs[-1]["content"] if msgs else ""


def read_row(r: _Row, shape: str, kto: bool) -> tuple[list[dict], list[str]]:
    """One raw row -> (prompt messages, answers): [chosen, rejected], or [completion] for KTO."""
    names = ("completion",) if kto else ANSWER_FIELDS.get(shape, r.answers)
    if shape in PROMPT_FIELD:
        return _system(r) + [{"role": "user", "content": r.text(PROMPT_FIELD[shape])}], [r.text(n) for n in names]
    if shape == "default":
        prompt = r.messages(r.field_messages) if not isinstance(r.row.get(r.field_messages), str) else \
            [{"role": "user", "content": r.row[r.field_messages]}]  # a plain prompt text is one user turn
        return prompt, [r.row[n] if isinstance(r.row.get(n), str) else _last_answer(r, n, r.messages(n)) for n in names]
    lists = [r.messages(n) for n in names]  # ultra / argilla_chat: the answer is each list's last message
    answers = [_last_answer(r, n, m) for n, m in zip(names, lists)]
    question = r.text("prompt", optional=True)
    if question is not None:  # ultrafeedback: the prompt field is the (single) user turn
        return _system(r) + [{"role": "user", "content": question}], answers
    if any(m[:-1] != lists[0][:-1] for m in lists[1:]):
        r.fail(names[1], f"its turns before the answer differ from {names[0]!r}'s",
               "chosen and rejected must share every turn but the last")
    return _system(r) + lists[0][:-1], answers


def _drop_reason(prompt: list[dict], answers: list[str], tokenizer, limit: int) -> str:
    """'' to keep, else why the row is dropped (counted per reason)."""
    if not prompt or any(not m["content"].strip() for m in prompt) or any(not a.strip() for a in answers):
        return "empty"
    if len(answers) == 2 and answers[0].strip() == answers[1].strip():
        return "identical"
    longest = max(answers, key=len)
    if len(encode_messages(tokenizer, prompt + [{"role": "assistant", "content": longest}], False)) > limit:
        return "too_long"
    return ""


def convert_rows(raw: RawData, spec: DatasetSpec, recipe: Recipe, tokenizer, where: str, kto: bool | None = None,
                 num_proc: int | None = None, fingerprint: str | None = None):
    """Map raw rows to TRL's conversational columns plus a `_drop` reason column (kto: unpaired rows)."""
    _, shape = parse_type(spec, recipe.source, where)
    kto = recipe.rl == "kto" if kto is None else kto

    def one(row, idx):
        r = _Row(row, raw.files, raw.first_row + idx, spec)
        prompt, answers = read_row(r, shape, kto)
        reason = _drop_reason(prompt, answers, tokenizer, recipe.sequence_len)
        turn = [[{"role": "assistant", "content": a}] for a in answers]
        out = {"prompt": prompt, "_drop": reason}
        out.update({"completion": turn[0], "label": r.label()} if kto else {"chosen": turn[0], "rejected": turn[1]})
        return out

    ds = raw.rows
    return ds.map(one, with_indices=True, remove_columns=ds.column_names, num_proc=num_proc, load_from_cache_file=False,
                  new_fingerprint=fingerprint and f"{fingerprint}-pref", desc=f"reading {Path(spec.path).name}")


def keep_marked(marked, rows_in: int, reasons: tuple, fingerprint: str) -> tuple[object, dict, Counter]:
    """Rows whose `_drop` reason is empty, the column removed; stats count the rest per reason."""
    counts = Counter(marked["_drop"])
    kept = marked.filter(lambda b: [r == "" for r in b["_drop"]], batched=True, load_from_cache_file=False,
                         new_fingerprint=f"{fingerprint}-keep").remove_columns("_drop")
    return kept, {"rows_in": rows_in, "kept": len(kept), **{f"dropped_{r}": counts.get(r, 0) for r in reasons}}, counts


def convert(raw: RawData, spec: DatasetSpec, recipe: Recipe, tokenizer, where: str, num_proc: int | None,
            fingerprint: str) -> tuple[object, dict]:
    """One dataset as conversational rows with drops counted per reason; no usable row at all is an error."""
    converted = convert_rows(raw, spec, recipe, tokenizer, where, num_proc=num_proc, fingerprint=fingerprint)
    kept, stats, counts = keep_marked(converted, len(raw.rows), REASONS, fingerprint)
    if not len(kept):
        raise DataError(Problem(f"no usable preference rows: {counts['empty']} with an empty field, "
                                f"{counts['identical']} with chosen == rejected, {counts['too_long']} longer than "
                                f"sequence_len={recipe.sequence_len}", raw.files[0], f"{where}.path",
                                fix="check the dataset type matches the rows' fields, or raise sequence_len"))
    return kept, stats


def mixed_stats(ds) -> dict:
    """Nothing beyond the counts: TRL tokenizes preference rows when the trainer starts."""
    return {}
