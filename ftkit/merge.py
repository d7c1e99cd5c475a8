"""`ftkit merge-lora`: fold the trained LoRA adapter into the base weights and save a plain model."""
from __future__ import annotations

from pathlib import Path

from .config import Recipe
from .errors import FtkitError


def run(recipe: Recipe, output_dir: str | None = None, announce=print) -> Path:
    """Base (unquantized, recipe dtype) + adapter -> merge_and_unload -> safetensors + tokenizer + card."""
    from .infer import load_trained

    if not recipe.adapter:
        raise FtkitError("this recipe trains all weights (adapter is empty): there is no adapter to merge",
                         where="adapter", fix="merge-lora applies to recipes with adapter: lora")
    model, tok = load_trained(recipe, announce)
    merged = model.merge_and_unload()
    out = Path(output_dir or Path(recipe.output_dir) / "merged")
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    (out / "README.md").write_text(
        f"# Merged model\n\nBase `{recipe.base_model}` with the LoRA adapter from `{recipe.output_dir}` merged in "
        f"(r={recipe.lora_r}, alpha={recipe.lora_alpha}).\nRecipe: `{recipe.source or 'in memory'}`. "
        "Load with `AutoModelForCausalLM.from_pretrained(this_dir)`.\n")
    announce(f"[ftkit] merged model saved to {out}")
    return out
