"""Recipe options of the run around the optimisation: engines, logging, checkpoints, evaluation, callbacks, hub.

ftkit/train/ applies them (args.py builds the trainer's arguments; distributed.py, tracking.py,
checkpoints.py, callbacks.py, preflight.py for the hub check).
"""
from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import field_validator

from ftkit.recipe.base import SFT, Steps, Strict, option


class RunOptions(Strict):
    """Distributed engines, experiment logging, checkpoints/resume, evaluation schedule and callbacks."""

    deepspeed: Optional[str] = option(None, description="DeepSpeed JSON config, e.g. recipes/deepspeed/zero2.json (ZeRO-1/2/3 shipped; `auto` values are filled from the recipe).")
    fsdp: Optional[Union[list[str], str]] = option(None, description="FSDP options, e.g. [full_shard, auto_wrap] (launch with `accelerate launch` or --num_processes). Default with fsdp_config alone: [full_shard, auto_wrap].")
    fsdp_config: Optional[dict[str, Any]] = option(None, description="FSDP settings (fsdp_ prefix optional): version, cpu_offload/offload_params, state_dict_type, transformer_layer_cls_to_wrap, ... (Axolotl's fsdp_version is read into version).")
    accelerator_config: Optional[dict[str, Any]] = option(None, description="accelerate settings (TrainingArguments accelerator_config), e.g. {split_batches: false}.")
    wandb_project: Optional[str] = option(None, description="Log to Weights & Biases under this project.")
    wandb_entity: Optional[str] = option(None, description="W&B team or user.")
    wandb_name: Optional[str] = option(None, description="W&B run name.")
    wandb_run_id: Optional[str] = option(None, description="W&B run id (set it to resume the same W&B run).")
    wandb_mode: Optional[Literal["online", "offline", "disabled"]] = option(None, description="online, offline (writes a local run dir, no network) or disabled.")
    wandb_watch: Optional[str] = option(None, description="W&B model watching: gradients, parameters, all, or false (WANDB_WATCH; any other text watches nothing, as in transformers).")
    wandb_log_model: Optional[str] = option(None, description="Upload the model to W&B artifacts: checkpoint (every save), end, or false (WANDB_LOG_MODEL; any other text uploads nothing, as in transformers).")
    mlflow_tracking_uri: Optional[str] = option(None, description="Log to MLflow here (a file store such as file:./mlruns works offline).")
    mlflow_experiment_name: Optional[str] = option(None, description="MLflow experiment name.")
    use_comet: bool = option(False, description="Log to Comet (needs the comet_ml package).")
    hub_model_id: Optional[str] = option(None, description="Push the model to this hub repo (private) at each save and at the end; needs a hub token and network, checked before training.")
    hub_strategy: Optional[Literal["end", "every_save", "checkpoint", "all_checkpoints"]] = option(None, description="What is pushed and when (TrainingArguments hub_strategy; default every_save).")
    hub_revision: Optional[str] = option(None, description="Branch of the hub repo pushed to.")
    push_to_hub: Optional[bool] = option(None, description="ftkit: false keeps hub_model_id but pushes nothing (default: push when hub_model_id is set).")
    save_strategy: Optional[Literal["no", "steps", "epoch", "best"]] = option(None, description="When checkpoints are written: steps (save_steps/saves_per_epoch), epoch, best, no. Default: epoch, or steps when save_steps/saves_per_epoch is set (Axolotl's rule).")
    save_steps: Optional[Steps] = option(None, gt=0, description="Checkpoint every N steps (a value below 1: that fraction of the total steps).")
    saves_per_epoch: Optional[int] = option(None, ge=1, description="Checkpoints per epoch (instead of save_steps).")
    save_total_limit: Optional[int] = option(4, ge=1, description="Keep only the newest N checkpoints (default 4, as in Axolotl).")
    save_safetensors: bool = option(True, description="Write weights as safetensors (the only format ftkit writes; false is refused, as in Axolotl).")
    save_only_model: bool = option(False, description="Checkpoints without optimizer/scheduler state (smaller; such a checkpoint cannot be resumed exactly).")
    resume_from_checkpoint: Optional[str] = option(None, description="Checkpoint directory to resume from (weights, optimizer, scheduler, RNG, data position).")
    auto_resume_from_checkpoints: bool = option(False, description="Resume from the newest complete checkpoint in output_dir, if any (half-written ones are skipped).")
    eval_strategy: Optional[Literal["no", "steps", "epoch"]] = option(None, description="When to evaluate on the val_set_size split: steps (eval_steps/evals_per_epoch), epoch, no. Default: steps when eval_steps/evals_per_epoch is set, else no.")
    eval_steps: Optional[Steps] = option(None, gt=0, description="Evaluate on the val_set_size split every N steps (a value below 1: that fraction of the total steps).")
    evals_per_epoch: Optional[int] = option(None, ge=1, description="Evaluations per epoch (instead of eval_steps).")
    metric_for_best_model: Optional[str] = option(None, description="Metric compared for early stopping / load_best_model_at_end (default eval_loss).")
    greater_is_better: Optional[bool] = option(None, description="Whether a larger metric_for_best_model is better (default: false for losses).")
    load_best_model_at_end: bool = option(False, description="After training, load the checkpoint with the best metric (needs save_steps a multiple of eval_steps).")
    early_stopping_patience: Optional[int] = option(None, ge=1, description="Stop after N evaluations without a lower eval loss.")
    eval_table_size: int = option(0, ge=0, methods=SFT, description="At each evaluation, log a table of N eval rows: prompt, reference answer and the model's greedy answer (tensorboard, W&B, output_dir/eval_tables/).")
    eval_max_new_tokens: int = option(128, ge=1, methods=SFT, description="Tokens generated per row of the eval table.")
    loss_watchdog_threshold: Optional[float] = option(None, gt=0, description="Stop when the training loss stays above this (or is NaN/inf) for loss_watchdog_patience logged steps.")
    loss_watchdog_patience: int = option(3, ge=1, description="Consecutive logged steps above loss_watchdog_threshold before stopping.")
    neftune_noise_alpha: Optional[float] = option(None, gt=0, description="NEFTune: noise added to embeddings during training (TRL/transformers implementation).")

    @field_validator("wandb_watch", "wandb_log_model", mode="before")
    @classmethod
    def _false_is_a_value(cls, v):
        return "false" if v is False else None if v == "" else v  # Axolotl types both as any string

    @field_validator("save_strategy", "eval_strategy", mode="before")
    @classmethod
    def _yaml_no(cls, v):
        return "no" if v is False else v  # YAML reads a bare `no` as false
