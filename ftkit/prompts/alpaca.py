"""Alpaca: instruction / input / output rows in the Stanford Alpaca prompt template."""
from __future__ import annotations

from .base import PromptStrategy, Segment

WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)
# Template text the tiny tokenizer is trained on, so prompts are a handful of tokens.
TEMPLATE_WORDS = [WITH_INPUT.format(instruction="", input=""), NO_INPUT.format(instruction="")] * 20


class AlpacaStrategy(PromptStrategy):
    """Row {"instruction", "input"?, "output"} -> [(prompt, False), (output, True)].

    Example: {"instruction": "Add 2 and 3.", "input": "", "output": "2 plus 3 is 5."} ->
    [("Below is ... ### Instruction:\\nAdd 2 and 3.\\n\\n### Response:\\n", False), ("2 plus 3 is 5.", True)]
    """

    required_fields = ("instruction", "output")

    def prompt_text(self, row: dict) -> str:
        inp = row.get("input") or ""
        if inp.strip():
            return WITH_INPUT.format(instruction=row["instruction"], input=inp)
        return NO_INPUT.format(instruction=row["instruction"])

    def segments(self, row: dict) -> list[Segment]:
        return [Segment(self.prompt_text(row), False), Segment(row["output"], True)]

    def inference_row(self, text: str) -> dict:
        return {"instruction": text, "input": "", "output": ""}
