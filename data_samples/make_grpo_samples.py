"""Writes the GRPO and reward-model sample sets in data_samples/ (deterministic; run from the repo root).

    python data_samples/make_grpo_samples.py

Files:
    arithmetic.jsonl          question / answer: "What is 3 plus 4?" / "7"    GRPO prompts (rl: grpo), read through
                                                                              type: rewards.arithmetic_prompt
    arithmetic_heldout.jsonl  the same, sums never trained on                  GRPO test_datasets (before/after)
    reward_pairs.jsonl        input / chosen / rejected                        type: bradley_terry.chat_template
    reward_heldout.jsonl      the same, questions never trained on             reward-model test_datasets

The GRPO task is verifiable: the answer is a number (recipes/llama/rewards.py scores its format and whether it
is the right sum). The reward-model pairs follow one rule a tiny model can learn from a few dozen steps: the
chosen answer is the right sum stated as a number ("7"), the rejected one the same sum written out in words
("seven"), so the score head must tell digits from words, whatever the question.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen"]


def sums() -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(a, b) with 1 <= a, b <= 9, shuffled; every fifth one held out."""
    pairs = [(a, b) for a in range(1, 10) for b in range(1, 10)]
    random.Random(0).shuffle(pairs)
    return [p for i, p in enumerate(pairs) if i % 5], [p for i, p in enumerate(pairs) if not i % 5]


def question(a: int, b: int) -> str:
    return f"What is {a} plus {b}?"


def prompt_rows(pairs) -> list[dict]:
    return [{"question": question(a, b), "answer": str(a + b)} for a, b in pairs]


def reward_rows(pairs) -> list[dict]:
    """Chosen: the sum as digits; rejected: the same sum in words."""
    return [{"input": question(a, b), "chosen": f"{a + b}", "rejected": WORDS[a + b]} for a, b in pairs]


def write(name: str, rows: list[dict]) -> None:
    (HERE / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def main() -> None:
    train, heldout = sums()
    write("arithmetic.jsonl", prompt_rows(train))
    write("arithmetic_heldout.jsonl", prompt_rows(heldout))
    write("reward_pairs.jsonl", reward_rows(train))
    write("reward_heldout.jsonl", reward_rows(heldout))


if __name__ == "__main__":
    main()
