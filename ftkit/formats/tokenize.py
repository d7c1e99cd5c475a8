"""Segments -> input_ids, labels, attention_mask: the one place where masking happens.

Adjacent segments with the same trainability are joined and tokenized as one string; each joined
piece is tokenized on its own (no special tokens) and the ids are concatenated. So the prompt (all
the text before the first trained piece) is tokenized exactly as an inference server tokenizes the
prompt string, and training and inference agree on every prompt token (ftkit/parity.py checks it).
bos goes first when asked (or when the tokenizer habitually adds it); `eos_count` eos tokens close the
example and are trained, which is what teaches the model to stop.

Example (tiny llama, alpaca, train_on_inputs=False):
    [("...### Response:\\n", False), ("2 plus 3 is 5.", True)]
    input_ids: [bos, p1 .. pk, a1 .. am, eos]
    labels:    [-100, -100 .. -100, a1 .. am, eos]
"""
from __future__ import annotations

from itertools import groupby
from typing import NamedTuple

IGNORE = -100  # the label of a token that is not trained (PyTorch's cross-entropy ignore_index)


class Segment(NamedTuple):
    """A piece of an example: its text and whether the model is trained to produce it."""

    text: str
    trainable: bool


def uses_bos(tokenizer) -> bool:
    """Does this tokenizer put bos in front of encoded text (llama-style) or not (gpt2/qwen-style)?"""
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0] == bos


def merge_segments(segments: list[Segment]) -> list[Segment]:
    """Join neighbours with the same trainability; drop empty ones. [(a,F),(b,F),(c,T)] -> [(ab,F),(c,T)]."""
    return [Segment("".join(seg.text for seg in run), trained)
            for trained, run in groupby((seg for seg in segments if seg.text), key=lambda seg: bool(seg.trainable))]


def encode_batch(batch: list[list[Segment]], tokenizer, *, train_on_inputs: bool = False,
                 add_bos: bool | None = None, eos_count: int = 1) -> dict:
    """Many rows' segments in one tokenizer call (fast path); returns column lists."""
    if add_bos is None:
        add_bos = uses_bos(tokenizer)
    bos = [tokenizer.bos_token_id] if add_bos and tokenizer.bos_token_id is not None else []
    eos = [tokenizer.eos_token_id] * eos_count if tokenizer.eos_token_id is not None else []
    merged = [merge_segments(segs) for segs in batch]
    texts = [seg.text for segs in merged for seg in segs]
    pieces = iter(tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else [])
    cols: dict[str, list] = {"input_ids": [], "labels": [], "attention_mask": []}
    for segs in merged:
        ids, labels = list(bos), [IGNORE] * len(bos)
        for seg in segs:
            piece = next(pieces)
            ids += piece
            labels += piece if (seg.trainable or train_on_inputs) else [IGNORE] * len(piece)
        ids += eos
        labels += eos
        cols["input_ids"].append(ids)
        cols["labels"].append(labels)
        cols["attention_mask"].append([1] * len(ids))
    return cols


def encode_segments(segments: list[Segment], tokenizer, *, train_on_inputs: bool = False,
                    add_bos: bool | None = None, eos_count: int = 1) -> dict:
    """One example: input_ids, labels (-100 where not trained), attention_mask."""
    cols = encode_batch([segments], tokenizer, train_on_inputs=train_on_inputs, add_bos=add_bos, eos_count=eos_count)
    return {k: v[0] for k, v in cols.items()}


def encode_prompt(segments: list[Segment], tokenizer, *, add_bos: bool | None = None) -> list[int]:
    """The inference prompt: the same encoding as training, without labels and without eos."""
    return encode_segments(segments, tokenizer, add_bos=add_bos, eos_count=0)["input_ids"]


def encode_prompt_text(text: str, tokenizer, *, add_bos: bool | None = None) -> list[int]:
    """A prompt string as inference feeds it: bos (if the format uses one) + the string's tokens."""
    return encode_prompt([Segment(text, False)], tokenizer, add_bos=add_bos)
