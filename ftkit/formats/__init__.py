"""Prompt formats, selected by `datasets[].type`: the alpaca family (alpaca.py, table-driven), conversations
rendered by a chat template (chat.py) or a FastChat template (fastchat.py: sharegpt with `conversation:`),
and template-free formats (raw.py).

A strategy turns one data row into segments `[(text, trainable)]`; `tokenize.py` turns segments into
input_ids / labels / attention_mask, the one place masking happens. prompt.py resolves the run's prompt once
(`Prompt`: each dataset's strategy, the chat template, stop tokens, inference ids, the serving template), so
training and inference prompts agree by design; data/parity.py proves it.
"""
from __future__ import annotations

from ftkit.formats.alpaca import AlpacaStrategy, InstructStrategy
from ftkit.formats.base import PromptStrategy, RowError, Segment, row_errors
from ftkit.formats.chat import ChatTemplateStrategy
from ftkit.formats.prompt import Prompt


def get_strategy(type_name: str, train_on_inputs: bool = False) -> PromptStrategy:
    """An alpaca-family format by name (no tokenizer needed), e.g. for the notebooks' masking lesson."""
    return InstructStrategy(type_name, train_on_inputs)


__all__ = ["AlpacaStrategy", "ChatTemplateStrategy", "Prompt", "PromptStrategy", "RowError", "Segment", "get_strategy",
           "row_errors"]
