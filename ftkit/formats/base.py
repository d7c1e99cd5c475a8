"""The strategy interface every prompt format implements, and what they share: row checks, role names."""
from __future__ import annotations

from ftkit.formats.tokenize import Segment, encode_batch


DEFAULT_ROLES = {"system": ["system"], "user": ["user", "human"], "assistant": ["assistant", "gpt", "model"],
                 "tool": ["tool"]}


def role_names(roles: dict[str, list[str]] | None) -> dict[str, str]:
    """Role name in the data -> role: `roles` (else DEFAULT_ROLES), plus the roles' own names, which always pass."""
    out = {r: r for r in DEFAULT_ROLES}
    out.update({alias: role for role, aliases in (roles or DEFAULT_ROLES).items() for alias in aliases})
    return out


def chat_roles(spec, renamed: dict[str, str] | None = None) -> tuple[dict[str, str], set[str]]:
    """(role name in the data -> role, the roles trained) of a conversation dataset entry: `roles:` (keys renamed
    by `renamed`), with sharegpt's field_human / field_model added to the user / assistant names. Trained roles go
    through the mapping, as in Axolotl: roles_to_train [gpt] trains the assistant turns."""
    roles = {k: list(v) for k, v in (spec.roles or {}).items()}
    if spec.type == "sharegpt" and (spec.field_human or spec.field_model):
        roles = roles or {k: list(v) for k, v in DEFAULT_ROLES.items()}
        roles["user"] = roles.get("user", []) + [spec.field_human] * bool(spec.field_human)
        roles["assistant"] = roles.get("assistant", []) + [spec.field_model] * bool(spec.field_model)
    role_of = role_names({(renamed or {}).get(k, k): v for k, v in roles.items()} or None)
    return role_of, {role_of.get(r, r) for r in spec.roles_to_train or ["assistant"]}


class RowError(Exception):
    """One bad row: which field, what is wrong, the fix. data.py adds the file and line."""

    def __init__(self, field: str, problem: str, fix: str):
        super().__init__(field, problem, fix)
        self.field, self.problem, self.fix = field, problem, fix
        self.row: int | None = None  # index inside the batch, set by encode_batch


def text_field(row: dict, name: str, fmt: str, *, required: bool = True) -> str:
    """row[name] as text; a missing or non-text value is a RowError that names the format's fields."""
    value = row.get(name)
    if value is None:
        if required:
            raise RowError(name, f"row has no {name!r} field",
                           f"every {fmt} row needs it; data_samples/README.md shows the {fmt} row shape")
        return ""
    if not isinstance(value, str):
        raise RowError(name, f"field {name!r} must be text, got {type(value).__name__} {str(value)[:40]!r}",
                       f"store {name} as a JSON string")
    return value


class PromptStrategy:
    """Turns a row into segments; `encode_batch` turns rows into input_ids/labels via tokenize.py.

    `add_bos=None` follows the tokenizer's habit; `eos_count` eos tokens close each example (trained).
    """

    add_bos: bool | None = None
    eos_count: int = 1

    def __init__(self, name: str, train_on_inputs: bool = False):
        self.name = name
        self.train_on_inputs = train_on_inputs

    def segments(self, row: dict) -> list[Segment]:
        raise NotImplementedError

    def encode_batch(self, rows: list[dict], tokenizer) -> dict:
        """Rows -> {"input_ids", "labels", "attention_mask"} lists; a bad row raises RowError with .row set."""
        segs = []
        for i, row in enumerate(rows):
            try:
                segs.append(self.segments(row))
            except RowError as e:
                e.row = i
                raise
        return encode_batch(segs, tokenizer, train_on_inputs=self.train_on_inputs, add_bos=self.add_bos,
                            eos_count=self.eos_count)

    def check_row(self, row: dict, tokenizer) -> None:
        """Raise RowError when `row` cannot be encoded: encode_batch's checks without the tokenizing."""
        self.segments(row)

    def prompt_segments(self, row: dict) -> list[Segment]:
        """The segments fed at inference: everything before the first trained segment."""
        out = []
        for seg in self.segments(row):
            if seg.trainable:
                break
            out.append(seg)
        return out

    def prompt_text(self, row: dict) -> str:
        """The text an inference server is sent for this row (what precedes the first trained token)."""
        return "".join(seg.text for seg in self.prompt_segments(row))

    def prompt_for(self, text: str) -> str:
        """The prompt text for a user's text (ftkit infer, before/after samples); template-free formats send it as is."""
        return text


def row_errors(strategy: PromptStrategy, rows, tokenizer, first: int = 5) -> tuple[list[tuple[int, RowError]], int]:
    """Check every row of `rows` (an iterable of dicts): (the first `first` bad rows as (index, RowError), how many
    rows are bad in all). encode_batch stops at the first bad row; after it did, this tells the user how many
    more there are, so one run lists what to fix instead of one row per run."""
    shown: list[tuple[int, RowError]] = []
    total = 0
    for i, row in enumerate(rows):
        try:
            strategy.check_row(row, tokenizer)
        except RowError as e:
            total += 1
            if len(shown) < first:
                shown.append((i, e))
    return shown, total
