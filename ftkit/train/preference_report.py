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
    common_prefix,
    convert_rows,
    encode_messages,
    trained_prompt_ids,
)
from ftkit.recipe import Recipe

ANSWERS = ("chosen", "rejected", "completion")


def heldout_rows(recipe: Recipe, tokenizer, data: Prepared | None = None) -> list[dict]:
    """Held-out pairs {prompt, chosen, rejected}: test_datasets if given, else the eval split (paired methods)."""
    rows = []
    for i, spec in enumerate(recipe.test_datasets):
        where = f"test_datasets.{i}"
        conv = convert_rows(load_raw(spec, recipe, where), spec, recipe, tokenizer, where, kto=False)
        rows += [r for r in conv if r["_drop"] == ""]
    if not rows and data is not None and data.eval is not None and recipe.rl != "kto":
        rows = list(data.eval)
    return [{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]} for r in rows]


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


def pair_scores(model, tokenizer, rows: list[dict]) -> dict:
    """Mean logp(chosen) - logp(rejected) over pairs, the fraction preferred, and each pair's margin."""
    if not rows:
        return {}
    was_training = model.training
    model.eval()
    chosen = [answer_logp(model, tokenizer, r["prompt"], r["chosen"]) for r in rows]
    rejected = [answer_logp(model, tokenizer, r["prompt"], r["rejected"]) for r in rows]
    model.train(was_training)
    margins = [c - r for c, r in zip(chosen, rejected)]
    return {"n": len(rows), "margin": statistics.fmean(margins), "accuracy": sum(m > 0 for m in margins) / len(rows),
            "logp_chosen": statistics.fmean(chosen), "logp_rejected": statistics.fmean(rejected), "margins": margins}


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
