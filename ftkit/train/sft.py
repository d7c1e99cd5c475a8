"""Supervised fine-tuning, the part that differs from the `rl:` methods: TRL's SFTConfig + SFTTrainer,
a plug-in's collator (packed or streamed rows), and eval loss as the before/after measurement. train/run.py does
the rest.

Per-step metrics cost what they are worth: TRL 1.16's SFTTrainer computes the entropy and top-1 token
accuracy of every training token on every step (extra passes over the vocabulary in its fused LM head).
Here they are computed on the steps that are logged (logging_steps) and nowhere else: the logged
`mean_token_accuracy` and `entropy` are those of the logged step's micro-batches (TRL averages every step
since the last log). Losses and weights are TRL's to 1e-6 (tests/test_training_ops.py); time per step vs
bare TRL: 0.91x on the bench twin (`ftkit bench compare --sections training`). Evaluation keeps TRL's
metrics on every batch.
"""
from __future__ import annotations

import functools

from ftkit import hooks
from ftkit.log import log
from ftkit.recipe import Recipe
from ftkit.train.result import Method

HISTORY_KEYS = {"loss": "loss", "mean_token_accuracy": "accuracy"}  # TRL's log key -> TrainResult.history key
STEP_METRICS = ("entropy", "mean_token_accuracy")  # what TRL's SFTTrainer computes per training step


def lean_lm_head(model):
    """Give TRL's fused LM head (patched onto `model` by SFTTrainer) a lean twin that computes only the
    log-probabilities; returns a switch: switch["lean"] = True makes the forward use the twin, filling the
    metric fields TRL reads with zeros (dropped after the call by compute_loss below)."""
    from accelerate.utils import is_peft_model
    from trl.trainer.utils import add_fused_lm_head

    base = model.get_base_model() if is_peft_model(model) else model
    full = base.forward  # TRL's: log_probs, entropy, is_top1
    del base.forward  # the class's forward again, to patch a second head onto
    add_fused_lm_head(base, outputs=("log_probs",))
    lean = base.forward
    switch = {"lean": False}

    @functools.wraps(full)  # generate() validates its arguments against this signature
    def forward(*args, **kwargs):
        if not (switch["lean"] and kwargs.get("fused_lm_head")):
            return full(*args, **kwargs)
        out = lean(*args, **kwargs)
        zeros = out.log_probs.detach().new_zeros(out.log_probs.shape)
        out.entropy, out.is_top1 = zeros, zeros.bool()
        return out

    base.forward = forward
    return switch


@functools.cache
def trainer_class():
    """TRL's SFTTrainer with its per-step metrics computed on logged steps only (see the module docstring)."""
    from transformers.trainer_utils import IntervalStrategy
    from trl import SFTTrainer

    class FtkitSFTTrainer(SFTTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._lean = lean_lm_head(self.model)

        def _logged_step(self) -> bool:
            """Will the optimizer step in progress be logged (DefaultFlowCallback's rule)? Other logging
            strategies than steps keep TRL's metrics on every step."""
            step, args = self.state.global_step + 1, self.args
            if args.logging_strategy != IntervalStrategy.STEPS:
                return True
            return (step == 1 and args.logging_first_step) or step % max(self.state.logging_steps or 1, 1) == 0

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            lean = self.model.training and not self._logged_step()
            self._lean["lean"] = lean
            try:
                out = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                           num_items_in_batch=num_items_in_batch)
            finally:
                self._lean["lean"] = False
            if lean:  # TRL appended this batch's (zero) metrics: take them back out
                logged = self._metrics["train"]
                for key in STEP_METRICS:
                    if logged.get(key):
                        logged[key].pop()
                    if key in logged and not logged[key]:
                        del logged[key]  # an empty list would divide by zero in SFTTrainer.log
            return out

    return FtkitSFTTrainer


def trainer_kwargs(recipe: Recipe, model, tokenizer) -> dict:
    """Packed rows, and the rows of a stream (plugins/stream.py), need the collator that keeps attention inside each
    example (plugins/packing.py; none: TRL's padding one)."""
    hooks.call(recipe, "sft_loss", recipe, model)  # ftkit's chunked cross-entropy under TRL's fused head on CPU
    return {"data_collator": next(iter(hooks.call(recipe, "collator", recipe, tokenizer, model)), None)}


def measure(recipe: Recipe, trainer, tokenizer, prepared, before: bool) -> dict:
    """Loss on the val_set_size split (None without one)."""
    if prepared.eval is None or len(prepared.eval) == 0:
        return {"eval_loss": None}
    if before and (recipe.fsdp or recipe.deepspeed):  # both engines wrap model and optimizer together in train():
        engine = "fsdp" if recipe.fsdp else "deepspeed"  # an evaluate() first fails (DeepSpeed: "ZeRO inference ...")
        log.info(f"{engine}: no eval loss before training (the engine prepares model and optimizer together)")
        return {"eval_loss": None}
    return {"eval_loss": float(trainer.evaluate(eval_dataset=prepared.eval)["eval_loss"])}


SFT = Method("sft", trainer_class, trainer_kwargs, measure, HISTORY_KEYS)
