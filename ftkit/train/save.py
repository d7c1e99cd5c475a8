"""What a finished run leaves in output_dir: model or adapter, tokenizer, resolved recipe and metrics.json."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import yaml

from ftkit.recipe import Recipe
from ftkit.train import relora


def save_run(recipe: Recipe, trainer, tokenizer, result) -> None:
    """Model or adapter, tokenizer, the resolved recipe and metrics.json, all in output_dir."""
    out = Path(recipe.output_dir)
    if recipe.relora_steps:  # the base moved at each ReLoRA restart: save the merged model, not the adapter
        relora.save_merged(trainer.model, out)
    else:
        trainer.save_model(str(out))  # gathers sharded weights; writes on the main process only
    if not trainer.is_world_process_zero():
        return
    tokenizer.save_pretrained(str(out))
    (out / "recipe.yml").write_text(yaml.safe_dump(recipe.dump(), sort_keys=False))
    (out / "metrics.json").write_text(json.dumps(asdict(result), indent=1))
