"""What a finished run leaves in output_dir: everything needed to serve, share or resume the model as trained.

model or adapter weights, the tokenizer (its chat template renders the training prompt: formats/serving.py),
the resolved recipe.yml, metrics.json, trainer_state.json (the Trainer's log history), loss.png and a
README.md model card (models/card.py); every file readable like the user's own.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import yaml

from ftkit.formats import serving
from ftkit.log import log
from ftkit.models import card
from ftkit.recipe import Recipe
from ftkit.train import relora


def save_run(recipe: Recipe, trainer, tokenizer, result) -> None:
    """Weights, tokenizer, recipe.yml, metrics.json, trainer_state.json, loss.png and README.md in output_dir."""
    out = Path(recipe.output_dir)
    if recipe.relora_steps:  # the base moved at each ReLoRA restart: save the merged model, not the adapter
        relora.save_merged(trainer.model, out)
    else:
        trainer.save_model(str(out))  # gathers sharded weights; writes on the main process only
    if not trainer.is_world_process_zero():
        return
    template_note = serving.apply(recipe, tokenizer)  # servers' apply_chat_template == the training prompt
    log.info(f"saved tokenizer: {template_note}")
    tokenizer.save_pretrained(str(out))
    trainer.save_state()  # trainer_state.json: every logged step, as the Trainer recorded it
    (out / "recipe.yml").write_text(yaml.safe_dump(card.recipe_resolved(recipe), sort_keys=False))
    metrics = asdict(result)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    losses = metrics.get("losses") or [(h["step"], h["loss"]) for h in metrics.get("history", []) if "loss" in h]
    plot = card.save_loss_plot(losses, out / card.PLOT, f"{Path(recipe.output_dir).name}: training loss")
    kind = "merged" if recipe.relora_steps else "adapter" if recipe.adapter else "full"  # ReLoRA saves merged weights
    card.write_card(out, recipe, kind, metrics=metrics, prompt=card.served_prompt(tokenizer),
                    template_note=template_note, plot=plot.name if plot else None)
    card.make_readable(out)
