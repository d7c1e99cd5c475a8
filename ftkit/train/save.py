"""What a finished run leaves in output_dir: everything needed to serve, share or resume the model as trained.

model or adapter weights, the tokenizer (its chat template renders the training prompt: formats/prompt.py),
the resolved recipe.yml, metrics.json, trainer_state.json (the Trainer's log history), loss.png and a
README.md model card (models/card.py); every file readable like the user's own.

Everything is written into `output_dir/.ftkit-final.tmp/` first and moved into place only once complete, so a
full disk or a kill during the save leaves the earlier model (and the run's checkpoints) as they were. A run the
loss watchdog stopped keeps its evidence (metrics.json, loss.png, trainer_state.json, recipe.yml) in
`output_dir/diverged/` and no weights: a diverged model is never served as the trained one.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import yaml

from ftkit import hooks
from ftkit.formats.prompt import Prompt
from ftkit.log import log
from ftkit.models import card
from ftkit.recipe import Recipe
from ftkit.models.folder import STAGING, publish, read_marker, write_marker  # noqa: F401  (publish: re-exported)

DIVERGED = "diverged"


def no_draft_card(trainer) -> None:
    """TRL writes a draft README.md into output_dir at every checkpoint (over the user's file, or over the model
    card of the model still in the folder); ftkit writes the model card with the final model, so no draft."""
    trainer.create_model_card = lambda *args, **kwargs: None


def _drop_reference_adapter(model, staging: Path) -> None:
    """DPO/KTO with an adapter: TRL keeps the step-0 adapter as a second adapter, "ref", and peft saves it into
    a `ref/` subfolder. It is the reference the run compared against, not part of the trained model."""
    for name in getattr(model, "peft_config", {}):
        if name != "default" and (staging / name / "adapter_config.json").is_file():
            shutil.rmtree(staging / name)
            log.info(f"not saved: TRL's frozen reference adapter '{name}' (the adapter at step 0)")


def _write(staging: Path, recipe: Recipe, trainer, prompt: Prompt, result, weights: bool) -> None:
    """Every file of the finished run into `staging` (weights: on every process, which gathers shards)."""
    tokenizer = prompt.tokenizer
    if weights and not hooks.call(recipe, "save_weights", trainer, staging):  # ReLoRA saves the model merged
        trainer.save_model(str(staging))  # gathers sharded weights; writes on the main process only
        _drop_reference_adapter(trainer.model, staging)
    if not trainer.is_world_process_zero():
        return
    staging.mkdir(parents=True, exist_ok=True)
    if weights:
        template_note = prompt.save_template()  # servers' apply_chat_template == the training prompt
        log.info(f"saved tokenizer: {template_note}")
        tokenizer.save_pretrained(str(staging))
    trainer.state.save_to_json(str(staging / "trainer_state.json"))  # every logged step, as the Trainer recorded it
    (staging / "recipe.yml").write_text(yaml.safe_dump(card.recipe_resolved(recipe), sort_keys=False))
    metrics = asdict(result)
    (staging / "metrics.json").write_text(json.dumps(metrics, indent=1))
    losses = metrics.get("losses") or [(h["step"], h["loss"]) for h in metrics.get("history", []) if "loss" in h]
    plot = card.save_loss_plot(losses, staging / card.PLOT, f"{Path(recipe.output_dir).name}: training loss")
    if weights:
        kind = "merged" if recipe.relora_active else "adapter" if recipe.adapter else "full"
        card.write_card(staging, recipe, kind, metrics=metrics, prompt=card.served_prompt(tokenizer),
                        template_note=template_note, plot=plot.name if plot else None)


def save_run(recipe: Recipe, trainer, prompt: Prompt, result, diverged: bool = False,
             folder: Path | None = None) -> Path:
    """The finished run in output_dir (or its evidence in output_dir/diverged/); returns where it went. The tokenizer
    is saved from the run's `prompt`, carrying the template servers render its prompt with.
    `folder`: the whole finished model written there instead, as it is (a rescue after a full disk)."""
    if folder is not None:
        _write(folder, recipe, trainer, prompt, result, weights=True)
        card.make_readable(folder)
        return folder
    out = Path(recipe.output_dir)
    staging = out / STAGING
    target = out / DIVERGED if diverged else out
    try:
        _write(staging, recipe, trainer, prompt, result, weights=not diverged)
    except BaseException:
        if trainer.is_world_process_zero():
            shutil.rmtree(staging, ignore_errors=True)  # frees what the cut-off save took; the earlier model stays
        raise
    if not trainer.is_world_process_zero():
        return target
    marker = read_marker(out) or {}
    earlier = [] if diverged else marker.get("final_files", [])
    card.make_readable(staging)  # what this run wrote, before it joins files of the user's that keep their modes
    names = publish(staging, target, earlier)
    if diverged:
        write_marker(out, recipe, running=False)
    else:
        write_marker(out, recipe, running=False, final_files=names, finished=time.strftime("%Y-%m-%d %H:%M:%S"))
    return target
