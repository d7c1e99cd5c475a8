"""`ftkit train`: recipe -> tokenizer -> data -> model -> TRL SFTTrainer -> saved run with metrics.

Reads top to bottom like the path it runs. TRL and peft do the training; ftkit maps the recipe onto
SFTConfig and records what the run showed (loss before/after, generations before/after).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from ftkit import data, models
from ftkit.data import packing
from ftkit.infer.generate import generate
from ftkit.log import log
from ftkit.recipe import Recipe
from ftkit.train import callbacks as train_callbacks
from ftkit.train import relora, runtime
from ftkit.train.args import training_args
from ftkit.train.save import save_run


@dataclass
class TrainResult:
    """What a run showed; also written to output_dir/metrics.json."""

    output_dir: str
    first_loss: float
    final_loss: float
    eval_loss_before: float | None = None
    eval_loss_after: float | None = None
    steps: int = 0
    seconds: float = 0.0
    losses: list = field(default_factory=list)  # (step, loss) pairs as logged
    samples_before: list = field(default_factory=list)
    samples_after: list = field(default_factory=list)
    trainable_params: int = 0
    total_params: int = 0
    data: dict = field(default_factory=dict)
    runtime: dict = field(default_factory=dict)  # stop reason, resume point, replicas (runtime.finish)

    def summary(self) -> str:
        lines = [f"train loss {self.first_loss:.3f} -> {self.final_loss:.3f} over {self.steps} steps "
                 f"({self.seconds:.1f}s; {self.trainable_params:,} of {self.total_params:,} params trained)"]
        if self.eval_loss_before is not None:
            lines.append(f"eval loss  {self.eval_loss_before:.3f} -> {self.eval_loss_after:.3f}")
        for before, after in zip(self.samples_before, self.samples_after):
            lines += [f"prompt: {before['prompt']}", f"  before: {before['completion']!r}",
                      f"  after:  {after['completion']!r}"]
        return "\n".join(lines)


def sft_config(recipe: Recipe, precision: models.Precision, has_eval: bool, n_train: int = 0):
    """The recipe's options as TRL's SFTConfig (TrainingArguments underneath)."""
    from trl import SFTConfig

    return SFTConfig(**training_args(recipe, precision, has_eval, n_train),
                     max_length=recipe.sequence_len,
                     packing=False,  # ftkit packs in data.prepare (ftkit.data.packing); TRL gets packed rows
                     **packing.sft_args(recipe))  # pad_to_sequence_len, group_by_length


def _eval_loss(trainer, dataset) -> float | None:
    if dataset is None or len(dataset) == 0:
        return None
    return float(trainer.evaluate(eval_dataset=dataset)["eval_loss"])


def run_sft(recipe: Recipe, callbacks=()) -> TrainResult:
    """Fine-tune as the recipe says and report what changed. `callbacks`: extra TrainerCallbacks (notebook plots)."""
    from trl import SFTTrainer

    t0 = time.time()
    precision = models.resolve_precision(recipe)  # bf16/fp16/tf32: auto -> what this device has
    tokenizer = models.load_tokenizer(recipe)  # special tokens, pad check
    prepared = data.prepare(recipe, tokenizer)  # tokens + labels, filtered, cached
    log.info(prepared.summary())
    model = models.load_model(recipe, tokenizer, precision)  # dtype, resize, LoRA
    trainable, total = models.count_parameters(model)

    prompts = recipe.eval_prompts
    before = generate(model, tokenizer, recipe, prompts) if prompts else []

    args = sft_config(recipe, precision, prepared.eval is not None, len(prepared.train))
    trainer = SFTTrainer(model=model, args=args, train_dataset=prepared.train, eval_dataset=prepared.eval,
                         processing_class=tokenizer, data_collator=packing.collator(recipe, tokenizer, model),
                         callbacks=runtime.callbacks(recipe) + relora.callbacks(recipe))
    for cb in callbacks:  # e.g. ftkit.notebook.loss_plot_callback()
        trainer.add_callback(cb)
    train_callbacks.plain_progress(trainer)  # TQDM_DISABLE=1 (batch runs): a few plain lines, no dict per step
    # FSDP2 wraps model and optimizer together in train(); an evaluate() before it fails inside accelerate
    eval_before = None if recipe.fsdp else _eval_loss(trainer, prepared.eval)
    if recipe.fsdp and prepared.eval is not None:
        log.info("fsdp: no eval loss before training (FSDP2 prepares model and optimizer together)")
    resumed_from = runtime.resume(recipe)  # explicit or newest complete checkpoint
    trainer.train(resume_from_checkpoint=resumed_from)
    eval_after = _eval_loss(trainer, prepared.eval)

    after = generate(trainer.model, tokenizer, recipe, prompts) if prompts else []
    losses = [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h]
    if not losses or not all(math.isfinite(v) for _, v in losses):
        log.warning("no finite training loss was logged")
    result = TrainResult(
        output_dir=recipe.output_dir, first_loss=losses[0][1] if losses else float("nan"),
        final_loss=losses[-1][1] if losses else float("nan"), eval_loss_before=eval_before,
        eval_loss_after=eval_after, steps=trainer.state.global_step, seconds=time.time() - t0, losses=losses,
        samples_before=[{"prompt": p, "completion": c} for p, c in zip(prompts, before)],
        samples_after=[{"prompt": p, "completion": c} for p, c in zip(prompts, after)],
        trainable_params=trainable, total_params=total, data=prepared.stats,
        runtime=runtime.finish(trainer, resumed_from))
    result.model = trainer.model  # not a field, so not in metrics.json: callers can generate or compare logits
    save_run(recipe, trainer, tokenizer, result)
    log.info(result.summary())
    log.info(f"saved to {recipe.output_dir}")
    return result
