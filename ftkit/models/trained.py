"""Loading what a run saved: base + adapter, or the full model, with the tokenizer it was trained with."""
from __future__ import annotations

from pathlib import Path

from ftkit.errors import FtkitError
from ftkit.log import log, quiet
from ftkit.recipe import Recipe


def load_trained(recipe: Recipe, dequantize: bool = False):
    """(model, tokenizer) after training: base + adapter (lora_model_dir or output_dir), or the full model.

    The base is loaded as it was trained (4/8-bit when the recipe says so); `dequantize=True` turns a
    quantized base back into plain weights in the recipe's dtype first (what merge-lora needs).
    """
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftkit.models import adapters
    from ftkit.models import load as models

    out = Path(recipe.output_dir)
    adapter_dir = Path(recipe.lora_model_dir or out)
    if recipe.adapter and (adapter_dir / "adapter_config.json").is_file():
        tok = AutoTokenizer.from_pretrained(adapter_dir) if (adapter_dir / "tokenizer_config.json").is_file() \
            else models.load_tokenizer(recipe)
        with quiet():
            precision = models.resolve_precision(recipe)
        base = models.load_base(recipe, tok, precision)
        if dequantize and (recipe.load_in_4bit or recipe.load_in_8bit):
            log.info(f"dequantizing the {4 if recipe.load_in_4bit else 8}-bit base to {precision.dtype} "
                     "(the exact weights the adapter trained against) before merging")
            base = base.dequantize().to(precision.dtype)
        return adapters.load_adapter(base, adapter_dir, where="lora_model_dir" if recipe.lora_model_dir else "output_dir"), tok
    if (out / "config.json").is_file():  # full fine-tune (a reward model: its classifier class), or ReLoRA (merged)
        cls = getattr(transformers, recipe.model_type, AutoModelForCausalLM)
        return cls.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    if recipe.adapter:
        if recipe.lora_model_dir:
            raise FtkitError(f"no LoRA adapter (adapter_config.json) in {adapter_dir}", where="lora_model_dir",
                             fix="point it at the output_dir of a LoRA/QLoRA run")
        raise FtkitError(f"no LoRA adapter in {adapter_dir}", where="output_dir",
                         fix="train first (ftkit train RECIPE) or pass --lora_model_dir=DIR")
    log.info(f"no trained model in {out}: using the base model {recipe.base_model}")
    tok = models.load_tokenizer(recipe)
    return models.load_model(recipe, tok), tok
