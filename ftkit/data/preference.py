"""Preference data: rows of any supported shape -> TRL's conversational preference rows, counted drops.

`datasets[].type` is `<template>.<shape>` with Axolotl's names. The template part is `chat_template`
(the recipe's `chat_template:`, else the tokenizer's own) or a template name (chatml, llama3, ...,
which becomes the run's template). The shape part names the row layout:

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
inference makes, so the trained prompt is the inference prompt. Example (prompt_pairs):
    {"prompt": "Is it hot?", "chosen": "Yes.", "rejected": "NO!!!"} ->
    {"prompt": [{"role": "user", "content": "Is it hot?"}], "chosen": [{"role": "assistant", "content": "Yes."}],
     "rejected": [{"role": "assistant", "content": "NO!!!"}]}
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ftkit.errors import DataError, FtkitError, Problem
from ftkit.formats.chat_templates import TEMPLATES, get_template
from ftkit.log import log
from ftkit.recipe import DatasetSpec, Recipe

PROMPT_FIELD = {"prompt_pairs": "prompt", "intel": "question", "argilla": "instruction", "icr": "input"}
ANSWER_FIELDS = {"argilla": ("chosen_response", "rejected_response")}  # others: ("chosen", "rejected")
LIST_SHAPES = ("ultra", "argilla_chat", "default")
SHAPES = tuple(PROMPT_FIELD) + LIST_SHAPES
DROP_REASONS = ("empty", "identical", "too_long")


@dataclass
class PreferenceData:
    """Rows in TRL's conversational format, and what was kept and dropped (per reason, per dataset)."""

    train: object
    eval: object | None
    stats: dict = field(default_factory=dict)

    def summary(self) -> str:
        s = self.stats
        d = s["dropped"]
        lines = [f"[ftkit] preference data: {s['rows_in']} rows in, {s['kept']} kept; dropped {d['empty']} with an "
                 f"empty field, {d['identical']} with chosen == rejected, {d['too_long']} longer than "
                 f"sequence_len={s['sequence_len']}; {s['train_rows']} train / {s['eval_rows']} eval"]
        for name, ds in s["per_dataset"].items():
            lines.append(f"[ftkit]   {name}: {ds['rows_in']} in, {ds['kept']} kept, dropped "
                         + ", ".join(f"{ds['dropped'][r]} {r}" for r in DROP_REASONS))
        return "\n".join(lines)


# ---------------------------------------------------------------- type names and the chat template

def parse_type(spec: DatasetSpec, file: str | None, where: str) -> tuple[str | None, str]:
    """`chatml.intel` -> ("chatml", "intel"); `chat_template.argilla` -> (None, "ultra")."""
    name = spec.type if isinstance(spec.type, str) else ""
    template, _, shape = name.partition(".")
    if template == "chat_template" and shape == "argilla":
        shape = "ultra"  # Axolotl's ORPO name for prompt + chosen/rejected message lists
    if shape not in SHAPES or (template != "chat_template" and template not in TEMPLATES):
        raise FtkitError(f"unsupported preference dataset type {spec.type!r}", file=file, where=f"{where}.type",
                         fix=f"write TEMPLATE.SHAPE with TEMPLATE chat_template (the recipe's) or one of "
                             f"{', '.join(TEMPLATES)} and SHAPE one of {', '.join(SHAPES)}, e.g. chat_template.intel")
    return (None if template == "chat_template" else template), shape


def apply_chat_template(recipe: Recipe, tokenizer) -> str:
    """Set the run's chat template on the tokenizer (it is saved with the model, so inference uses it).

    A template named by a dataset type (`chatml.intel`) or by `chat_template:` wins over the tokenizer's;
    two different names are an error. Returns the template's name ('tokenizer' for the tokenizer's own).
    """
    names = {parse_type(s, recipe.source, f"datasets.{i}")[0] for i, s in enumerate(recipe.datasets)} - {None}
    if getattr(recipe, "chat_template", None) not in (None, "tokenizer_default"):  # tokenizer_default: its own
        names.add(recipe.chat_template)
    if len(names) > 1:
        raise FtkitError(f"the dataset types and chat_template name different templates: {sorted(names)}",
                         file=recipe.source, where="chat_template",
                         fix="use one template: chat_template.SHAPE types follow the recipe's chat_template")
    if not names:
        if not tokenizer.chat_template:
            raise FtkitError("the tokenizer has no chat template", file=recipe.source, where="chat_template",
                             fix=f"set chat_template: to one of {', '.join(TEMPLATES)}")
        return "tokenizer"
    template = get_template(names.pop())
    missing = [t for t in template.special_tokens if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing})
        log.info(f"chat_template {template.name}: added special tokens {missing} (embeddings are resized)")
    if tokenizer.chat_template != template.jinja:
        log.info(f"chat_template: using {template.name} instead of the tokenizer's own")
    tokenizer.chat_template = template.jinja
    return template.name


def end_of_turn_token(tokenizer) -> str:
    """The token closing an assistant turn in the tokenizer's chat template (<|eot_id|>, <|im_end|>, ...), else eos."""
    for t in TEMPLATES.values():
        if t.end_of_turn and t.end_of_turn in (tokenizer.chat_template or "") and t.end_of_turn in tokenizer.get_vocab():
            return t.end_of_turn
    return tokenizer.eos_token


def end_of_turn_ids(tokenizer) -> list[int]:
    """eos plus the template's end-of-turn token, so generation stops where a trained answer ends."""
    return sorted({tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(end_of_turn_token(tokenizer))})


def prompt_messages(text: str) -> list[dict]:
    """The messages inference sends for a user's text."""
    return [{"role": "user", "content": text}]


