"""Preference pairs, for rl: dpo/ipo/kto/orpo/simpo and reward_model: true: rows of any supported shape ->
TRL's conversational preference rows (counted drops), and the held-out pairs scored before and after training.

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
dataset (the `rows` hook), like the SFT rows (data/sft.py), then mixes, splits and caches. Example (prompt_pairs):
    {"prompt": "Is it hot?", "chosen": "Yes.", "rejected": "NO!!!"} ->
    {"prompt": [{"role": "user", "content": "Is it hot?"}], "chosen": [{"role": "assistant", "content": "Yes."}],
     "rejected": [{"role": "assistant", "content": "NO!!!"}]}

What a run changed: the trainers' logged reward margin is measured on training batches; the check that the
preference generalizes is on held-out pairs: logp(chosen) - logp(rejected), summed over the answer tokens
(the chat template's end-of-turn included), before and after training (a reward model: its scores of them).
"""
from __future__ import annotations

import statistics
import sys
from collections import Counter
from pathlib import Path

from ftkit.data import Prepared
from ftkit.data.files import RawData, load_raw, locate_row
from ftkit.errors import DataError, FtkitError, Problem
from ftkit.formats.preference_types import ANSWER_FIELDS, PROMPT_FIELD, split_type, type_problem
from ftkit.formats.prompt import common_prefix, encode_messages, trained_prompt_ids
from ftkit.log import log
from ftkit.recipe import DatasetSpec, Recipe
from ftkit.recipe.base import PREFERENCE, method_label, method_of

REASONS = ("empty", "identical", "too_long")  # why a row is dropped, counted as stats["dropped_<reason>"]

# Values preference training cannot honour: (key, refused value, why, fix). Options no `rl:` method reads at
# all (sample_packing, train_on_inputs, relora_steps, ...) say so in their schema metadata and are refused when
# the recipe loads.
NOT_WITH_RL = (
    ("excess_length_strategy", "truncate", "a row cut at sequence_len loses its end: the answers a pair compares, "
     "or the question of a prompt", "use excess_length_strategy: drop (too-long rows are dropped and counted), or "
     "raise sequence_len"),
)
ANSWERS = ("chosen", "rejected", "completion")


def applies(recipe: Recipe) -> bool:
    """Preference rows: every paired method, KTO's unpaired rows, and the reward model's pairs."""
    return recipe.rl in PREFERENCE or recipe.reward_model


def rows(recipe: Recipe):
    """This module converts the datasets (convert, REASONS, mixed_stats), as data/sft.py does SFT's."""
    return sys.modules[__name__]


def refused_options(recipe: Recipe) -> list[Problem]:
    """Problems for options set to a value that rl: and reward-model training cannot honour (GRPO's too)."""
    label = method_label(method_of(recipe))
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


# ---------------------------------------------------------------- held-out pairs, before / after

def heldout(recipe: Recipe, tokenizer, prepared: Prepared | None, convert, say: bool = True):
    """Held-out rows for the before/after measurement: test_datasets, each read by `convert` (a plug-in's, so
    the rows are those training reads), else the eval split; None without either. Rows left out are said (`say`:
    the measurement before training says it; the one after reads the same rows again)."""
    import datasets

    parts = []
    for i, spec in enumerate(recipe.test_datasets):
        where = f"test_datasets.{i}"
        rows, stats = convert(load_raw(spec, recipe, where), spec, recipe, tokenizer, where, None, f"heldout-{i}")[:2]
        dropped = {k.removeprefix("dropped_"): n for k, n in stats.items() if k.startswith("dropped_") and n}
        if say and dropped:
            log.warning(f"{where}: {sum(dropped.values())} of {stats['rows_in']} held-out rows left out ("
                        + ", ".join(f"{n} {why}" for why, n in dropped.items()) + ")")
        parts.append(rows)
    if parts:
        return datasets.concatenate_datasets(parts)
    return prepared.eval if prepared is not None and prepared.eval is not None and len(prepared.eval) else None


