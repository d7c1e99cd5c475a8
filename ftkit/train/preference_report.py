"""What a preference run changed: log-probs of held-out chosen vs rejected answers, and the plots.

The trainers' logged reward margin is measured on training batches; the check that the preference
generalizes is on held-out pairs: logp(chosen) - logp(rejected), summed over the answer tokens
(the chat template's end-of-turn included), before and after training.
"""
from __future__ import annotations

import statistics

from ftkit.data import Prepared
from ftkit.data.files import load_raw
from ftkit.data.preference import (
    REASONS,
    common_prefix,
    convert_rows,
    encode_messages,
    keep_marked,
    trained_prompt_ids,
)
from ftkit.log import log
from ftkit.recipe import Recipe

ANSWERS = ("chosen", "rejected", "completion")


def heldout(recipe: Recipe, tokenizer, prepared: Prepared | None, convert, say: bool = True):
    """Held-out rows for the before/after measurement: test_datasets, each read by `convert` (a data module's, so
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
