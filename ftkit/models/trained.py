"""Loading what a run saved: base + adapter, or the full model, with the tokenizer it was trained with.

Two checks keep a wrong model from answering as the trained one: an adapter goes onto the base it was trained on
(the name ftkit or peft recorded with it, and the shape of every adapted layer), and a folder without a trained
model is an error, not a silent answer from the untrained base (that takes `untrained=True`, `--untrained`).
"""
from __future__ import annotations

import difflib
import json
import os
import re
from pathlib import Path

from ftkit.errors import FtkitError, Problem
from ftkit.log import log, quiet
from ftkit.models.folder import MARKER, read_marker
from ftkit.recipe import Recipe


def load_trained(recipe: Recipe, dequantize: bool = False, untrained: bool = False, allow_other_base: bool = False):
    """(model, tokenizer) after training: base + adapter (lora_model_dir or output_dir), or the full model.

    The base is loaded as it was trained (4/8-bit when the recipe says so); `dequantize=True` turns a
    quantized base back into plain weights in the recipe's dtype first (what merge-lora needs). `untrained`:
    the base model when no trained model is there. `allow_other_base`: the adapter was trained on a copy of
    base_model under another name (its layer shapes are checked all the same).
    """
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftkit.models import adapters
    from ftkit.models import load as models

    out = Path(recipe.output_dir)
    adapter_dir = Path(recipe.lora_model_dir or out)
    where = "lora_model_dir" if recipe.lora_model_dir else "output_dir"
    if recipe.adapter and (adapter_dir / "adapter_config.json").is_file():
        check_base(recipe, adapter_dir, allow_other_base)
        tok = AutoTokenizer.from_pretrained(adapter_dir) if (adapter_dir / "tokenizer_config.json").is_file() \
            else models.load_tokenizer(recipe)
        with quiet():
            precision = models.resolve_precision(recipe)
        base = models.load_base(recipe, tok, precision)
        if dequantize and (recipe.load_in_4bit or recipe.load_in_8bit):
            log.info(f"dequantizing the {4 if recipe.load_in_4bit else 8}-bit base to {precision.dtype} "
                     "(the exact weights the adapter trained against) before merging")
            base = base.dequantize().to(precision.dtype)
        try:
            return adapters.load_adapter(base, adapter_dir, where=where), tok
        except RuntimeError as e:  # peft's "size mismatch for ...": the adapter was trained on another model
            raise _misfit(recipe, adapter_dir, where, e) from None
    if (out / "config.json").is_file():  # full fine-tune (a reward model: its classifier class), or ReLoRA (merged)
        cls = getattr(transformers, recipe.model_type, AutoModelForCausalLM)
        return cls.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    if not untrained:
        raise FtkitError(_no_model(recipe, adapter_dir if recipe.adapter else out, where))
    log.info(f"--untrained: answering with the base model {recipe.base_model} (no trained model in {out})")
    tok = models.load_tokenizer(recipe)
    return models.load_model(recipe, tok), tok


def _no_model(recipe: Recipe, folder: Path, key: str) -> Problem:
    """No trained model where the recipe points: say what is there, and the closest folder that holds one."""
    what = "no LoRA adapter (adapter_config.json)" if recipe.adapter else "no trained model (config.json)"
    state = "does not exist" if not folder.exists() else "holds nothing" if not any(folder.iterdir()) else \
        f"holds {', '.join(sorted(p.name for p in folder.iterdir())[:5])}"
    siblings = [p.name for p in folder.parent.iterdir() if p.is_dir()] if folder.parent.is_dir() else []
    close = difflib.get_close_matches(folder.name, siblings, n=1, cutoff=0.6)
    hint = f"did you mean {folder.parent / close[0]}? " if close and close[0] != folder.name else ""
    return Problem(f"{what} in {folder} (it {state})", recipe.source, key, recipe.line_of(key),
                   hint + ("point it at the output_dir of a LoRA/QLoRA run" if key == "lora_model_dir" else
                           f"point {key} at a finished run, train first (ftkit train RECIPE)")
                   + ", or pass --untrained to answer with the untrained base model")


def recorded_base(adapter_dir: Path) -> tuple[str | None, str]:
    """(the base model an adapter was trained on, where that is written): ftkit's marker holds base_model as the
    recipe wrote it; peft's adapter_config.json the path or hub id it loaded."""
    marker = read_marker(adapter_dir) or {}
    if "base_model" in marker.get("training_options", {}):
        return marker["training_options"]["base_model"], MARKER
    try:
        config = json.loads((adapter_dir / "adapter_config.json").read_text())
        return config.get("base_model_name_or_path"), "adapter_config.json"
    except (OSError, ValueError):
        return None, ""


def _same_model(recorded: str, base_model: str) -> bool:
    """The same name, or the same folder however it is written (peft records a twin by its built folder)."""
    from ftkit.models.load import resolve_model_path

    if recorded == base_model:
        return True
    a, b = resolve_model_path(recorded), resolve_model_path(base_model)
    return a == b or (os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b))


def check_base(recipe: Recipe, adapter_dir: Path, allow_other_base: bool = False) -> None:
    """The adapter was trained on base_model (by the name recorded with it), or the user said it is a copy."""
    recorded, source = recorded_base(adapter_dir)
    if not recorded or _same_model(recorded, recipe.base_model):
        return
    what = (f"the adapter in {adapter_dir} was trained on {recorded!r} ({source} says so), but base_model is "
            f"{recipe.base_model!r}: on another base its updates change the wrong weights, with no error")
    if allow_other_base:
        log.warning(f"{what}; loading it anyway (--allow-other-base: {recipe.base_model} is a copy of {recorded})")
        return
    raise FtkitError(Problem(what, recipe.source, "base_model", recipe.line_of("base_model"),
                             f"set base_model: {recorded} (or --base_model={recorded}); if {recipe.base_model} is a "
                             "renamed copy of that model, pass --allow-other-base"))


def _misfit(recipe: Recipe, adapter_dir: Path, key: str, error: RuntimeError) -> Exception:
    """peft's size-mismatch error as the layers that differ, the base named; any other error as it was."""
    wrong = re.findall(r"size mismatch for base_model\.model\.(\S+?)\.lora_[^:]+: copying a param with shape "
                       r"torch\.Size\((\[.*?\])\) from checkpoint, the shape in current model is torch\.Size\((\[.*?\])\)",
                       str(error))
    if not wrong:
        return error
    return FtkitError(Problem(
        f"the adapter in {adapter_dir} does not fit base_model {recipe.base_model!r}: {len(wrong)} adapted weights "
        f"differ, e.g. {'; '.join(f'{n} (adapter {a}, base {b})' for n, a, b in wrong[:3])}", recipe.source,
        "base_model", recipe.line_of("base_model"), f"use the base model the adapter was trained on (recorded: "
        f"{recorded_base(adapter_dir)[0]}), or point {key} at an adapter trained on {recipe.base_model}"))
