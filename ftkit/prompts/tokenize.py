"""Segments -> input_ids, labels, attention_mask: the one place where masking happens.

Each segment is tokenized on its own (no special tokens) and the ids are concatenated, so the tokens
of the prompt segments are exactly what inference feeds (inference tokenizes the same segments the
same way). bos goes first when the tokenizer uses one; eos closes the example and is trained, which is
what teaches the model to stop.

Example (tiny llama, alpaca, train_on_inputs=False):
    [("...### Response:\\n", False), ("2 plus 3 is 5.", True)]
    input_ids: [bos, p1 .. pk, a1 .. am, eos]
    labels:    [-100, -100 .. -100, a1 .. am, eos]
"""
from __future__ import annotations

from .base import Segment

IGNORE = -100


def uses_bos(tokenizer) -> bool:
    """Does this tokenizer put bos in front of encoded text (llama-style) or not (gpt2/qwen-style)?"""
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0] == bos


def encode_segments(segments: list[Segment], tokenizer, *, train_on_inputs: bool = False,
                    add_bos: bool | None = None, add_eos: bool = True) -> dict:
    """Tokenize segments into a training example; `add_bos=None` follows the tokenizer's own habit."""
    ids: list[int] = []
    labels: list[int] = []
    if add_bos is None:
        add_bos = uses_bos(tokenizer)
    if add_bos and tokenizer.bos_token_id is not None:
        ids.append(tokenizer.bos_token_id)
        labels.append(IGNORE)
    for seg in segments:
        if not seg.text:
            continue
        piece = tokenizer(seg.text, add_special_tokens=False)["input_ids"]
        ids += piece
        labels += piece if (seg.trainable or train_on_inputs) else [IGNORE] * len(piece)
    if add_eos and tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
        labels.append(tokenizer.eos_token_id)
    return {"input_ids": ids, "labels": labels, "attention_mask": [1] * len(ids)}


def encode_prompt(segments: list[Segment], tokenizer, *, add_bos: bool | None = None) -> list[int]:
    """The inference prompt: the same encoding as training, without labels and without eos."""
    return encode_segments(segments, tokenizer, add_bos=add_bos, add_eos=False)["input_ids"]
