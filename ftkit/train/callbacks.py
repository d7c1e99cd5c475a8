"""Trainer callbacks: Ctrl-C, loss watchdog, early stopping, eval table, progress lines, and a replica check for
multi-process runs; `build` gives the run's list.

NEFTune needs no callback: transformers' Trainer implements it (`neftune_noise_alpha`), ftkit passes it on.

Ctrl-C during training: the first one finishes the step, writes a checkpoint and stops; a second one aborts.
Without StopOnCtrlC a Ctrl-C raises KeyboardInterrupt wherever the step happens to be: a traceback, and every
step since the last checkpoint lost. Its handler is installed for the length of `trainer.train` only (data
preparation and model loading keep Python's own Ctrl-C, which the CLI reports as "interrupted", exit 130).

`eval_table_size`: at each evaluation, a table of the first N eval rows: the prompt (tokens before the first
trained one), the reference (the trained tokens) and the model's greedy continuation of the prompt
(eval_max_new_tokens), written to output_dir/eval_tables/step-N.jsonl, to tensorboard as text and, when they
are on, to W&B and MLflow. Training is untouched (generation runs under no_grad, the model's mode restored).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import threading
import time
from pathlib import Path

import torch
from transformers import EarlyStoppingCallback, PrinterCallback, ProgressCallback, TrainerCallback

from ftkit.formats.tokenize import IGNORE
from ftkit.log import log
from ftkit.recipe import Recipe


class StopOnCtrlC(TrainerCallback):
    """SIGINT -> finish this optimizer step, save (even with save_strategy: no), stop. `step` is where it stopped."""

    def __init__(self):
        self.step: int | None = None
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame):
        if self.requested:  # the second Ctrl-C: the user wants out now
            signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)
            raise KeyboardInterrupt
        self.requested = True
        log.warning("Ctrl-C: finishing this step, then writing a checkpoint and stopping (Ctrl-C again aborts at "
                    "once, without a checkpoint)")

    def on_train_begin(self, args, state, control, **kwargs):
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def on_step_end(self, args, state, control, **kwargs):
        if self.requested and self.step is None:
            self.step = state.global_step
            control.should_save = True  # later callbacks may still veto it (a diverged run, a user's folder)
            control.should_training_stop = True

    def restore(self) -> None:
        """Python's own Ctrl-C again: train/run.py calls it when trainer.train returns or raises."""
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


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
        log.info(self.reason)
        control.should_training_stop = True
        control.should_save = False

    def on_step_end(self, args, state, control, **kwargs):
        if self.reason:
            control.should_save = False

    on_epoch_end = on_step_end


def param_checksum(model) -> str:
    """sha256 over every parameter's bytes in name order: equal checksums = identical weights."""
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
        self.replicas = [None] * dist.get_world_size()
        dist.all_gather_object(self.replicas, mine)  # fills the list in place, one entry per rank
        same = len({r["checksum"] for r in self.replicas}) == 1
        if state.is_world_process_zero:
            log.info(f"{len(self.replicas)} processes, steps {[r['steps'] for r in self.replicas]}: replicas "
                          + ("identical" if same else "DIFFER (data-parallel sync failed)"))