def _pairs(raw, spec, recipe: Recipe, tokenizer, where: str, num_proc, fingerprint: str):
    """Held-out rows as {prompt, chosen, rejected}, a KTO run's too: the check compares the two answers."""
    marked = convert_rows(raw, spec, recipe, tokenizer, where, kto=False, num_proc=num_proc)
    return keep_marked(marked, len(raw.rows), REASONS, fingerprint)


def heldout_rows(recipe: Recipe, tokenizer, prepared: Prepared | None = None, say: bool = True):
    """Held-out pairs {prompt, chosen, rejected}: test_datasets, else the eval split (a KTO run's is unpaired)."""
    return heldout(recipe, tokenizer, None if recipe.rl == "kto" else prepared, _pairs, say)


def answer_logp(model, tokenizer, prompt: list[dict], answer: list[dict]) -> float:
    """Sum of log-probs of the answer's tokens after the prompt, as the chat template renders them."""
    import torch

    ids = encode_messages(tokenizer, prompt + answer, generation_prompt=False)
    start = len(trained_prompt_ids(tokenizer, prompt, answer[-1]["content"]))  # where TRL starts the answer
    x = torch.tensor([ids], device=next(model.parameters()).device)
    with torch.no_grad():
        logits = model(input_ids=x).logits.float()
    logps = torch.log_softmax(logits[0, :-1], dim=-1).gather(1, x[0, 1:, None])[:, 0]
    return float(logps[start - 1:].sum())  # token t is predicted at position t-1


def pair_scores(model, tokenizer, rows, score=answer_logp, name: str = "logp") -> dict:
    """Over held-out pairs: the mean margin score(chosen) - score(rejected), the fraction preferred, each answer's
    mean score (`name`_chosen, `name`_rejected) and each pair's margin. score(model, tokenizer, prompt, answer): the
    answer's log-prob after the prompt by default (a policy); a reward model scores the pair's text (reward.py)."""
    if not rows:
        return {}
    was_training = model.training
    model.eval()
    chosen = [score(model, tokenizer, r["prompt"], r["chosen"]) for r in rows]
    rejected = [score(model, tokenizer, r["prompt"], r["rejected"]) for r in rows]
    model.train(was_training)
    margins = [c - r for c, r in zip(chosen, rejected)]
    return {"n": len(rows), "margin": statistics.fmean(margins), "accuracy": sum(m > 0 for m in margins) / len(rows),
            f"{name}_chosen": statistics.fmean(chosen), f"{name}_rejected": statistics.fmean(rejected),
            "margins": margins}


def compare_table(rows: list[dict], before: dict, after: dict) -> str:
    """Per held-out prompt: logp(chosen) - logp(rejected) before and after, as a text table."""
    lines = [f"{'held-out prompt':<44} {'before':>8} {'after':>8}"]
    for r, b, a in zip(rows, before["margins"], after["margins"]):
        lines.append(f"{r['prompt'][-1]['content'][:44]:<44} {b:+8.2f} {a:+8.2f}")
    lines.append(f"{'mean':<44} {before['margin']:+8.2f} {after['margin']:+8.2f}")
    return "\n".join(lines)


def show_pair(tokenizer, row: dict) -> str:
    """One preference row as the model sees it: the rendered prompt, then each answer (special tokens shown).
    A GRPO row has no answer: its prompt as generation starts from it, and the columns the rewards read."""
    answers = row.get("chosen") or row.get("completion")
    ids = trained_prompt_ids(tokenizer, row["prompt"], answers[-1]["content"]) if answers else \
        encode_messages(tokenizer, row["prompt"], generation_prompt=True)  # the prompt tokens TRL trains on / sends
    lines = [f"prompt ({len(ids)} tokens):", tokenizer.decode(ids)]
    lines += [f"{k} (for the rewards): {v!r}" for k, v in row.items() if k not in ANSWERS + ("prompt", "label")]
    for name in ANSWERS:
        if name in row and row[name]:
            full = encode_messages(tokenizer, row["prompt"] + row[name], generation_prompt=False)
            tag = f" (label {row['label']})" if name == "completion" else ""
            lines.append(f"{name}{tag}: {tokenizer.decode(full[common_prefix(ids, full):])!r}")
    return "\n".join(lines)
