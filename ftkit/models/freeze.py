"""`unfrozen_parameters`: train only the parameters whose names match, freeze the rest (Axolotl's pattern rules).

A pattern is a regex matched from the start of the parameter name where `.` is a literal dot (unless it is
followed by `+`), so `model.layers.1[0-9]+.mlp` means layers 10-19's MLPs and `^lm_head.*` the output head.
A trailing `[a:b]` / `[a:]` / `[:b]` / `[i]` trains only those rows of the matched tensors: the other rows'
gradients are zeroed (weight decay still touches them, as in Axolotl).

With an adapter the patterns are matched against the base model's names (without peft's
`base_model.model.` prefix) and the adapter's weights stay trained: the matching base weights are trained
besides it (Axolotl matches the wrapped names, where such patterns match nothing).
"""
from __future__ import annotations

import re

from ftkit.errors import FtkitError
from ftkit.log import log

PEFT_PREFIX = "base_model.model."


def parse(pattern: str) -> tuple[re.Pattern, tuple[int, int | None] | None]:
    """'model.embed_tokens.weight$[:32000]' -> (compiled regex, (0, 32000))."""
    rows = None
    if m := re.match(r"^(.+)\[([0-9]*)(:?)([0-9]*)\]$", pattern):  # [a:b], [a:], [:b] or [i]
        pattern, start, colon, end = m.groups()
        first = int(start or 0)
        rows = (first, int(end) if end else None) if colon or not start else (first, first + 1)
    try:
        return re.compile(re.sub(r"\.(?!\+)", r"\\.", pattern)), rows
    except re.error as e:
        raise FtkitError(f"unfrozen_parameters pattern {pattern!r} is not a valid regex ({e})", where="unfrozen_parameters",
                         fix="write e.g. ^model.layers.1[0-9]+.mlp") from None


def _zero_rows_outside(keep: list[tuple[int, int | None]]):
    """A gradient hook that zeroes every row outside the (start, end) ranges (end None: to the last row)."""
    def hook(grad):
        trained = grad.new_zeros(grad.shape[0], dtype=bool)
        for start, end in keep:
            trained[start:end] = True
        out = grad.clone()
        out[~trained] = 0
        return out

    return hook


def unfreeze_only(model, patterns: list[str], keep_adapter: bool = False) -> int:
    """Freeze every parameter except those matching a pattern (and, with keep_adapter, the adapter's own);
    returns the number of trainable parameters."""
    parsed = [parse(p) for p in patterns]
    used: set[int] = set()
    for name, param in model.named_parameters():
        base_name = name.removeprefix(PEFT_PREFIX) if keep_adapter else name
        adapter_weight = keep_adapter and param.requires_grad and ("lora_" in name or "modules_to_save" in name)
        matched = [i for i, (regex, _) in enumerate(parsed) if regex.match(base_name)]
        used.update(matched)
        if matched and not param.is_floating_point():
            raise FtkitError(f"unfrozen_parameters matches {base_name}, which is quantized and cannot be trained",
                             where="unfrozen_parameters", fix="narrow the pattern, or load the base unquantized")
        param.requires_grad = bool(matched) or adapter_weight
        if ranges := [parsed[i][1] for i in matched if parsed[i][1]]:
            param.register_hook(_zero_rows_outside(ranges))
    trainable = sum(param.numel() for param in model.parameters() if param.requires_grad)
    unused = [p for i, p in enumerate(patterns) if i not in used]
    log.info(f"unfrozen_parameters: {trainable:,} parameters trained" +
             (f"; these patterns match nothing: {unused}" if unused else ""))
    if trainable == 0:
        raise FtkitError("unfrozen_parameters leaves nothing to train", where="unfrozen_parameters",
                         fix="check the patterns against model.named_parameters() (a `.` is a literal dot)")
    return trainable
