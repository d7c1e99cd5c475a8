"""Prompt formats: one small module per format family, selected by `datasets[].type`.

A strategy turns one data row into segments `[(text, trainable)]`; `tokenize.py` turns segments into
input_ids / labels / attention_mask, the one place masking happens. Inference builds its prompt from
the same strategy (the row without its answer), so training and inference prompts agree by design.
"""
from __future__ import annotations

import difflib

from ..errors import FtkitError
from .alpaca import AlpacaStrategy
from .base import PromptStrategy, Segment

# type name -> strategy class. Add a format by adding a module and a line here.
STRATEGIES: dict[str, type[PromptStrategy]] = {
    "alpaca": AlpacaStrategy,
}


def get_strategy(type_name, *, file: str | None = None, where: str | None = None, **options) -> PromptStrategy:
    """The strategy for `datasets[].type`; an unknown type names the closest supported one."""
    if not isinstance(type_name, str) or type_name not in STRATEGIES:
        guess = difflib.get_close_matches(str(type_name), STRATEGIES, n=1, cutoff=0.3)
        fix = f"did you mean {guess[0]}? " if guess else ""
        raise FtkitError(f"unsupported dataset type {type_name!r}", file=file, where=where,
                         fix=fix + f"supported types: {', '.join(sorted(STRATEGIES))}")
    return STRATEGIES[type_name](**options)


__all__ = ["STRATEGIES", "PromptStrategy", "Segment", "get_strategy"]
