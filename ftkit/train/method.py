"""What a training method supplies to the one run skeleton (train/run.py): only what differs between methods.

The rows it trains on come from data.prepare (data/sft.py or data/preference.py, chosen by `rl:`);
everything else (precision, tokenizer, model and adapters, callbacks, resume, checkpoints, tracking,
save) is shared.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Method:
    name: str  # sft, dpo, ipo, kto, orpo, simpo
    config: Callable  # (recipe, precision, has_eval, n_train) -> the TRL config (TrainingArguments underneath)
    trainer_class: Callable  # () -> the TRL trainer class
    trainer_kwargs: Callable  # (recipe, model, tokenizer) -> extra trainer arguments: collator, reference model
    measure: Callable  # (recipe, trainer, tokenizer, prepared, before) -> {"eval_loss": ...} or {"heldout": ...}
    history_keys: dict  # trainer log key -> TrainResult.history key
