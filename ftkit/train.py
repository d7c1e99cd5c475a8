"""`ftkit train`: recipe -> tokenizer -> data -> model -> TRL SFTTrainer -> saved run with metrics.

Reads top to bottom like the path it runs. TRL and peft do the training; ftkit maps the recipe onto
SFTConfig and records what the run showed (loss before/after, generations before/after).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from . import data, models, packing, relora, runtime
from .config import Recipe
from .infer import generate


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


def training_args(recipe: Recipe, precision: models.Precision, has_eval: bool = False, n_train: int = 0,
                  announce=print) -> dict:
    """The recipe's TrainingArguments options, shared by every TRL config (SFT, DPO, KTO, ORPO, CPO)."""
    import torch

    return dict(
        output_dir=recipe.output_dir,
        per_device_train_batch_size=recipe.micro_batch_size,
        per_device_eval_batch_size=recipe.micro_batch_size,
        gradient_accumulation_steps=recipe.gradient_accumulation_steps,
        num_train_epochs=recipe.num_epochs,
        max_steps=recipe.max_steps or -1,
        learning_rate=recipe.learning_rate,
        optim=recipe.optimizer,
        lr_scheduler_type=recipe.lr_scheduler,
        warmup_steps=recipe.warmup_steps,
        weight_decay=recipe.weight_decay,
        max_grad_norm=recipe.max_grad_norm,
        seed=recipe.seed,
        data_seed=recipe.seed,
        logging_steps=recipe.logging_steps,
        bf16=precision.bf16,
        fp16=precision.fp16,
        tf32=precision.tf32 if torch.cuda.is_available() else None,
        gradient_checkpointing=recipe.gradient_checkpointing,  # TRL's default is on: off unless asked
        use_cpu=not torch.cuda.is_available(),
        dataloader_pin_memory=False,
        disable_tqdm=False,
        **runtime.trainer_kwargs(recipe, has_eval, n_train, announce),  # engine, logging, saves, evals
    )


def sft_config(recipe: Recipe, precision: models.Precision, has_eval: bool, n_train: int = 0, announce=print):
    """The recipe's options as TRL's SFTConfig (TrainingArguments underneath)."""
    from trl import SFTConfig

    return SFTConfig(**training_args(recipe, precision, has_eval, n_train, announce),
                     max_length=recipe.sequence_len,
                     packing=False,  # ftkit packs in data.prepare (ftkit.packing); TRL gets packed rows
                     **packing.sft_args(recipe))  # pad_to_sequence_len, group_by_length


def _eval_loss(trainer, dataset) -> float | None:
    if dataset is None or len(dataset) == 0:
        return None
    return float(trainer.evaluate(eval_dataset=dataset)["eval_loss"])


def save_run(recipe: Recipe, trainer, tokenizer, result: TrainResult) -> None:
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


def run(recipe: Recipe, announce=print, callbacks=()) -> TrainResult:
    """Fine-tune as the recipe says and report what changed. `callbacks`: extra TrainerCallbacks (notebook plots)."""
    if recipe.deepspeed:  # a missing or malformed engine config fails now, not after data preparation
        from .distributed import deepspeed_path

        deepspeed_path(recipe)
    if recipe.rl:  # preference tuning (DPO, IPO, KTO, ORPO, SimPO) runs TRL's preference trainers
        from . import rl

        return rl.run(recipe, announce)
    from trl import SFTTrainer

    t0 = time.time()
    precision = models.resolve_precision(recipe, announce)  # bf16/fp16/tf32: auto -> what this device has
    tokenizer = models.load_tokenizer(recipe, announce)  # special tokens, pad check
    prepared = data.prepare(recipe, tokenizer, announce)  # tokens + labels, filtered, cached
    announce(prepared.summary())
    model = models.load_model(recipe, tokenizer, precision, announce)  # dtype, resize, LoRA
    trainable, total = models.count_parameters(model)

    prompts = recipe.eval_prompts
    before = generate(model, tokenizer, recipe, prompts) if prompts else []

    args = sft_config(recipe, precision, prepared.eval is not None, len(prepared.train), announce)
    trainer = SFTTrainer(model=model, args=args, train_dataset=prepared.train, eval_dataset=prepared.eval,
                         processing_class=tokenizer, data_collator=packing.collator(recipe, tokenizer, model),
                         callbacks=runtime.callbacks(recipe, announce) + relora.callbacks(recipe, announce))
    for cb in callbacks:  # e.g. ftkit.notebook.loss_plot_callback()
        trainer.add_callback(cb)
    # FSDP2 wraps model and optimizer together in train(); an evaluate() before it fails inside accelerate
    eval_before = None if recipe.fsdp else _eval_loss(trainer, prepared.eval)
    if recipe.fsdp and prepared.eval is not None:
        announce("[ftkit] fsdp: no eval loss before training (FSDP2 prepares model and optimizer together)")
    resumed_from = runtime.resume(recipe, announce)  # explicit or newest complete checkpoint
    trainer.train(resume_from_checkpoint=resumed_from)
    eval_after = _eval_loss(trainer, prepared.eval)

    after = generate(trainer.model, tokenizer, recipe, prompts) if prompts else []
    losses = [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h]
    if not losses or not all(math.isfinite(v) for _, v in losses):
        announce("[ftkit] warning: no finite training loss was logged")
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
    announce(result.summary())
    announce(f"[ftkit] saved to {recipe.output_dir}")
    return result
