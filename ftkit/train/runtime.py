"""Trainer plumbing shared by SFT and preference training: engine, logging, checkpoints, eval, callbacks.

`train.sft_config` (and the RL configs) add `trainer_kwargs(...)` to their TrainingArguments subclass,
pass `callbacks(...)` to the trainer, and call `trainer.train(resume_from_checkpoint=resume(...))`.
"""
from __future__ import annotations

import json

from ftkit.data.steps import steps_per_epoch
from ftkit.recipe import Recipe
from ftkit.train import callbacks as cb
from ftkit.train import checkpoints, distributed, tracking
from ftkit.train.checkpoint_files import CheckpointManifest
from ftkit.train.interrupt import StopOnCtrlC


def eval_kwargs(recipe: Recipe, has_eval: bool, n_train: int, world: int = 1) -> dict:
    """eval_steps / evals_per_epoch (on the val_set_size split) and the metric early stopping watches."""
    every = recipe.eval_steps
    if recipe.evals_per_epoch:
        every = max(1, steps_per_epoch(recipe, n_train, world) // recipe.evals_per_epoch)
    if not (every and has_eval):
        return {"eval_strategy": "no"}
    out = {"eval_strategy": "steps", "eval_steps": every}
    if recipe.early_stopping_patience:
        out.update(metric_for_best_model="eval_loss", greater_is_better=False)
    return out


def trainer_kwargs(recipe: Recipe, has_eval: bool, n_train: int) -> dict:
    """TrainingArguments keys owned by this module (usable for SFTConfig, DPOConfig, ...)."""
    world = distributed.world_size()
    return {
        **distributed.engine_kwargs(recipe),  # deepspeed / fsdp / gloo for CPU processes
        **checkpoints.save_kwargs(recipe, n_train, world),  # save_strategy, save_steps, save_total_limit
        **eval_kwargs(recipe, has_eval, n_train, world),  # eval_strategy, eval_steps, best metric
        "report_to": tracking.report_to(recipe),  # tensorboard + wandb/mlflow/comet env
        "neftune_noise_alpha": recipe.neftune_noise_alpha,  # transformers' NEFTune
        "logging_nan_inf_filter": False,  # let the loss watchdog see NaN (the default hides it)
        "ddp_find_unused_parameters": False,  # every parameter gets a gradient in a causal LM / LoRA
        # loss = sum over all trained tokens / their count across accumulation steps AND processes, so
        # 2 processes x 4 rows == 1 x 8 rows (the default; stated because it is the known bug class)
        "average_tokens_across_devices": True,
    }


def _zero_stage(recipe: Recipe) -> int | None:
    if not recipe.deepspeed:
        return None
    with open(distributed.deepspeed_path(recipe)) as f:
        return json.load(f)["zero_optimization"]["stage"]


def callbacks(recipe: Recipe, data: dict | None = None) -> list:
    """Ctrl-C, watchdog, early stopping, recipe-as-run-config, replica check (where weights are not sharded),
    checkpoint manifests (with `data`, the record of the data the rows came from). Ctrl-C comes first: the
    watchdog and the manifest callback may veto the checkpoint it asks for."""
    full_replicas = not recipe.fsdp and _zero_stage(recipe) != 3
    return [StopOnCtrlC(), *cb.build(recipe, full_replicas), tracking.RecipeLogger(recipe),
            CheckpointManifest(recipe.dump(), recipe.save_total_limit, data)]  # checksums + ftkit's own rotation


def resume(recipe: Recipe, data: dict | None = None, changed_ok: bool = False) -> str | None:
    return checkpoints.resume_from(recipe, data, changed_ok)


def finish(trainer, resumed_from: str | None) -> dict:
    """Close the run's loggers; return what the plumbing saw, for metrics.json (stop reason, resume, replicas).
    Weights that are not finite at the end count as diverged (stop_key names the option to change)."""
    tracking.finish()
    out = {"world_size": distributed.world_size(), "resumed_from": resumed_from, "stop_reason": None, "replicas": [],
           "peak_device_memory_bytes": _peak_device_memory(), "diverged": False}
    for c in trainer.callback_handler.callbacks:
        if isinstance(c, cb.LossWatchdog) and c.reason:
            out["stop_reason"], out["diverged"] = c.reason, True
        elif isinstance(c, cb.EarlyStoppingCallback) and c.early_stopping_patience_counter >= c.early_stopping_patience:
            out["stop_reason"] = out["stop_reason"] or "early stopping: eval_loss stopped improving"
        elif isinstance(c, cb.ReplicaCheck):
            out["replicas"] = c.replicas
    if not out["diverged"] and (bad := nonfinite_weights(trainer.model)):  # never published as a success
        out.update(diverged=True, stop_key="learning_rate", stop_reason=(
            f"the trained weights hold NaN or infinite values ({bad}) after step {trainer.state.global_step}. Fix: "
            f"lower learning_rate (now {trainer.args.learning_rate}), check weight_decay and max_grad_norm, or set "
            "loss_watchdog_threshold to stop such a run early"))
    return out


def nonfinite_weights(model) -> str | None:
    """Which trained tensors hold NaN or inf ("2 of 14 trained tensors, e.g. lm_head.weight"); None when all finite."""
    import torch

    trained = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    bad = [name for name, p in trained if not torch.isfinite(p.detach()).all()]
    return f"{len(bad)} of {len(trained)} trained tensors, e.g. {bad[0]}" if bad else None


def _peak_device_memory() -> int | None:
    """torch's peak allocated bytes on this process's GPU (compare with `ftkit memory`); None on CPU."""
    import torch

    return int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else None