def encode_messages(tokenizer, messages: list[dict], generation_prompt: bool) -> list[int]:
    """Token ids of messages rendered by the chat template (TRL's tokenization of conversational rows)."""
    out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                        add_generation_prompt=generation_prompt)
    return list(out["input_ids"])


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def trained_prompt_ids(tokenizer, prompt: list[dict], answer: str = "A") -> list[int]:
    """The prompt tokens TRL trains on: template(prompt) cut where template(prompt + answer) diverges.

    TRL tokenizes prompt and prompt+answer separately and starts the answer where they differ. With
    most tokenizers that is the end of the prompt; with one that merges the generation prompt's last
    token into the answer (e.g. '\n\n' + 'The' -> '\n', '\nThe'), TRL trains on the shorter prompt, and
    inference must send that same shorter prompt.
    """
    ids = encode_messages(tokenizer, prompt, generation_prompt=True)
    full = encode_messages(tokenizer, prompt + [{"role": "assistant", "content": answer}], generation_prompt=False)
    return ids[:common_prefix(ids, full)]


def prompt_ids(recipe: Recipe, tokenizer, text: str) -> list[int]:
    """Inference prompt for a preference-tuned model: exactly the prompt tokens TRL trained with."""
    return trained_prompt_ids(tokenizer, prompt_messages(text))


# ---------------------------------------------------------------- rows

class _Row:
    """Reads one raw row's fields, raising errors that name the file, line and field."""

    def __init__(self, row: dict, file: str, line: int, spec: DatasetSpec | None = None):
        self.row, self.file, self.line = row, file, line
        mapping = (spec.message_property_mappings or {}) if spec else {}  # the dataset's field names (Axolotl's)
        self.role = mapping.get("role") or (spec.message_field_role if spec else None) or "role"
        self.content = mapping.get("content") or (spec.message_field_content if spec else None) or "content"
        self.role_of = {a: r for r, aliases in ((spec.roles if spec else None) or {}).items() for a in aliases}
        self.field_messages = (spec.field_messages if spec else None) or "messages"
        self.answers = ((spec.field_chosen if spec else None) or "chosen", (spec.field_rejected if spec else None) or "rejected")

    def fail(self, name: str, problem: str, fix: str):
        raise DataError(Problem(f"field {name!r}: {problem}", self.file, line=self.line, fix=fix))

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


def convert(ds, spec: DatasetSpec, recipe: Recipe, tokenizer, files: list[str], where: str, kto: bool | None = None):
    """Map raw rows to TRL's conversational columns plus a `_drop` reason column (kto: unpaired rows)."""
    _, shape = parse_type(spec, recipe.source, where)
    kto = recipe.rl == "kto" if kto is None else kto
    label_file = files[0] if len(files) == 1 else spec.path

    def one(row, idx):
        r = _Row(row, label_file, idx + 1, spec)
        prompt, answers = read_row(r, shape, kto)
        reason = _drop_reason(prompt, answers, tokenizer, recipe.sequence_len)
        turn = [[{"role": "assistant", "content": a}] for a in answers]
        out = {"prompt": prompt, "_drop": reason}
        out.update({"completion": turn[0], "label": r.label()} if kto else {"chosen": turn[0], "rejected": turn[1]})
        return out

    return ds.map(one, with_indices=True, remove_columns=ds.column_names, desc=f"reading {Path(spec.path).name}")


def prepare(recipe: Recipe, tokenizer) -> PreferenceData:
    """Every `datasets:` entry read, converted, filtered (counted), shuffled and split."""
    import datasets

    from ftkit.data.files import load_raw

    parts, per_dataset = [], {}
    for i, spec in enumerate(recipe.datasets):
        raw, files = load_raw(spec, recipe, f"datasets.{i}")
        converted = convert(raw, spec, recipe, tokenizer, files, f"datasets.{i}")
        counts = Counter(converted["_drop"])
        kept = converted.filter(lambda r: r["_drop"] == "").remove_columns("_drop")
        per_dataset[f"{i}:{Path(spec.path).name}"] = {"rows_in": len(raw), "kept": len(kept),
                                                      "dropped": {r: counts.get(r, 0) for r in DROP_REASONS}}
        parts.append(kept)
    dropped = {r: sum(d["dropped"][r] for d in per_dataset.values()) for r in DROP_REASONS}
    rows_in = sum(d["rows_in"] for d in per_dataset.values())
    ds = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    if len(ds) == 0:
        raise DataError(Problem(f"no usable preference rows: {dropped['empty']} with an empty field, "
                                f"{dropped['identical']} with chosen == rejected, {dropped['too_long']} longer than "
                                f"sequence_len={recipe.sequence_len}", recipe.source, "datasets",
                                fix="check the dataset type matches the rows' fields, or raise sequence_len"))
    if recipe.shuffle_merged_datasets:
        ds = ds.shuffle(seed=recipe.seed)
    duplicates = 0
    if recipe.dataset_exact_deduplication:
        from ftkit.data.dedup import drop_exact_duplicates

        ds, duplicates = drop_exact_duplicates(ds)
    ev = None
    if recipe.val_set_size:
        size = recipe.val_set_size if recipe.val_set_size < 1 else int(recipe.val_set_size)
        split = ds.train_test_split(test_size=size, seed=recipe.seed)
        ds, ev = split["train"], split["test"]
    stats = {"rows_in": rows_in, "kept": rows_in - sum(dropped.values()) - duplicates, "dropped": dropped,
             "dropped_duplicate": duplicates,
             "train_rows": len(ds), "eval_rows": len(ev) if ev is not None else 0,
             "sequence_len": recipe.sequence_len, "per_dataset": per_dataset}
    return PreferenceData(ds, ev, stats)
