"""The strategy interface every prompt format implements."""
from __future__ import annotations

from typing import NamedTuple


class Segment(NamedTuple):
    """A piece of an example: its text and whether the model is trained to produce it."""

    text: str
    trainable: bool


class PromptStrategy:
    """Turns a row into segments. `required_fields` are checked per row with a clear error."""

    required_fields: tuple[str, ...] = ()

    def __init__(self, **options):
        self.options = options

    def segments(self, row: dict) -> list[Segment]:
        raise NotImplementedError

    def prompt_segments(self, row: dict) -> list[Segment]:
        """The segments fed at inference: everything before the first trained segment."""
        out = []
        for seg in self.segments(row):
            if seg.trainable:
                break
            out.append(seg)
        return out

    def inference_row(self, text: str) -> dict:
        """A row built from a user's prompt text, for `ftkit infer` and before/after samples."""
        raise NotImplementedError