class ProgressLines(TrainerCallback):
    """About `lines` plain `[ftkit] step N/M: loss ...` lines per run, instead of a progress bar and a log dict
    per logged step (which flood a batch-run notebook cell or a CI log). Eval losses are printed as they come."""

    def __init__(self, lines: int = 10):
        self.lines = lines

    def on_train_begin(self, args, state, control, **kwargs):
        self.t0 = time.time()
        self.every = max(1, state.max_steps // self.lines)
        self.next_at = state.global_step + 1  # the first logged step is always shown (resume: from there)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero:
            return
        if "eval_loss" in logs:
            when = f"step {state.global_step}/{state.max_steps}" if state.global_step else "before training"
            reward = f", mean reward {logs['eval_reward']:.3f}" if "eval_reward" in logs else ""  # GRPO
            log.info(f"{when}: eval loss {logs['eval_loss']:.4f}{reward}")
        if "loss" not in logs:
            return
        if state.global_step < self.next_at and state.global_step < state.max_steps:  # the last step is always shown
            return
        while self.next_at <= state.global_step:
            self.next_at += self.every
        lr = logs.get("learning_rate")
        log.info(f"step {state.global_step}/{state.max_steps}: loss {logs['loss']:.4f}"
                 + (f", reward {logs['reward']:.3f}" if "reward" in logs else "")  # GRPO: the number that moves
                 + (f", lr {lr:.2e}" if isinstance(lr, (int, float)) else "") + f" ({time.time() - self.t0:.0f}s)")


def plain_progress(trainer) -> None:
    """Where progress bars are off (TQDM_DISABLE=1: tqdm's own switch, which `ftkit notebooks run` sets for batch
    runs), show ProgressLines instead of the Trainer's printer, which would print a log dict for every logged
    step; elsewhere keep the Trainer's bar."""
    if os.environ.get("TQDM_DISABLE", "").lower() not in ("1", "true", "yes"):
        return
    from transformers.utils.notebook import NotebookProgressCallback

    for default in (PrinterCallback, ProgressCallback, NotebookProgressCallback):
        trainer.remove_callback(default)
    trainer.add_callback(ProgressLines())


def rows_of(batch: dict) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, reference ids) per row of a collated batch, padding removed."""
    out = []
    for i in range(len(batch["input_ids"])):
        ids, labels = batch["input_ids"][i].tolist(), batch["labels"][i].tolist()
        mask = batch["attention_mask"][i].tolist() if "attention_mask" in batch else [1] * len(ids)
        pairs = [(t, lab) for t, lab, m in zip(ids, labels, mask) if m]
        if (first := next((k for k, (_, lab) in enumerate(pairs) if lab != IGNORE), None)) is None:
            continue
        out.append(([t for t, _ in pairs[:first]], [lab for _, lab in pairs[first:] if lab != IGNORE]))
    return out


def generate_table(model, tokenizer, rows: list[tuple[list[int], list[int]]], max_new_tokens: int) -> list[dict]:
    was_training = model.training
    model.eval()
    table = []
    try:
        with torch.no_grad():
            for prompt, reference in rows:
                ids = torch.tensor([prompt], device=model.device)
                out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                     do_sample=False, pad_token_id=tokenizer.pad_token_id)
                table.append({"prompt": tokenizer.decode(prompt), "reference": tokenizer.decode(reference),
                              "prediction": tokenizer.decode(out[0, len(prompt):], skip_special_tokens=True)})
    finally:
        model.train(was_training)
    return table


class EvalTable(TrainerCallback):
    """Logs the table at each evaluation (main process only)."""

    def __init__(self, size: int, max_new_tokens: int, output_dir: str):
        self.size, self.max_new_tokens, self.dir = size, max_new_tokens, Path(output_dir) / "eval_tables"
        self.written: list[Path] = []

    def on_evaluate(self, args, state, control, model=None, processing_class=None, eval_dataloader=None, **kwargs):
        if not state.is_world_process_zero:
            return
        rows = []
        for batch in eval_dataloader:
            rows += rows_of(batch)
            if len(rows) >= self.size:
                break
        table = generate_table(getattr(model, "module", model), processing_class, rows[:self.size], self.max_new_tokens)
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"step-{state.global_step}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in table))
        self.written.append(path)
        _to_loggers(args, table, state.global_step)
        log.info(f"eval table: {len(table)} rows with the model's answers -> {path}")


def _to_loggers(args, table: list[dict], step: int) -> None:
    from ftkit.train.tracking import open_run, tensorboard_text

    text = "\n".join(f"| {r['prompt']!r} | {r['reference']!r} | {r['prediction']!r} |" for r in table)
    tensorboard_text(args, "eval_table", "| prompt | reference | prediction |\n|---|---|---|\n" + text, step)
    if wandb := open_run(args, "wandb"):
        wandb.log({"eval_table": wandb.Table(columns=["prompt", "reference", "prediction"],
                                             data=[[r["prompt"], r["reference"], r["prediction"]] for r in table])})
    if mlflow := open_run(args, "mlflow"):
        mlflow.log_text("".join(json.dumps(r) + "\n" for r in table), f"eval_tables/step-{step}.jsonl")


def build(recipe: Recipe, prepared=None) -> list[TrainerCallback]:
    """The run's callbacks: ReLoRA, LISA and a stream's position first (their on_save adds to a checkpoint before
    ftkit's manifest records it), Ctrl-C (before the watchdog and the manifest callback, which may veto the
    checkpoint it asks for), the replica check where each process holds whole weights (not under FSDP /
    ZeRO-3, which shard them; it costs nothing on one process), the learning-rate shapes, the ones the recipe
    asks for, recipe-as-run-config, checkpoint manifests (with the record of the data the rows came from)."""
    from ftkit import hooks
    from ftkit.train import schedules, tracking
    from ftkit.train.args import zero_stage
    from ftkit.train.checkpoint_files import CheckpointManifest

    out = sum(hooks.call(recipe, "callbacks", recipe, prepared), []) + [StopOnCtrlC()]  # ReLoRA, LISA, stream
    if not recipe.fsdp and zero_stage(recipe) != 3:
        out.append(ReplicaCheck())
    out += schedules.callbacks(recipe)  # cosine_constant_lr_ratio / lr_quadratic_warmup / jagged
    if recipe.eval_table_size:
        out.append(EvalTable(recipe.eval_table_size, recipe.eval_max_new_tokens, recipe.output_dir))
    if recipe.loss_watchdog_threshold is not None:
        out.append(LossWatchdog(recipe.loss_watchdog_threshold, recipe.loss_watchdog_patience, recipe.learning_rate))
    if recipe.early_stopping_patience:
        out.append(EarlyStoppingCallback(early_stopping_patience=recipe.early_stopping_patience))
    return out + [tracking.RecipeLogger(recipe),  # checksums + ftkit's own rotation:
                  CheckpointManifest(recipe.dump(), recipe.save_total_limit, getattr(prepared, "data", None))]
