"""Reward functions and the prompt transform of recipes/llama/grpo.yml, named there by import path
(`rewards.number_format`): ftkit imports this file from the recipe's folder (Axolotl: the working directory).

TRL calls each reward function with the sampled completions, [[{"role": "assistant", "content": TEXT}], ...],
and every other column of the dataset as a keyword argument (here `answer`, one per completion); it wants one
float per completion back (None: not scored). The transform has Axolotl's shape: called with the recipe, it
returns (map_fn, map kwargs), and map_fn turns one raw row into the prompt (chat messages) and the columns the
rewards read.
"""
import re

NUMBER = re.compile(r"-?\d+")


def arithmetic_prompt(cfg, *args, **kwargs):
    """{"question": "What is 3 plus 4?", "answer": "7"} -> {"prompt": [user message], "answer": "7"}."""

    def to_prompt(row):
        return {"prompt": [{"role": "user", "content": row["question"]}], "answer": row["answer"]}

    return to_prompt, {"remove_columns": ["question"]}


def _text(completion) -> str:
    return completion[0]["content"].strip()


def number_format(completions, **kwargs) -> list[float]:
    """Format: the share of the answer's characters that are digits ("7" -> 1.0, "seven" -> 0.0, "7 apples" ->
    1/8): partial credit, so a model that writes any digit already gets a signal to climb."""
    return [sum(ch.isdigit() for ch in _text(c)) / max(len(_text(c)), 1) for c in completions]


def correct_sum(completions, answer, **kwargs) -> list[float]:
    """Correctness: 1.0 when the answer's first number is the sum, else 0.0."""
    found = [NUMBER.search(_text(c)) for c in completions]
    return [1.0 if m and m.group() == str(a) else 0.0 for m, a in zip(found, answer)]
