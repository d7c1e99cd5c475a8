"""`ftkit merge-lora`: fold the trained LoRA adapter into the base weights and save a plain model."""
from __future__ import annotations

from pathlib import Path

from ftkit.errors import FtkitError
from ftkit.formats import serving
from ftkit.log import log, quiet
from ftkit.models import card
from ftkit.recipe import Recipe


def run(recipe: Recipe, output_dir: str | None = None) -> Path:
    """Base (unquantized, recipe dtype) + adapter -> merge_and_unload -> safetensors, tokenizer, recipe.yml, card."""
    from ftkit.models.adapters import has_adapter_files
    from ftkit.models.load import resolve_precision
    from ftkit.models.trained import load_trained

    if not recipe.adapter:
        raise FtkitError("this recipe trains all weights (adapter is empty): there is no adapter to merge",
                         where="adapter", fix="merge-lora applies to recipes with adapter: lora or qlora")

    model, tok = load_trained(recipe, dequantize=True)  # a 4/8-bit base comes back dequantized
    if not hasattr(model, "merge_and_unload"):
        raise FtkitError(f"{recipe.output_dir} holds full weights, not an adapter (a ReLoRA run saves merged weights)",
                         where="output_dir", fix="use that directory as a model directly; there is nothing to merge")
    with quiet():
        dtype = resolve_precision(recipe).dtype
    saved = model.peft_config["default"]  # the adapter's own r/alpha (a continued adapter keeps its own)
    # adapter upcast first (TRL trains QLoRA adapters in bf16): B·A is then exact in `dtype`
    merged = model.to(dtype).merge_and_unload()  # W + (alpha/r)·B·A, DoRA magnitude folded in
    out = Path(output_dir or Path(recipe.lora_model_dir or recipe.output_dir) / "merged")
    if out.is_dir() and has_adapter_files(out):
        raise FtkitError(f"{out} holds adapter files {has_adapter_files(out)}; a merged model must not sit beside them "
                         "(loaders would pick up the adapter)", where="--output-dir", fix="choose an empty directory")
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out, safe_serialization=True)
    template_note = serving.apply(recipe, tok)  # (the adapter run saved it already; older runs get it here)
    tok.save_pretrained(out)
    _write_card(recipe, out, tok, template_note, dtype, saved.r, saved.lora_alpha)
    card.make_readable(out)
    log.info(f"merged model ({dtype}) saved to {out}")
    return out


def _write_card(recipe: Recipe, out: Path, tokenizer, template_note: str, dtype, r: int, alpha: int) -> None:
    """README.md (models/card.py) with the adapter run's metrics and loss plot, and its recipe.yml."""
    import json
    import shutil

    import yaml

    run = Path(recipe.lora_model_dir or recipe.output_dir)
    metrics = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").is_file() else None
    if (run / card.PLOT).is_file():
        shutil.copyfile(run / card.PLOT, out / card.PLOT)
    (out / "recipe.yml").write_text(yaml.safe_dump(card.recipe_resolved(recipe), sort_keys=False))
    method = {"qlora": "QLoRA (4-bit base, dequantized before merging)", "lora": "LoRA"}[recipe.adapter]
    if recipe.load_in_8bit:
        method = "LoRA on an 8-bit base (dequantized before merging)"
    variant = ", DoRA" if recipe.peft_use_dora else ", rsLoRA" if recipe.peft_use_rslora else ""
    note = (f"The {method} adapter from `{run}` (r={r}, alpha={alpha}{variant}) was merged in with "
            f"`ftkit merge-lora` and saved in {str(dtype).removeprefix('torch.')}.")
    card.write_card(out, recipe, "merged", metrics=metrics, prompt=card.served_prompt(tokenizer),
                    template_note=template_note,
                    plot=card.PLOT if (out / card.PLOT).is_file() else None, note=note)
