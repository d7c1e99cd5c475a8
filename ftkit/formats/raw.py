"""Template-free formats: completion (raw text), input_output (labelled segments), pretokenized ids."""
from __future__ import annotations

from ftkit.formats.alpaca import InstructStrategy
from ftkit.formats.base import PromptStrategy, RowError, Segment, text_field
from ftkit.formats.tokenize import IGNORE


def split_long_rows(cols: dict, size: int) -> dict:
    """Rows longer than `size` tokens -> consecutive chunks of `size` (the last one shorter), as Axolotl does for
    raw text: only the first chunk starts with bos, only the last ends with eos; a 1-token tail is dropped
    (it has no next token to predict). Columns are lists of rows (input_ids, labels, attention_mask).

    Example (size 4): input_ids [bos a b c d e f eos] -> [bos a b c], [d e f eos]
    """
    out: dict[str, list] = {k: [] for k in cols}
    for i, ids in enumerate(cols["input_ids"]):
        for start in range(0, len(ids), size):
            if len(ids) - start < 2 and start:
                continue
            for k in cols:
                out[k].append(cols[k][i][start:start + size])
    return out


class CompletionStrategy(PromptStrategy):
    """{"text": "..."} -> [(text, True)]: every token is trained (bos masked, eos trained).

    With `chunk` (sequence_len), rows longer than it are split into chunks of that many tokens (Axolotl's
    behaviour for raw text) instead of being dropped as too long.
    """

    def __init__(self, name: str, train_on_inputs: bool = False, field: str | None = None, chunk: int | None = None):
        super().__init__(name, train_on_inputs)
        self.field = field or "text"
        self.chunk = chunk

    def segments(self, row: dict) -> list[Segment]:
        return [Segment(text_field(row, self.field, self.name), True)]

    def encode_batch(self, rows: list[dict], tokenizer) -> dict:
        """Rows -> ids; an empty (or blank) text has nothing to learn: its labels are all masked, so the length
        filter drops it and counts it under "nothing to train on" (bos + a trained eos would teach the model
        to stop at once)."""
        cols = super().encode_batch(rows, tokenizer)
        for i, row in enumerate(rows):
            if not row[self.field].strip():
                cols["labels"][i] = [IGNORE] * len(cols["labels"][i])
        return split_long_rows(cols, self.chunk) if self.chunk else cols


class InputOutputStrategy(PromptStrategy):
    """{"segments": [{"label": bool, "text": str}, ...]} -> the segments as written.

    No bos/eos is added: the text carries every special token it needs (written as text, e.g. "</s>").
    """

    add_bos = False
    eos_count = 0

    def segments(self, row: dict) -> list[Segment]:
        segs = row.get("segments")
        if not isinstance(segs, list) or not segs:
            raise RowError("segments", f"field 'segments' must be a non-empty list, got {type(segs).__name__}",
                           'write segments as [{"label": false, "text": "..."}, {"label": true, "text": "..."}]')
        out = []
        for i, s in enumerate(segs):
            if not isinstance(s, dict) or not isinstance(s.get("text"), str) or not isinstance(s.get("label"), bool):
                raise RowError(f"segments[{i}]", f"a segment needs text (string) and label (true/false), got {s!r:.60}",
                               'write {"label": true, "text": "..."}')
            out.append(Segment(s["text"], s["label"]))
        return out


class PretokenizedStrategy(PromptStrategy):
    """{"input_ids": [...], "labels": [...]?} used as given (labels default to input_ids)."""

    def __init__(self, name: str, train_on_inputs: bool = False, vocab_size: int | None = None):
        super().__init__(name, train_on_inputs)
        self.vocab_size = vocab_size

    def _ids(self, row: dict, key: str, allow_ignore: bool) -> list[int]:
        ids = row.get(key)
        ok = isinstance(ids, list) and ids and all(isinstance(t, int) and not isinstance(t, bool) for t in ids)
        if not ok:
            raise RowError(key, f"field {key!r} must be a non-empty list of integers", f"write {key} as [1, 2, 3]")
        bad = [t for t in ids if not (0 <= t < (self.vocab_size or 1 << 62) or (allow_ignore and t == IGNORE))]
        if bad:
            raise RowError(key, f"token id {bad[0]} is outside the vocabulary (size {self.vocab_size})",
                           "tokenize with the recipe's tokenizer")
        return ids

    def encode_batch(self, rows: list[dict], tokenizer) -> dict:
        cols: dict[str, list] = {"input_ids": [], "labels": [], "attention_mask": []}
        for i, row in enumerate(rows):
            try:
                ids = self._ids(row, "input_ids", False)
                labels = self._ids(row, "labels", True) if row.get("labels") is not None else list(ids)
                if len(labels) != len(ids):
                    raise RowError("labels", f"labels has {len(labels)} entries but input_ids has {len(ids)}",
                                   "give one label per token (-100 for tokens not trained)")
            except RowError as e:
                e.row = i
                raise
            cols["input_ids"].append(ids)
            cols["labels"].append(labels)
            cols["attention_mask"].append([1] * len(ids))
        return cols

    def check_row(self, row: dict, tokenizer) -> None:
        self.encode_batch([row], tokenizer)  # no tokenizer involved: the id checks alone

    def prompt_text(self, row: dict) -> str:
        return ""  # no text to compare: parity is not checked for pretokenized rows


class AutoStrategy(InstructStrategy):
    """A dataset with no `type:`: rows that carry input_ids pass through as tokenized (Axolotl's rule), the
    others are read as alpaca. Decided per batch of rows (its first row)."""

    def __init__(self, train_on_inputs: bool, vocab_size: int):
        super().__init__("alpaca", train_on_inputs)
        self.tokenized = PretokenizedStrategy("pretokenized", train_on_inputs, vocab_size=vocab_size)

    def encode_batch(self, rows: list[dict], tokenizer) -> dict:
        if rows and "input_ids" in rows[0]:
            return self.tokenized.encode_batch(rows, tokenizer)
        return super().encode_batch(rows, tokenizer)

    def check_row(self, row: dict, tokenizer) -> None:
        (self.tokenized if "input_ids" in row else super()).check_row(row, tokenizer)

    def prompt_text(self, row: dict) -> str:
        return "" if "input_ids" in row else super().prompt_text(row)
