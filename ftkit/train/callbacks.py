"""Trainer callbacks: loss watchdog, early stopping, and a replica check for multi-process runs.

NEFTune needs no callback: transformers' Trainer implements it (`neftune_noise_alpha`), ftkit passes it on.
"""
from __future__ import annotations

import hashlib
import math
import os
import time

from transformers import EarlyStoppingCallback, TrainerCallback

from ftkit.log import log
from ftkit.recipe import Recipe


class LossWatchdog(TrainerCallback):
    """Stop when the logged training loss is NaN/inf, or above a threshold for `patience` logs in a row.

    Needs TrainingArguments(logging_nan_inf_filter=False): by default the Trainer replaces a NaN loss
    with the running mean, which would hide the divergence from this callback. Once it stops a run, no
    checkpoint of the diverged weights is written (the Trainer would save one at the stop, and rotation
    would then delete an older, good one).
    """

    def __init__(self, threshold: float, patience: int, learning_rate: float):
        self.threshold, self.patience, self.learning_rate = threshold, patience, learning_rate
        self.bad = 0
        self.reason: str | None = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is None or self.reason:
            return
        finite = math.isfinite(loss)
        self.bad = self.bad + 1 if (not finite or loss > self.threshold) else 0
        if finite and self.bad < self.patience:
            return
        what = (f"training loss is {loss}" if not finite else
                f"training loss {loss:.4g} > loss_watchdog_threshold {self.threshold} for {self.bad} logged steps")
        self.reason = (f"loss watchdog: {what} at step {state.global_step}; training stopped. Fix: lower learning_rate "
                       f"(now {self.learning_rate}), add warmup_steps, or check the data for broken rows")
        log.info(f"{self.reason}")
        control.should_training_stop = True
        control.should_save = False

    def on_step_end(self, args, state, control, **kwargs):
        if self.reason:
            control.should_save = False

    on_epoch_end = on_step_end


def param_checksum(model) -> str:
    """sha256 over every parameter's bytes in name order: equal checksums = identical weights."""
    import torch

    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class ReplicaCheck(TrainerCallback):
    """At the end of a data-parallel run, gather each rank's step count and weight checksum.

    DDP (and ZeRO-1/2) keep a full replica per process; after training all replicas must be equal.
    `self.replicas` holds [{"rank", "steps", "checksum"}] on every rank, and a mismatch is announced.
    """

    def __init__(self):
        self.replicas: list[dict] = []

    def on_train_end(self, args, state, control, model=None, **kwargs):
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2 or model is None:
            return
        mine = {"rank": dist.get_rank(), "steps": state.global_step, "checksum": param_checksum(model)}
        gathered: list = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, mine)
        self.replicas = gathered
        same = len({r["checksum"] for r in gathered}) == 1
        if state.is_world_process_zero:
            log.info(f"{len(gathered)} processes, steps {[r['steps'] for r in gathered]}: replicas "
                          + ("identical" if same else "DIFFER (data-parallel sync failed)"))


class ProgressLines(TrainerCallback):
    """About `lines` plain `[ftkit] step N/M: loss ...` lines per run, instead of a progress bar and a log dict
    per logged step (which flood a batch-run notebook cell or a CI log). Eval losses are printed as they come."""

    def __init__(self, lines: int = 10):
        self.lines = lines
        self.t0, self.next_at, self.every = 0.0, 0, 1

    def on_train_begin(self, args, state, control, **kwargs):
        self.t0 = time.time()
        self.every = max(1, state.max_steps // self.lines)
        self.next_at = state.global_step + 1  # the first logged step is always shown (resume: from there)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if not state.is_world_process_zero:
            return
        if "eval_loss" in logs:
            when = f"step {state.global_step}/{state.max_steps}" if state.global_step else "before training"
            reward = f", mean reward {logs['eval_reward']:.3f}" if "eval_reward" in logs else ""  # GRPO
            log.info(f"{when}: eval loss {logs['eval_loss']:.4f}{reward}")
        if "loss" not in logs:
            return
        last = state.global_step >= state.max_steps
        if state.global_step < self.next_at and not last:
            return
        while self.next_at <= state.global_step:
            self.next_at += self.every
        lr = logs.get("learning_rate")
        log.info(f"step {state.global_step}/{state.max_steps}: loss {logs['loss']:.4f}"
                 + (f", reward {logs['reward']:.3f}" if "reward" in logs else "")  # GRPO: the number that moves
                 + (f", lr {lr:.2e}" if isinstance(lr, (int, float)) else "") + f" ({time.time() - self.t0:.0f}s)")


def tqdm_disabled() -> bool:
    """TQDM_DISABLE is set (tqdm's own switch; `ftkit notebooks run` sets it for batch runs)."""
    return os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true", "yes")


def plain_progress(trainer) -> None:
    """Where progress bars are off (TQDM_DISABLE=1), show ProgressLines instead of the Trainer's printer,
    which would print a log dict for every logged step; elsewhere keep the Trainer's bar."""
    if not tqdm_disabled():
        return
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from transformers.utils.notebook import NotebookProgressCallback

    for default in (PrinterCallback, ProgressCallback, NotebookProgressCallback):
        trainer.remove_callback(default)
    trainer.add_callback(ProgressLines())


def build(recipe: Recipe, full_replicas: bool = True) -> list[TrainerCallback]:
    """The callbacks the recipe asks for, plus the replica check where each process holds whole weights
    (not under FSDP / ZeRO-3, which shard them); it costs nothing on one process."""
    from ftkit.train import schedules
    from ftkit.train.eval_table import EvalTable

    out: list[TrainerCallback] = [ReplicaCheck()] if full_replicas else []
    out += schedules.callbacks(recipe)  # cosine_constant_lr_ratio / lr_quadratic_warmup
    if recipe.eval_table_size:
        out.append(EvalTable(recipe.eval_table_size, recipe.eval_max_new_tokens, recipe.output_dir))
    if recipe.loss_watchdog_threshold is not None:
        out.append(LossWatchdog(recipe.loss_watchdog_threshold, recipe.loss_watchdog_patience, recipe.learning_rate))
    if recipe.early_stopping_patience:
        out.append(EarlyStoppingCallback(early_stopping_patience=recipe.early_stopping_patience))
    return out
