"""Train/inference prompt parity: the tokens inference feeds equal the training tokens before the answer.

For sampled rows of every dataset this compares
  - the training example (input_ids, labels) as prepare() builds it, with
  - the prompt ids inference feeds for the same row (the strategy's prompt text
    tokenized as one string, exactly what `ftkit infer` does), and for chat formats also with
    `tokenizer.apply_chat_template(..., add_generation_prompt=True)` (what an HF/vLLM server does).
They must agree token for token up to the first trained token, and the first trained token must come
right after the prompt. The first mismatch is reported with the tokens on both sides.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from ftkit.formats import ChatTemplateStrategy, Prompt
from ftkit.formats.tokenize import IGNORE, encode_prompt_text
from ftkit.recipe import Recipe


@dataclass
class ParityReport:
    checked: int = 0
    skipped: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    later_turns: list[str] = field(default_factory=list)  # multi-turn history drift (a warning, not a failure)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def summary(self) -> str:
        head = (f"[ftkit] parity: {self.checked} rows checked, {len(self.mismatches)} mismatches"
                + (f", {len(self.skipped)} skipped" if self.skipped else ""))
        notes = [f"  note: {w}" for w in self.later_turns[:3]]
        if self.later_turns:
            notes.append(f"  note: {len(self.later_turns)} later turns differ when a server tokenizes the whole history "
                         "as one string (this tokenizer splits text differently at turn boundaries); single-turn "
                         "prompts are unaffected")
        return "\n".join([head] + [f"  MISMATCH {m}" for m in self.mismatches] + notes +
                          [f"  skipped: {s}" for s in self.skipped])


def _tok(tokenizer, ids: list[int], k: int) -> str:
    return f"{tokenizer.convert_ids_to_tokens(ids[k])!r} ({ids[k]})" if k < len(ids) else "<end>"


def first_mismatch(train_ids: list[int], labels: list[int], prompt: list[int], tokenizer,
                   train_on_inputs: bool = False) -> str | None:
    """None when `prompt` equals the training tokens up to the first trained token; else a readable reason."""
    k = next((i for i, (a, b) in enumerate(zip(train_ids, prompt)) if a != b), None)
    if k is None and len(prompt) > len(train_ids):
        k = len(train_ids)
    if k is not None:
        context = tokenizer.decode(prompt[max(0, k - 6):k])
        return (f"token {k}: training has {_tok(tokenizer, train_ids, k)}, inference has {_tok(tokenizer, prompt, k)} "
                f"(after {context!r})")
    first = next((i for i, t in enumerate(labels) if t != IGNORE), len(labels))
    if not train_on_inputs and first != len(prompt):
        return (f"the prompt is {len(prompt)} tokens but the first trained token is {first} "
                f"({_tok(tokenizer, train_ids, first)}): training and inference split prompt and answer differently")
    return None


def check_rows(strategy, rows: list[dict], tokenizer, label: str, report: ParityReport, train_on_inputs=False):
    """Compare training and inference tokens for these rows; append findings to report."""
    for idx, row in rows:
        text = strategy.prompt_text(row)
        if not text:
            report.skipped.append(f"{label} row {idx + 1}: no prompt text (pretokenized, or nothing trained)")
            continue
        ex = strategy.encode_batch([row], tokenizer)
        ids, labels = ex["input_ids"][0], ex["labels"][0]
        # what `ftkit infer` feeds: the prompt text tokenized as one string; for chat formats also a server's
        candidates = [("ftkit infer", encode_prompt_text(text, tokenizer, add_bos=strategy.add_bos))]
        if isinstance(strategy, ChatTemplateStrategy):
            candidates.append(("apply_chat_template", strategy.served_ids(strategy.prompt_messages(row))))
        report.checked += 1
        for who, prompt in candidates:
            if (why := first_mismatch(ids, labels, prompt, tokenizer, train_on_inputs)) is not None:
                report.mismatches.append(f"{label} row {idx + 1} ({who}): {why}")
                break
        if isinstance(strategy, ChatTemplateStrategy):
            _later_turns(strategy, row, ids, tokenizer, f"{label} row {idx + 1}", report)


def _later_turns(strategy, row: dict, ids: list[int], tokenizer, label: str, report: ParityReport) -> None:
    """Turns after the first trained one: does the string-tokenized history equal the training tokens?"""
    messages = strategy.messages(row)
    msgs = [{"role": m["role"], "content": m["content"]} for m in messages]
    trained = [i for i, m in enumerate(messages) if m["role"] in strategy.roles_to_train and m["train"]]
    for turn in trained[1:]:
        history = strategy.served_ids(msgs[:turn])
        k = next((i for i, (a, b) in enumerate(zip(ids, history)) if a != b), None)
        if k is not None:
            report.later_turns.append(f"{label} message {turn}: token {k}: training has {_tok(tokenizer, ids, k)}, "
                                      f"the whole-history string gives {_tok(tokenizer, history, k)}")


def check_parity(recipe: Recipe, tokenizer, rows: int = 8, seed: int = 0) -> ParityReport:
    """Sample `rows` rows of every dataset in the recipe and check train/inference prompt parity."""
    from ftkit.data.files import load_raw

    report = ParityReport()
    rng = random.Random(seed)
    prompt = Prompt(recipe, tokenizer)
    for i, spec in enumerate(recipe.datasets):
        raw, files, _ = load_raw(spec, recipe, f"datasets.{i}")
        strategy = prompt.strategy(spec, f"datasets.{i}")
        picked = sorted(rng.sample(range(len(raw)), min(rows, len(raw))))
        check_rows(strategy, [(j, raw[j]) for j in picked], tokenizer, f"datasets.{i} ({files[0]})", report,
                   recipe.train_on_inputs)
    return report
