"""What a training method supplies to the one run skeleton (train/run.py): only what differs between methods.

The rows it trains on come from data.prepare (data/sft.py, data/preference.py or data/prompts.py, chosen by
the method); everything else (precision, tokenizer, model and adapters, callbacks, resume, checkpoints,
tracking, save) is shared.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Method:
    name: str  # sft, dpo, ipo, kto, orpo, simpo, grpo, gdpo, reward
    config: Callable  # (recipe, precision, has_eval, n_train) -> the TRL config (TrainingArguments underneath)
    trainer_class: Callable  # () -> the TRL trainer class
    trainer_kwargs: Callable  # (recipe, model, tokenizer) -> extra trainer arguments: collator, reference model
    measure: Callable  # (recipe, trainer, tokenizer, prepared, before) -> {"eval_loss"|"heldout"|"reward": ...}
    history_keys: dict  # trainer log key -> TrainResult.history key
